"""A local `redis-server` process (Debian's package; `make servers` installs it), for the
fleet tests and benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from orchestration.replay.stack import free_port


class RedisServer:
    """redis-server on loopback with its data in `directory`; stop and start keep the port
    and (append-only file) the data, as a restarted server would."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make servers`")
        self.binary = binary
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
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                assert self.process.poll() is None, (self.directory / "redis.log").read_text()
                assert time.monotonic() < deadline, "redis-server did not start in 15 s"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)
