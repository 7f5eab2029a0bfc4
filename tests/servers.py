"""Real server processes for tests: start, wait for readiness, stop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TINY_LIMITS = {
    "SHIFTWATCH_MAX_TOKENS": "96",  # the tiny models' positional limit
    "SHIFTWATCH_MAX_INSTANCES": "8",
    "SHIFTWATCH_MAX_BODY_BYTES": "65536",
    "SHIFTWATCH_MAX_TOKEN_CHARS": "32",
    "SHIFTWATCH_MAX_TEXT_CHARS": "2000",
    "SHIFTWATCH_MAX_BATCH_SIZE": "64",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env_overrides: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, **TINY_LIMITS, **env_overrides}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            "service.service:Shiftwatch",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bentoml serve exited: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"bentoml serve not ready in 90 s: {log_path.read_text()[-3000:]}")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
