"""Real server processes for tests: start, wait for readiness, stop."""

from __future__ import annotations

import subprocess
from pathlib import Path

from shiftwatch.replay.stack import free_port, start_service, stop_process  # noqa: F401 (re-exported)

ROOT = Path(__file__).resolve().parents[1]
TINY_LIMITS = {
    "SHIFTWATCH_MAX_TOKENS": "96",  # the tiny models' positional limit
    "SHIFTWATCH_MAX_INSTANCES": "8",
    "SHIFTWATCH_MAX_BODY_BYTES": "65536",
    "SHIFTWATCH_MAX_TOKEN_CHARS": "32",
    "SHIFTWATCH_MAX_TEXT_CHARS": "2000",
    "SHIFTWATCH_MAX_BATCH_SIZE": "64",
}


def start_server(env_overrides: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, str]:
    """`bentoml serve` with the tiny limits (see `shiftwatch.replay.stack.start_service`)."""
    local = start_service({**TINY_LIMITS, **env_overrides}, log_path)
    return local.process, local.url


stop_server = stop_process
