"""External tools and processes for the deploy tests: promtool/prometheus, the monitor."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import ROOT, free_port

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
    """Poll `url` until it answers 200; fail with the process's log when it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url}: not healthy in {timeout:.0f} s: {log_path.read_text()[-3000:]}")


def start_monitor(
    event_log_dir: Path, models_dir: Path, work: Path
) -> tuple[subprocess.Popen, str]:
    """`python -m shiftwatch monitor` on loopback over tiny bundles, recomputing every 0.5 s."""
    port = free_port()
    env = {
        **os.environ,
        "SHIFTWATCH_MONITOR_EVENT_LOG_DIR": str(event_log_dir),
        "SHIFTWATCH_MONITOR_STATE_PATH": str(work / "state.sqlite"),
        "SHIFTWATCH_MONITOR_MODELS_DIR": str(models_dir),
        "SHIFTWATCH_MONITOR_PORT": str(port),
        "SHIFTWATCH_MONITOR_RECOMPUTE_SECONDS": "0.5",
        "SHIFTWATCH_MONITOR_POLL_SECONDS": "0.2",
    }
    log_path = work / "monitor.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "shiftwatch", "monitor"],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url + "/healthz", process, log_path)
    except RuntimeError:
        process.kill()
        process.wait()
        raise
    return process, url
