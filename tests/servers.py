"""Real server processes for tests: start, wait for readiness, stop."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from harness import free_port, start_service, stop_process, wait_until  # noqa: F401 (re-exported)
from shiftwatch.transport.segments import logged_events  # noqa: F401 (re-exported)

ROOT = Path(__file__).resolve().parents[1]
# The tiny bundles are exported and served under user-style names, none of them a variant's,
# so every test with a server also checks that a user's names flow through export, store,
# service, monitor and metrics.
TINY_NAMES = {"baseline": "acme-base", "research": "acme-alibi.v2", "no_pe": "acme_nope"}
TINY_LIMITS = {
    "SHIFTWATCH_PRIMARY_MODEL": TINY_NAMES["baseline"],
    "SHIFTWATCH_SHADOW_MODELS": f"{TINY_NAMES['research']},{TINY_NAMES['no_pe']}",
    "SHIFTWATCH_MAX_TOKENS": "96",  # the tiny models' positional limit
    "SHIFTWATCH_MAX_INSTANCES": "8",
    "SHIFTWATCH_MAX_BODY_BYTES": "65536",
    "SHIFTWATCH_MAX_TEXT_CHARS": "2000",
    "SHIFTWATCH_MAX_BATCH_SIZE": "64",
}


def start_server(env_overrides: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, str]:
    """`bentoml serve` with the tiny limits (see `orchestration.replay.stack.start_service`)."""
    local = start_service({**TINY_LIMITS, **env_overrides}, log_path)
    return local.process, local.url


stop_server = stop_process


def monitor_env(live_server: dict, work: Path, **overrides: str) -> dict[str, str]:
    """SHIFTWATCH_MONITOR_* for a monitor beside `live_server`, state in `work`; overrides by
    setting name, e.g. window_size="100"."""
    bundle, _ = live_server["store"]["baseline"]
    env = {
        "SHIFTWATCH_MONITOR_EVENT_LOG_DIR": str(live_server["events"]),
        "SHIFTWATCH_MONITOR_STATE_PATH": str(work / "state.sqlite"),
        "SHIFTWATCH_MONITOR_MODELS_DIR": str(Path(bundle.path).parent),
        "SHIFTWATCH_MONITOR_MODELS": ",".join(TINY_NAMES.values()),
        "SHIFTWATCH_MONITOR_RECOMPUTE_SECONDS": "0.5",
        "SHIFTWATCH_MONITOR_POLL_SECONDS": "0.2",
        "SHIFTWATCH_MONITOR_MIN_ESTIMATE_ROWS": "30",  # the tests' windows hold tens of rows
    }
    return env | {f"SHIFTWATCH_MONITOR_{key.upper()}": value for key, value in overrides.items()}


def settled_events(directory: Path, quiet: float = 0.3, timeout: float = 10.0) -> list[dict]:
    """`logged_events` once nothing new has been written for `quiet` seconds: the writer
    lingers up to 50 ms before each write, so earlier requests' events may still be coming."""
    deadline = time.monotonic() + timeout
    events = logged_events(directory)
    while True:
        time.sleep(quiet)
        again = logged_events(directory)
        if len(again) == len(events) or time.monotonic() > deadline:
            return again
        events = again


def wait_status(monitor_url: str, ready: Callable[[dict], bool], timeout: float = 60.0) -> dict:
    """Poll the monitor's /status until `ready(status)` or the timeout; the last status."""
    deadline = time.monotonic() + timeout
    while True:
        status = httpx.get(monitor_url + "/status").json()
        if ready(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.3)


def monitor_counts(status: dict, primary: str) -> dict[str, int]:
    """The monitor's event counters and the primary's labeled/correct counts."""
    c = status["counters"]  # labeled and correct: by model, then by domain
    return {
        "predictions": c.get("events_prediction", 0),
        "labels": c.get("events_label", 0),
        "matched": c.get("labels_matched", 0),
        "duplicates": c.get("predictions_duplicate", 0) + c.get("labels_duplicate", 0),
        "labeled": sum(c.get("labeled", {}).get(primary, {}).values()),
        "correct": sum(c.get("correct", {}).get(primary, {}).values()),
    }
