"""The test and benchmark harness: start, wait for and stop what tests and benchmarks run for
real on loopback, and the one way to wait for a condition.

- the service and the monitor: the product's own launcher (orchestration/replay/stack.py,
  which the demo uses too), re-exported here;
- redis-server (Debian's package) and Prometheus (`make servers` installs both);
- `wait_until`: poll a condition with a deadline, never a sleep standing in for one.

Not shipped: neither the Bento nor the pip package holds it (tests and benchmarks run from
the repository's root).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis
import yaml

from orchestration.replay.stack import (  # noqa: F401 (the harness's process API)
    LocalProcess,
    free_port,
    start_monitor,
    start_service,
    stop_process,
    wait_ready,
)


def wait_until(
    condition: Callable[[], object],
    timeout: float,
    what: str,
    every: float = 0.02,
    tolerate: tuple[type[BaseException], ...] = (),
):
    """Poll `condition` every `every` seconds until it returns something truthy (returned);
    fail naming `what` when `timeout` seconds pass first. Errors of the `tolerate` types
    count as not yet (a server still starting: refused, reset, half-written JSON); the last
    one is named on timeout."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = condition()
        except tolerate as exc:
            value, last = None, exc
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what}"
                + (f" (last error: {last!r})" if last is not None else "")
            )
        time.sleep(every)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed: run `make servers`")
    return path


class RedisServer:
    """redis-server on loopback with its data in `directory`; stop and start keep the port
    and (append-only file) the data, as a restarted server would."""

    def __init__(self, directory: Path) -> None:
        self.binary = require_tool("redis-server")
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--save", "",
                "--daemonize", "no",
            ],
            stdout=(self.directory / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until(self._answers, 15, "redis-server to answer", every=0.05)
        return self

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"redis-server exited:\n{(self.directory / 'redis.log').read_text()}"
            )
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


class PrometheusServer:
    """Prometheus on loopback scraping `targets` (job -> host:port) every second, with
    `rule_files` loaded, its data in `work`."""

    def __init__(self, targets: dict[str, str], work: Path, rule_files: list[Path]) -> None:
        self.binary = require_tool("prometheus")
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in targets.items()
            ],
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> PrometheusServer:
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "prometheus.yml").write_text(yaml.safe_dump(self.config))
        log_path = self.work / "prometheus.log"
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.work / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.work / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            cwd=self.work,
            stdout=log_path.open("w"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(self.process, f"{self.url}/-/ready", log_path, timeout=30)
        except RuntimeError:
            self.stop()
            raise
        return self

    def query(self, expr: str, at: float | None = None) -> dict:
        """The `data` of an instant query (at unix time `at`, default now)."""
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        body = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10).json()
        assert body["status"] == "success", (expr, body)
        return body["data"]

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
        self.process = None
