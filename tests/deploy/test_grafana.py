"""Grafana provisioning and dashboards, parsed and cross-checked (no Grafana needed)."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.deploy.dashboards import (
    DASHBOARDS,
    exported_metrics,
    load,
    panel_queries,
    panels,
    provisioned_datasource,
    recording_rules,
    unknown_metrics,
    variable_query,
    variables_used,
)
from tests.deploy.tools import DEPLOY

pytestmark = pytest.mark.unit

PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "shiftwatch.yml"
EXPECTED = {"model-health.json", "drift.json", "service.json"}


def datasource_refs(node) -> list:
    """Every value of a `datasource` key, anywhere in the dashboard."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append(value)
            else:
                found.extend(datasource_refs(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(datasource_refs(item))
    return found


@pytest.fixture(params=DASHBOARDS, ids=lambda p: p.name)
def dashboard(request) -> dict:
    return load(request.param)


def test_the_three_dashboards_exist_with_unique_uids_and_titles() -> None:
    assert {p.name for p in DASHBOARDS} == EXPECTED
    boards = [load(p) for p in DASHBOARDS]
    assert len({b["uid"] for b in boards}) == len(boards)
    assert len({b["title"] for b in boards}) == len(boards)
    # valid JSON is a given (load parsed it); a stable 2-space layout keeps diffs readable
    for path, board in zip(DASHBOARDS, boards, strict=True):
        assert path.read_text() == json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def test_panel_ids_are_unique(dashboard: dict) -> None:
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), sorted(ids)


def test_every_datasource_reference_is_the_provisioned_one(dashboard: dict) -> None:
    provisioned = provisioned_datasource()
    refs = datasource_refs(dashboard)
    assert refs, "no datasource references"
    for ref in refs:
        assert ref == {"type": provisioned["type"], "uid": provisioned["uid"]}, ref


def test_every_variable_used_is_defined(dashboard: dict) -> None:
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    used = set()
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            used |= variables_used(target["expr"])
    for variable in dashboard["templating"]["list"]:
        used |= variables_used(variable_query(variable)[0])
    builtins = {name for name in used if name.startswith("__")}
    assert used - builtins <= defined, f"undefined: {used - builtins - defined}"
    assert "model" in defined and "model" in used


def test_model_health_has_model_and_domain_variables_from_label_values() -> None:
    board = load(DEPLOY / "grafana" / "dashboards" / "model-health.json")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variable_query(variables["model"]) == ("shiftwatch_reference_accuracy_ratio", "model")
    assert variable_query(variables["domain"]) == ("shiftwatch_predictions_labeled_total", "domain")
    for variable in variables.values():
        assert variable["multi"] and variable["includeAll"], variable["name"]


def test_every_panel_queries_series_the_code_exports() -> None:
    known = exported_metrics() | recording_rules()
    queries = list(panel_queries())
    assert len(queries) > 40
    for query in queries:
        assert query.expr.strip(), query.id
        assert unknown_metrics(query.expr, known) == set(), (query.id, query.title)


def test_every_panel_but_rows_has_a_query_and_fits_the_grid(dashboard: dict) -> None:
    occupied: set[tuple[int, int]] = set()
    for panel in panels(dashboard):
        if panel["type"] != "row":
            assert panel.get("targets"), panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells


def test_provisioning_matches_compose_mounts() -> None:
    provider = yaml.safe_load(PROVIDERS.read_text())["providers"][0]
    assert provider["type"] == "file"
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/model-health.json"
    assert provisioned_datasource()["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]
