"""No outbound network at run time: the service and the monitor run a full request, label and
metrics cycle (and stop) with every non-loopback connection and name lookup refused and
recorded by netguard/sitecustomize.py; the record stays empty."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness import wait_until
from tests.reliability.conftest import (
    monitor_env,
    predict_body,
    running_monitor,
    running_service,
    service_env,
)
from tests.servers import TINY_NAMES, free_port

pytestmark = [pytest.mark.slow, pytest.mark.behaviour]
NETGUARD = Path(__file__).parent / "netguard"
# The run-time environment every entry point sets (Makefile exports, bentofile.yaml envs).
TELEMETRY_OFF = {
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    "EVIDENTLY_DISABLE_TELEMETRY": "1",
    "ORT_DISABLE_TELEMETRY": "1",
}
REQUESTS, INSTANCES = 6, 8


def guarded(log: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(NETGUARD), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "SHIFTWATCH_NETGUARD_LOG": str(log), **TELEMETRY_OFF}


def test_the_guard_refuses_and_records_outbound_attempts(tmp_path: Path) -> None:
    """The guard itself: without this, an empty record below could mean a guard never loaded.
    0.0.0.0 is not loopback for the guard, and unguarded it would only reach this host."""
    log = tmp_path / "outbound.log"
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.socket().connect(('0.0.0.0', {free_port()}))\n"
        "except OSError as exc:\n"
        "    assert 'netguard' in str(exc), exc\n"
        "else:\n"
        "    raise SystemExit('connect was not refused')\n"
        "try:\n"  # only reached with the guard proven in place: no lookup leaves the host
        "    socket.getaddrinfo('netguard-check.invalid', 443)\n"
        "except socket.gaierror as exc:\n"
        "    assert 'netguard' in str(exc), exc\n"
        "assert socket.getaddrinfo('localhost', 80)\n"
    )
    env = {**os.environ, **guarded(log)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    record = log.read_text()
    assert "connection to ('0.0.0.0'" in record and "lookup of 'netguard-check.invalid'" in record
    assert "localhost" not in record


def test_service_and_monitor_make_no_outbound_connection(tiny_store: dict, tmp_path: Path) -> None:
    log = tmp_path / "outbound.log"
    env = {**service_env(tmp_path), **guarded(log)}
    with running_service(env, tmp_path / "serve.log") as service:
        monitor_settings = monitor_env(tiny_store, tmp_path / "events", tmp_path / "state.sqlite")
        with running_monitor({**monitor_settings, **guarded(log)}, tmp_path / "mon.log") as monitor:
            with httpx.Client(timeout=30) as client:
                for r in range(REQUESTS):
                    body = predict_body(INSTANCES, 12, prefix="net", start=r * INSTANCES)
                    assert client.post(service.url + "/predict", json=body).status_code == 200
                labels = [
                    {"request_id": f"net-{i}", "label": "topic_a"}
                    for i in range(REQUESTS * INSTANCES)
                ]
                feedback = client.post(service.url + "/feedback", json={"labels": labels})
                assert feedback.status_code == 200, feedback.text
                for path in ("/metrics", "/livez", "/readyz", "/docs.json"):
                    assert client.get(service.url + path).status_code == 200, path

                def caught_up() -> dict | None:
                    s = client.get(monitor.url + "/status").json()
                    rows = s["models"].get(TINY_NAMES["baseline"], {}).get("rows", 0)
                    matched = s["counters"].get("labels_matched", 0)
                    return s if matched >= len(labels) and rows >= len(labels) else None

                status = wait_until(caught_up, 90, "the monitor to join every label", every=0.2)
                assert status["counters"].get("labels_matched") == len(labels), status
                for path in ("/metrics", "/healthz", "/report?model=" + TINY_NAMES["baseline"]):
                    assert client.get(monitor.url + path).status_code == 200, path

    armed = (tmp_path / "outbound.log.armed").read_text().splitlines()
    assert any("bentoml serve" in line for line in armed), armed  # the arbiter
    assert any("_bentoml_impl.worker.service" in line for line in armed), armed  # the worker
    assert any(line.endswith("-m monitoring") for line in armed), armed
    assert not log.exists() or log.read_text() == "", log.read_text()[:5000]
