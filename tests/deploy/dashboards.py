"""The Grafana dashboards and the metric names the code exports, as the deploy tests see them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.deploy.tools import DEPLOY
from tests.servers import ROOT

DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"

# $name, ${name}, ${name:format}, [[name]]
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")
METRIC = re.compile(r"\b(?:shiftwatch|bentoml)_\w+|\b[a-z_]+:[\w:]+")
# BentoML 1.4's own series on the service's /metrics (histograms by base name); the live
# test (test_dashboards_live.py) checks every panel against the real thing.
BENTOML_METRICS = {
    "bentoml_service_request_total",
    "bentoml_service_request_duration_seconds",
    "bentoml_service_request_in_progress",
    "bentoml_service_last_request_timestamp_seconds",
}
SERIES_SUFFIXES = ("", "_total", "_bucket", "_sum", "_count", "_created")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # file name
    panel_id: int
    title: str
    ref_id: str
    expr: str

    @property
    def id(self) -> str:
        return f"{Path(self.dashboard).stem}:{self.panel_id}{self.ref_id}"


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def panels(dashboard: dict) -> Iterator[dict]:
    """Every panel, those nested in collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def panel_queries() -> Iterator[PanelQuery]:
    for path in DASHBOARDS:
        for panel in panels(load(path)):
            for target in panel.get("targets", []):
                yield PanelQuery(
                    path.name, panel["id"], panel["title"], target["refId"], target["expr"]
                )


def variables_used(text: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in VARIABLE.finditer(text)}


def variable_query(variable: dict) -> tuple[str, str]:
    """(metric, label) of a `label_values(metric, label)` variable."""
    query = variable["query"]
    query = query["query"] if isinstance(query, dict) else query
    match = re.fullmatch(r"label_values\(\s*([\w:]+)\s*,\s*(\w+)\s*\)", query.strip())
    assert match, f"variable {variable['name']}: expected label_values(metric, label): {query}"
    return match.group(1), match.group(2)


def provisioned_datasource() -> dict:
    (datasource,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    return datasource


def recording_rules() -> set[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def exported_metrics() -> set[str]:
    """Base names of the series the service and the monitor declare, and BentoML's own."""
    service = re.findall(r'name="(shiftwatch_\w+)"', (ROOT / "service/prometheus.py").read_text())
    monitor = re.findall(r'"(shiftwatch_\w+)"', (ROOT / "monitoring/exporter.py").read_text())
    return set(service) | set(monitor) | BENTOML_METRICS


def unknown_metrics(expr: str, known: set[str]) -> set[str]:
    """Names in a PromQL expression that no exporter or recording rule produces."""
    return {
        name
        for name in METRIC.findall(expr)
        if not any(name.removesuffix(s) in known for s in SERIES_SUFFIXES if name.endswith(s))
    }
