"""Real service and monitor processes (orchestration.replay.stack) with per-test settings.

Every process a test starts is stopped in a `finally`; every wait is bounded; all traffic
goes to 127.0.0.1.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestration.replay.stack import LocalProcess, start_monitor, start_service
from tests.servers import ROOT, TINY_LIMITS, TINY_NAMES

# A sequence the tiny models know (tokens w0..w299 are in their vocabulary), any length.
WORDS = [f"w{i}" for i in range(1, 300)]


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """`bentoml serve service.service:...` and `python -m orchestration` resolve from the cwd."""
    monkeypatch.chdir(ROOT)


def service_env(work: Path, **settings: str) -> dict[str, str]:
    """Tiny-model limits, an event log under `work`, no shutdown drain (test_shutdown sets
    one), and `settings` (SHIFTWATCH_* names)."""
    return {
        **TINY_LIMITS,
        "SHIFTWATCH_EVENT_LOG_DIR": str(work / "events"),
        "SHIFTWATCH_SHUTDOWN_DRAIN_SECONDS": "0",
        **settings,
    }


def monitor_env(store: dict, events: Path, state: Path, **settings: str) -> dict[str, str]:
    """A monitor over `events` with its state in `state`, fast polling, small windows."""
    bundle, _ = store["baseline"]
    return {
        "SHIFTWATCH_MONITOR_EVENT_LOG_DIR": str(events),
        "SHIFTWATCH_MONITOR_STATE_PATH": str(state),
        "SHIFTWATCH_MONITOR_MODELS_DIR": str(Path(bundle.path).parent),
        "SHIFTWATCH_MONITOR_MODELS": ",".join(TINY_NAMES.values()),
        "SHIFTWATCH_MONITOR_WINDOW_SIZE": "100",
        "SHIFTWATCH_MONITOR_RECOMPUTE_SECONDS": "0.5",
        "SHIFTWATCH_MONITOR_RECOMPUTE_EVENTS": "50",
        "SHIFTWATCH_MONITOR_POLL_SECONDS": "0.1",
        **settings,
    }


@contextmanager
def running(start: Callable[..., LocalProcess], env: dict, log: Path) -> Iterator[LocalProcess]:
    """A started service or monitor, stopped (SIGTERM, then SIGKILL) on exit."""
    process = start(env, log)
    try:
        yield process
    finally:
        process.stop()


def running_service(env: dict, log: Path):
    return running(start_service, env, log)


def running_monitor(env: dict, log: Path):
    return running(start_monitor, env, log)


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` in a Prometheus exposition."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def predict_body(instances: int, tokens: int, prefix: str | None = None, start: int = 0) -> dict:
    """A /predict body of `instances` sequences of `tokens` known tokens (ids `prefix-i`)."""
    return {
        "instances": [
            {
                "text": " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(tokens)),
                **({"request_id": f"{prefix}-{start + i}"} if prefix else {}),
            }
            for i in range(instances)
        ]
    }


def sequential_latencies(url: str, count: int, body: dict | None = None) -> list[float]:
    """Seconds per /predict, one at a time on one connection; every answer must be a 200."""
    body = body or predict_body(1, 16)
    seconds = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = client.post("/predict", json=body)
            seconds.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
    return seconds


def p50_ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000
