"""External tools and processes for the deploy tests: promtool/prometheus, the monitor."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import require_tool, wait_ready  # noqa: F401 (require_tool: re-exported)
from harness import start_monitor as stack_start_monitor
from shiftwatch.settings import MonitorSettings, ServiceSettings
from tests.servers import ROOT, TINY_NAMES

DEPLOY = ROOT / "deploy"


def optional_tool(name: str) -> str:
    """The path of `name`, a tool `make test` does not install: skipped where it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found on PATH")
    return path


def setting_names(settings: type, prefix: str) -> set[str]:
    """The environment variables a settings class reads."""
    return {prefix + name.upper() for name in settings.model_fields}


def settings_in(
    environment: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> tuple[ServiceSettings, MonitorSettings]:
    """The service's and the monitor's settings in a container with this environment (this
    process's own SHIFTWATCH_ variables removed)."""
    for name in [n for n in os.environ if n.startswith("SHIFTWATCH_")]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return ServiceSettings(), MonitorSettings()


def run_tool(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def wait_healthy(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 90) -> None:
    """Poll `url` until it answers 200 (see `orchestration.replay.stack.wait_ready`)."""
    wait_ready(process, url, log_path, timeout)


def start_monitor(
    event_log_dir: Path, models_dir: Path, work: Path
) -> tuple[subprocess.Popen, str]:
    """`python -m orchestration monitor` on loopback over tiny bundles, recomputing every 0.5 s."""
    local = stack_start_monitor(
        {
            "SHIFTWATCH_MONITOR_EVENT_LOG_DIR": str(event_log_dir),
            "SHIFTWATCH_MONITOR_STATE_PATH": str(work / "state.sqlite"),
            "SHIFTWATCH_MONITOR_MODELS_DIR": str(models_dir),
            "SHIFTWATCH_MONITOR_MODELS": ",".join(TINY_NAMES.values()),
            "SHIFTWATCH_MONITOR_RECOMPUTE_SECONDS": "0.5",
            # the tiny traffic of these tests: ~100 rows a window, ~75 labeled
            "SHIFTWATCH_MONITOR_MIN_ESTIMATE_ROWS": "30",
            "SHIFTWATCH_MONITOR_POLL_SECONDS": "0.2",
            "SHIFTWATCH_MONITOR_ACCURACY_SLO": "0.5",  # so the dashboards' SLO line has a series
        },
        work / "monitor.log",
    )
    return local.process, local.url


SECRETS_MOUNT = "/run/secrets/"  # where compose mounts a service's file secrets


def secret_value(name: str) -> str:
    """The stand-in value of secret `name` in the offline tests (what deploy/secrets.sh would
    write, made recognisable)."""
    return f"test-{name.replace('_', '-')}-0123456789abcdef"


def with_secret_files(environment: dict[str, str], folder: Path) -> dict[str, str]:
    """`environment` as a container sees it, with every /run/secrets/<name> a real file under
    `folder` holding `secret_value(name)`, so the settings classes can read it here."""
    resolved = {}
    for name, value in environment.items():
        if isinstance(value, str) and value.startswith(SECRETS_MOUNT):
            secret = value.removeprefix(SECRETS_MOUNT)
            path = folder / secret
            path.write_text(secret_value(secret) + "\n")
            value = str(path)
        resolved[name] = value
    return resolved


def redis_server_args(script: str) -> list[str]:
    """The `redis-server ...` command line of the shell script that starts Redis with its
    password on stdin (`exec redis-server - ... <<EOF`): what the server's argv will be."""
    words = shlex.split(script.splitlines()[0])
    assert words[0] == "exec" and words[-1] == "<<EOF", words
    return words[1:-1]
