"""External tools and processes for the deploy tests: promtool/prometheus, the monitor."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shiftwatch.replay.stack import start_monitor as stack_start_monitor
from shiftwatch.replay.stack import wait_ready
from tests.servers import ROOT, TINY_NAMES

DEPLOY = ROOT / "deploy"


def require_tool(name: str) -> str:
    """The path of `name`. Missing: skipped on a developer machine, a failure in CI.

    `make test` installs Debian's prometheus package (Makefile target `prometheus`), so CI
    (CI=true) must have it; a skip there would hide the checks this suite exists for.
    """
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} not found on PATH: run `make prometheus` (Debian's prometheus package)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def run_tool(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def wait_healthy(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 90) -> None:
    """Poll `url` until it answers 200 (see `shiftwatch.replay.stack.wait_ready`)."""
    wait_ready(process, url, log_path, timeout)


def start_monitor(
    event_log_dir: Path, models_dir: Path, work: Path
) -> tuple[subprocess.Popen, str]:
    """`python -m shiftwatch monitor` on loopback over tiny bundles, recomputing every 0.5 s."""
    local = stack_start_monitor(
        {
            "SHIFTWATCH_MONITOR_EVENT_LOG_DIR": str(event_log_dir),
            "SHIFTWATCH_MONITOR_STATE_PATH": str(work / "state.sqlite"),
            "SHIFTWATCH_MONITOR_MODELS_DIR": str(models_dir),
            "SHIFTWATCH_MONITOR_MODELS": ",".join(TINY_NAMES.values()),
            "SHIFTWATCH_MONITOR_RECOMPUTE_SECONDS": "0.5",
            "SHIFTWATCH_MONITOR_POLL_SECONDS": "0.2",
        },
        work / "monitor.log",
    )
    return local.process, local.url
