"""The container engine and compose tool the container tests drive, as a user would.

Podman by default (SHIFTWATCH_CONTAINER_ENGINE=docker for Docker), with podman-compose or
`docker compose`. The images are those `make image` built (SHIFTWATCH_IMAGE,
SHIFTWATCH_MONITOR_IMAGE); where no registry answers, the third-party images are the Debian
stand-ins of `make standin-images`, chosen by the override files deploy/standins*.yml.

Podman runs a container's health check from a systemd timer; where there is no systemd (CI's
machine), nothing runs it. `HealthTicker` does what that timer does, `podman healthcheck run`
every few seconds, so the compose files' own checks decide each container's health here too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import harness
from tests.servers import ROOT

DEPLOY = ROOT / "deploy"
ENGINE = os.environ.get("SHIFTWATCH_CONTAINER_ENGINE", "podman")
IMAGE = os.environ.get("SHIFTWATCH_IMAGE", "shiftwatch:latest")
MONITOR_IMAGE = os.environ.get("SHIFTWATCH_MONITOR_IMAGE", "shiftwatch-monitor:latest")
COMPOSE = [sys.executable, "-m", "podman_compose"] if ENGINE == "podman" else ["docker", "compose"]
BENTO_UID = 1034  # the Bento image's user `bentoml`


def engine(*args: str, timeout: float = 120, check: bool = True) -> str:
    """Run the engine's CLI; its stdout. A failure raises with the engine's own message."""
    result = subprocess.run(
        [ENGINE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{ENGINE} {' '.join(args)}: {result.stderr.strip()[-2000:]}")
    return result.stdout


def inspect(container: str) -> dict:
    return json.loads(engine("inspect", container))[0]


def wait_until(condition: Callable[[], object], timeout: float, what: str, every: float = 0.5):
    """harness.wait_until, tolerating a container's server that is still starting."""
    return harness.wait_until(condition, timeout, what, every, tolerate=(Exception,))


@dataclass
class Stack:
    """One compose project: its files, project name and environment."""

    project: str
    files: list[Path]
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None

    def compose(self, *args: str, timeout: float = 300) -> str:
        files = [arg for path in self.files for arg in ("-f", str(path))]
        result = subprocess.run(
            [*COMPOSE, "-p", self.project, *files, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env},
            cwd=DEPLOY,
            check=False,
        )
        if self.log_dir is not None:
            with (self.log_dir / "compose.log").open("a") as log:
                log.write(f"$ compose {' '.join(args)}\n{result.stdout}{result.stderr}\n")
        if result.returncode != 0:
            raise RuntimeError(f"compose {' '.join(args)}: {result.stderr.strip()[-3000:]}")
        return result.stdout

    def containers(self, service: str | None = None, running: bool = True) -> list[str]:
        """Container names of the project (of one service), running ones unless told."""
        filters = [f"--filter=label=com.docker.compose.project={self.project}"]
        if service:
            filters.append(f"--filter=label=com.docker.compose.service={service}")
        listed = engine("ps", *([] if running else ["-a"]), *filters, "--format", "{{.Names}}")
        return sorted(listed.split())

    def secret(self, name: str) -> str:
        """The value of one of the compose files' secrets (SHIFTWATCH_SECRETS_DIR, written by
        deploy/secrets.sh)."""
        return (Path(self.env["SHIFTWATCH_SECRETS_DIR"]) / name).read_text().strip()

    def one(self, service: str) -> str:
        (name,) = self.containers(service)
        return name

    def exec(self, container: str, *command: str, timeout: float = 60) -> str:
        return engine("exec", container, *command, timeout=timeout)

    def save_logs(self) -> None:
        """Every container's log beside the test's artifacts (kept when a test fails)."""
        if self.log_dir is None:
            return
        for name in self.containers(running=False):
            # both streams: Python's logging (the service's, the monitor's) writes to stderr
            logs = subprocess.run(
                [ENGINE, "logs", name],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=30,
                check=False,
            )
            (self.log_dir / f"{name}.log").write_text(logs.stdout)

    def volumes(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        return sorted(engine("volume", "ls", "--filter", label, "--format", "{{.Name}}").split())

    def up(self, *args: str) -> None:
        """`up -d` on a clean slate: a project left by an interrupted run (its containers, and
        volumes holding another run's Redis streams or monitor state) is removed first."""
        if self.containers(running=False) or self.volumes():
            self.compose("down", "-v", "--remove-orphans", "-t", "5")
            for volume in self.volumes():
                engine("volume", "rm", "-f", volume)
        self.compose("up", "-d", *args)

    def down(self) -> list[str]:
        """Stop and remove the project, its volumes too; the containers and volumes left
        behind."""
        self.save_logs()
        # --remove-orphans: podman-compose stops only the first replica of a scaled service
        # otherwise; with it, every container labeled with the project.
        self.compose("down", "-v", "--remove-orphans", "-t", "45")
        # podman-compose removes volumes one by one and skips one still held by a container
        # it has not removed yet (a scaled service): remove what is left, then report it.
        for volume in self.volumes():
            engine("volume", "rm", "-f", volume, check=False)
        return self.containers(running=False) + self.volumes()


def http_get_in(stack: Stack, container: str, url: str) -> str:
    """GET `url` from inside `container` with its own Python (ports not published)."""
    code = (
        f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=10).read().decode())"
    )
    return stack.exec(container, "python", "-c", code)


class HealthTicker:
    """Runs each running container's own health check every `period` seconds, as podman's
    systemd timer would (there is none here); a no-op on Docker, which runs them itself."""

    def __init__(self, stack: Stack, period: float = 3.0) -> None:
        self.stack, self.period = stack, period
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthTicker:
        if ENGINE == "podman":
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(timeout=60)

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                for name in self.stack.containers():
                    # exit 1 (unhealthy), 125 (no health check, or gone): states, not errors
                    engine("healthcheck", "run", name, check=False, timeout=30)
            except (RuntimeError, subprocess.TimeoutExpired):  # a slow engine: next round
                pass
            self.stopped.wait(self.period)


def crash(container: str) -> int:
    """SIGKILL the container's main process from the host, as the OOM killer or a fault would
    (`kill` through the engine counts as a user's stop, after which no restart policy acts);
    returns the container's restart count before the crash."""
    state = inspect(container)
    os.kill(state["State"]["Pid"], signal.SIGKILL)
    return state["RestartCount"]


def health(container: str) -> str | None:
    state = inspect(container)["State"]
    return (state.get("Health") or state.get("Healthcheck") or {}).get("Status")


def parse_size(text: str) -> int:
    """A compose size ("2g", "512m") in bytes."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    text = str(text).lower().removesuffix("b")
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def assert_confined(container: str, spec: dict) -> None:
    """`container` runs as its compose service `spec` asks: no capability left even in its
    bounding set (cap_drop ALL), no-new-privileges, and the memory, CPU and process limits."""
    status = engine("exec", container, "cat", "/proc/1/status")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert int(fields["CapBnd"], 16) == 0 and int(fields["CapEff"], 16) == 0, container
    assert fields["NoNewPrivs"].strip() == "1", container
    host = inspect(container)["HostConfig"]
    assert host["Memory"] == parse_size(spec["mem_limit"]), container
    assert host["NanoCpus"] == int(float(spec["cpus"]) * 1e9), container
    assert host["PidsLimit"] == int(spec["pids_limit"]), container
