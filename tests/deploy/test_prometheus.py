"""Prometheus config and alert rules: promtool's own checks, unit tests, and their coverage."""

from __future__ import annotations

import pytest
import yaml

from tests.deploy.dashboards import ALERTS, exported_metrics, recording_rules, unknown_metrics
from tests.deploy.tools import DEPLOY, require_tool, run_tool

CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
FLEET_CONFIG = DEPLOY / "prometheus" / "prometheus.fleet.yml"  # docker-compose.fleet.yml's
RULE_TESTS = sorted((DEPLOY / "prometheus" / "tests").glob("*.yml"))


def alerts() -> dict[str, dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


SAMPLE_LIMIT = 10_000  # deploy/prometheus/prometheus.yml


@pytest.mark.integration
@pytest.mark.parametrize("config", [CONFIG, FLEET_CONFIG], ids=lambda p: p.name)
def test_promtool_check_config_accepts_the_compose_configs_and_their_rules(config) -> None:
    result = run_tool([require_tool("promtool"), "check", "config", str(config)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alerts.yml" in result.stdout  # the rule file was found and checked too


@pytest.mark.integration
def test_promtool_check_rules_accepts_alerts() -> None:
    result = run_tool([require_tool("promtool"), "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    rules = sum(len(g["rules"]) for g in yaml.safe_load(ALERTS.read_text())["groups"])
    assert f"SUCCESS: {rules} rules found" in result.stdout


@pytest.mark.integration
def test_promtool_rule_unit_tests_pass() -> None:
    assert RULE_TESTS, "no rule tests in deploy/prometheus/tests/"
    result = run_tool([require_tool("promtool"), "test", "rules", *map(str, RULE_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


@pytest.mark.unit
def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        spec = yaml.safe_load(path.read_text())
        assert spec["rule_files"] == ["../alerts.yml"], path.name
        for case in spec["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = set(alerts())
    assert names - firing == set(), "alerts never shown firing"
    assert names - silent == set(), "alerts never shown staying silent"
    assert (firing | silent) - names == set(), "tests of alerts that do not exist"


@pytest.mark.unit
def test_alerts_cover_the_issue_and_carry_severity_and_summary() -> None:
    rules = alerts()
    for name in (
        "ShiftwatchDatasetDriftSustained",
        "ShiftwatchLiveAccuracyBelowReference",
        "ShiftwatchEstimatedAccuracyDrop",
        "ShiftwatchMonitorIngestLag",
        "ShiftwatchMonitorComputationStale",
        "ShiftwatchEventLogWriteErrors",
        "ShiftwatchServerErrorRate",
        "ShiftwatchHighP99Latency",
        # fleet mode (Redis Streams)
        "ShiftwatchEventTransportDown",
        "ShiftwatchMonitorConsumerLag",
        "ShiftwatchMonitorConsumerStalled",
        "ShiftwatchMonitorTransportErrors",
        "ShiftwatchMonitorFailing",
        "ShiftwatchMonitorEventsLost",
    ):
        assert name in rules, name
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
    # The accuracy margin is one series both accuracy alerts read.
    for name in ("ShiftwatchLiveAccuracyBelowReference", "ShiftwatchEstimatedAccuracyDrop"):
        assert "scalar(shiftwatch:accuracy_alert_margin:ratio)" in rules[name]["expr"], name


@pytest.mark.unit
def test_rules_use_only_series_the_code_exports() -> None:
    known = exported_metrics() | recording_rules()
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        name = rule.get("alert") or rule["record"]
        assert unknown_metrics(rule["expr"], known) == set(), name


@pytest.mark.unit
def test_compose_scrape_config_uses_the_job_names_dashboards_and_alerts_use() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"shiftwatch-service", "shiftwatch-monitor"}
    assert jobs["shiftwatch-service"]["static_configs"][0]["targets"] == ["service:3000"]
    assert jobs["shiftwatch-monitor"]["static_configs"][0]["targets"] == ["monitor:3002"]
    assert config["rule_files"] == ["alerts.yml"]


@pytest.mark.unit
def test_every_scrape_is_bounded_by_a_sample_limit() -> None:
    for path in (CONFIG, CONFIG.with_name("prometheus.fleet.yml")):
        config = yaml.safe_load(path.read_text())
        for job in config["scrape_configs"]:
            assert job["sample_limit"] == SAMPLE_LIMIT, (path.name, job["job_name"])
    monitor = yaml.safe_load((CONFIG.parents[1] / "k8s" / "servicemonitor.yaml").read_text())
    assert monitor["spec"]["sampleLimit"] == SAMPLE_LIMIT
