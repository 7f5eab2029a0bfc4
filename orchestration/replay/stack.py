"""Start and stop the service and the monitor as local processes on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalProcess:
    name: str
    process: subprocess.Popen
    url: str
    log_path: Path

    def stop(self, timeout: float = 20.0) -> None:
        stop_process(self.process, timeout)


def stop_process(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(process: subprocess.Popen, url: str, log_path: Path, timeout: float) -> None:
    """Poll `url` until it answers 200; raise with the log's tail if the process exits or
    the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{url}: process exited with {process.returncode}:\n{log_path.read_text()[-2000:]}"
            )
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url}: not ready in {timeout:.0f} s:\n{log_path.read_text()[-2000:]}")


def start_process(
    name: str,
    args: list[str],
    env: dict[str, str],
    port: int,
    ready_path: str,
    log_path: Path,
    timeout: float = 120.0,
) -> LocalProcess:
    """Start `python -m <args>` and wait until GET ready_path answers 200."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", *args],
        env={**os.environ, **env},
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
    )
    local = LocalProcess(name, process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_ready(process, local.url + ready_path, log_path, timeout)
    except RuntimeError:
        local.stop()
        raise
    return local


# The service on loopback (the demo, the replay, the tests' servers): /feedback open unless
# `env` gives a token (which then wins). Nothing off this machine can reach it; every deploy
# file sets a token instead (deploy/README.md).
LOOPBACK_FEEDBACK = {"SHIFTWATCH_FEEDBACK_OPEN": "true"}


def start_service(env: dict[str, str], log_path: Path) -> LocalProcess:
    """`bentoml serve` on 127.0.0.1 with `env` on top of this process's environment."""
    port = free_port()
    args = [
        "bentoml",
        "serve",
        "service.service:Shiftwatch",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return start_process("service", args, {**LOOPBACK_FEEDBACK, **env}, port, "/readyz", log_path)


def start_monitor(env: dict[str, str], log_path: Path) -> LocalProcess:
    port = free_port()
    return start_process(
        "monitor",
        ["monitoring"],  # the monitor image's entry
        {**env, "SHIFTWATCH_MONITOR_PORT": str(port)},
        port,
        "/healthz",
        log_path,
    )
