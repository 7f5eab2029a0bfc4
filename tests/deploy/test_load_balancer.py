"""deploy/haproxy/haproxy.cfg, the balancer of docker-compose.fleet.yml, checked and run for real.

haproxy is Debian's package, installed by `make test` (`make servers`). The run replaces only what the engine provides: its DNS server (parse-resolv-conf) by a stub
that answers the compose service name `service` with two loopback addresses, and the replicas
by two small HTTP servers on those addresses whose /readyz can be turned off.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from orchestration.replay.stack import free_port
from tests.deploy.tools import DEPLOY, require_tool, run_tool

pytestmark = pytest.mark.integration

HAPROXY = DEPLOY / "haproxy" / "haproxy.cfg"
ADDRESSES = ("127.0.0.1", "127.0.0.2")  # two replicas of `service`


def test_haproxy_accepts_the_config() -> None:
    result = run_tool([require_tool("haproxy"), "-c", "-f", str(HAPROXY)])
    assert result.returncode == 0, result.stdout + result.stderr


class StubDNS:
    """A UDP DNS server answering A queries for `service` with ADDRESSES, NXDOMAIN otherwise."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.2)
        self.port = self.socket.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                query, client = self.socket.recvfrom(4096)
            except TimeoutError:
                continue
            self.socket.sendto(self.answer(query), client)

    @staticmethod
    def answer(query: bytes) -> bytes:
        position, labels = 12, []
        while query[position]:
            length = query[position]
            labels.append(query[position + 1 : position + 1 + length].decode())
            position += 1 + length
        (qtype,) = struct.unpack("!H", query[position + 1 : position + 3])
        question = query[12 : position + 5]
        found = ".".join(labels) == "service"
        records = b""
        if found and qtype == 1:  # A
            for address in ADDRESSES:  # name: a pointer to the question's; TTL 5 s
                records += b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4)
                records += socket.inet_aton(address)
        count = len(ADDRESSES) if records else 0
        flags = 0x8180 | (0 if found else 3)  # a response, recursion available; NXDOMAIN
        return struct.pack("!HHHHHH", query[0] << 8 | query[1], flags, 1, count, 0, 0) + (
            question + records
        )

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.socket.close()


class Replica(ThreadingHTTPServer):
    """Answers /readyz 200 while `ready`, 503 after; any other path 200 with its address."""

    ready = True

    def __init__(self, address: str, port: int) -> None:
        replica = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                ok = replica.ready or self.path != "/readyz"
                body = address.encode()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__((address, port), Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # health checks hang up without reading the body

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def poll(check, timeout: float = 30.0) -> bool:
    """Whether `check()` comes true within the timeout (connection errors: not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except httpx.TransportError:  # haproxy not listening yet
            pass
        time.sleep(0.2)
    return False


def served_by(url: str, requests: int) -> list[str]:
    answers = [httpx.get(url + "/predict", timeout=5) for _ in range(requests)]
    return [a.text if a.status_code == 200 else str(a.status_code) for a in answers]


def local_config(dns_port: int, replica_port: int, lb_port: int) -> str:
    """The config with the engine's addresses replaced by this test's, each exactly once."""
    config = HAPROXY.read_text()
    for docker, local in (
        ("bind :3000", f"bind 127.0.0.1:{lb_port}"),
        ("parse-resolv-conf", f"nameserver stub 127.0.0.1:{dns_port}"),
        (" service:3000", f" service:{replica_port}"),
    ):
        assert config.count(docker) == 1, docker
        config = config.replace(docker, local)
    return config


def test_balancer_spreads_requests_over_the_ready_replicas_dns_finds(tmp_path: Path) -> None:
    haproxy = require_tool("haproxy")
    first = Replica(ADDRESSES[0], 0)
    port = first.server_address[1]
    replicas = [first, Replica(ADDRESSES[1], port)]
    dns = StubDNS()
    lb_port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(local_config(dns.port, port, lb_port))
    log_path = tmp_path / "haproxy.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [haproxy, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{lb_port}"
    try:
        # both replicas found through DNS, and taken in turn
        assert poll(lambda: set(served_by(url, 4)) == set(ADDRESSES)), log_path.read_text()
        # a replica whose /readyz fails (starting, or draining after SIGTERM) gets nothing
        replicas[1].ready = False
        assert poll(lambda: set(served_by(url, 6)) == {ADDRESSES[0]}), log_path.read_text()
        health = f"{url}/lb-healthz"
        assert httpx.get(health, timeout=5).status_code == 200
        # none ready: the balancer's own health check says so
        replicas[0].ready = False
        assert poll(lambda: httpx.get(health, timeout=5).status_code == 503), log_path.read_text()
        assert served_by(url, 1) == ["503"]
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        dns.stop()
        for replica in replicas:
            replica.stop()
