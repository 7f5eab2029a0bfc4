"""deploy/docker-compose.yml run for real: the serving and monitor images, Prometheus (the
Debian stand-in where no registry answers), through the compose tool, on the published ports.
Grafana is left out (no package here): its panels are checked against a real Prometheus in
tests/deploy/test_dashboards_live.py."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.containers.browser import render
from tests.containers.engine import (
    BENTO_UID,
    DEPLOY,
    ENGINE,
    HealthTicker,
    Stack,
    assert_confined,
    engine,
    health,
    inspect,
    wait_until,
)
from tests.containers.traffic import Load, predict_and_label
from tests.servers import monitor_counts

pytestmark = [pytest.mark.containers, pytest.mark.behaviour]
API, MONITOR, PROMETHEUS = "http://127.0.0.1:3000", "http://127.0.0.1:3002", "http://127.0.0.1:9090"
PRIMARY = "baseline"  # the image's default primary (bentofile.yaml, SHIFTWATCH_PRIMARY_MODEL)
GRACE_SECONDS = 40  # the compose file's stop_grace_period for the service


@pytest.fixture(scope="module")
def stack(containers_artifacts: Path, secrets_dir: Path):
    logs = containers_artifacts / "stack"
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(
        "swtest",
        [DEPLOY / "docker-compose.yml", DEPLOY / "standins.yml"],
        env={"SHIFTWATCH_SECRETS_DIR": str(secrets_dir)},
        log_dir=logs,
    )
    try:
        # Ticking before `up`: a compose tool that waits for service_healthy needs the checks
        # to run while it waits.
        with HealthTicker(stack):
            stack.up()
            wait_until(lambda: httpx.get(API + "/readyz").status_code == 200, 120, "service ready")
            wait_until(lambda: httpx.get(MONITOR + "/healthz").status_code == 200, 120, "monitor")
            yield stack
    finally:
        assert stack.down() == [], "`down` left containers or volumes behind"


def status() -> dict:
    return httpx.get(MONITOR + "/status", timeout=10).json()


def test_predictions_and_labels_reach_the_monitor_and_accuracy_is_exact(stack: Stack) -> None:
    # The window's live accuracy is exact only on a window holding this test's traffic alone:
    # the first in the module, on a fresh volume.
    before = monitor_counts(status(), PRIMARY)
    assert before["predictions"] == 0, before
    sent = predict_and_label(API, 60, "stack", seed=21, token=stack.secret("feedback_token"))
    expect = {"predictions": sent.requests, "labels": sent.labels, "matched": sent.labels}

    def settled():
        s = status()
        c = monitor_counts(s, PRIMARY)
        live = s["models"][PRIMARY]["live"]
        return s if c["matched"] >= sent.labels and live["labeled"] >= sent.labels else None

    s = wait_until(settled, 90, "labels joined and the window computed")
    c = monitor_counts(s, PRIMARY)
    assert {k: c[k] for k in expect} == expect
    assert c["duplicates"] == 0 and c["labeled"] == sent.requests and c["correct"] == sent.correct
    live = s["models"][PRIMARY]["live"]
    assert live["labeled"] == sent.requests
    assert live["accuracy"] == sent.correct / sent.requests  # what the client itself counted


def test_prometheus_scrapes_both_targets_and_loads_the_alert_rules(stack: Stack) -> None:
    def targets_up():
        query = httpx.get(PROMETHEUS + "/api/v1/query", params={"query": "up"}).json()
        up = {r["metric"]["job"]: r["value"][1] for r in query["data"]["result"]}
        if up != {"shiftwatch-service": "1", "shiftwatch-monitor": "1"}:  # named on timeout
            targets = httpx.get(PROMETHEUS + "/api/v1/targets").json()["data"]["activeTargets"]
            why = {t["labels"]["job"]: (t["health"], t["lastError"]) for t in targets}
            raise RuntimeError(f"up: {up}; targets: {why}")
        return up

    wait_until(targets_up, 90, "both targets up")
    groups = httpx.get(PROMETHEUS + "/api/v1/rules").json()["data"]["groups"]
    expected = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    assert sorted(g["name"] for g in groups) == sorted(g["name"] for g in expected)
    loaded = {r["name"] for g in groups for r in g["rules"]}
    declared = {r.get("alert") or r.get("record") for g in expected for r in g["rules"]}
    assert loaded == declared
    assert all(r["health"] == "ok" for g in groups for r in g["rules"])


def test_health_checks_of_the_compose_file_pass_in_the_images(stack: Stack) -> None:
    for service in ("service", "monitor", "prometheus"):
        name = stack.one(service)
        wait_until(lambda n=name: health(n) == "healthy", 60, f"{service} healthy")


def test_shiftwatch_containers_run_read_only_as_the_bento_user(stack: Stack) -> None:
    for service in ("service", "monitor"):
        name = stack.one(service)
        assert inspect(name)["HostConfig"]["ReadonlyRootfs"] is True
        # every process of the container, not only the first
        uids = stack.exec(name, "sh", "-c", "grep -h '^Uid:' /proc/[0-9]*/status | sort -u")
        assert {line.split()[1] for line in uids.splitlines()} == {str(BENTO_UID)}, uids
        denied = subprocess.run(
            [ENGINE, "exec", name, "touch", "/home/bentoml/bento/written"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr


def test_feedback_needs_the_token_from_the_secret(stack: Stack) -> None:
    """The compose file serves no open /feedback: without the secret's token, 401."""
    body = {"labels": [{"request_id": "no-token", "label": "x"}]}
    assert httpx.post(API + "/feedback", json=body).status_code == 401
    wrong = {"Authorization": "Bearer " + "0" * 64}
    assert httpx.post(API + "/feedback", json=body, headers=wrong).status_code == 401
    token = {"Authorization": "Bearer " + stack.secret("feedback_token")}
    # the token passes; the unknown label is then the request's only fault
    assert httpx.post(API + "/feedback", json=body, headers=token).status_code == 400


def test_every_container_is_confined_as_the_compose_file_says(stack: Stack) -> None:
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    for service in ("service", "monitor", "prometheus"):
        assert_confined(stack.one(service), services[service])


def test_onnxruntime_telemetry_stays_off_in_the_running_service(stack: Stack) -> None:
    """Before the opt-out, the read-only home made onnxruntime log that it could not persist
    its telemetry device id: it had started its uploader (tests/service/test_telemetry.py)."""
    name = stack.one("service")
    assert "ORT_DISABLE_TELEMETRY=1" in stack.exec(name, "env").splitlines()
    assert "telemetry" not in engine("logs", name).lower()


def test_report_renders_its_charts_self_contained_in_a_browser(
    stack: Stack, containers_artifacts: Path
) -> None:
    token = stack.secret("feedback_token")
    predict_and_label(API, 40, "report", seed=22, token=token, label=False)  # rows to report
    wait_until(lambda: status()["models"][PRIMARY]["rows"] >= 40, 60, "a window to report")
    out = containers_artifacts / "report"
    out.mkdir(exist_ok=True)
    page = render(MONITOR + f"/report?model={PRIMARY}", out)
    assert page.requests, "the browser made no request"
    outside = [url for url in page.requests if not url.startswith(MONITOR)]
    assert outside == [], f"the report fetched from elsewhere: {outside}"
    assert page.errors == [], page.errors
    # One drawn chart per drift widget: every column's chart rendered, none left blank.
    assert page.widgets > 0 and page.charts == page.widgets, (page.charts, page.widgets)
    assert page.screenshot.stat().st_size > 20_000  # a rendered page, kept as an artifact


def test_idle_service_stops_within_five_seconds(stack: Stack) -> None:
    name = stack.one("service")
    started = time.monotonic()
    engine("stop", "-t", str(GRACE_SECONDS), name, timeout=GRACE_SECONDS + 30)
    seconds = time.monotonic() - started
    assert inspect(name)["State"]["ExitCode"] == 0
    assert seconds < 5, f"idle stop took {seconds:.1f} s"
    engine("start", name)
    wait_until(lambda: httpx.get(API + "/readyz").status_code == 200, 120, "service back")


def test_stop_under_load_answers_every_request_routed_to_it(stack: Stack) -> None:
    name = stack.one("service")
    before = monitor_counts(status(), PRIMARY)["predictions"]
    with Load(API) as load:
        time.sleep(3)
        stopped_at = load.now()
        engine("stop", "-t", str(GRACE_SECONDS), name, timeout=GRACE_SECONDS + 30)
        seconds = load.now() - stopped_at
    outcomes = load.outcomes
    after_stop = [o for t, o in load.probes if t > stopped_at]
    assert inspect(name)["State"]["ExitCode"] == 0
    # The drain (at most SHIFTWATCH_SHUTDOWN_DRAIN_SECONDS, 5) and the in-flight requests:
    # well inside the 40 s grace period.
    assert seconds < 10, seconds
    # Taken out of rotation by its /readyz (503) while still serving, not by a refused port.
    assert next(o for o in after_stop if o != 200) == 503, load.probes[-20:]
    assert len(outcomes) > 50 and set(outcomes) == {200}, {
        o: outcomes.count(o) for o in set(outcomes)
    }
    # Every answered request's event reached the monitor through the shared volume.
    wait_until(
        lambda: monitor_counts(status(), PRIMARY)["predictions"] == before + len(outcomes),
        60,
        "the load's events ingested",
    )
