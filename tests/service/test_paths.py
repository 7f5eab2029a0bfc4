"""Requests to paths nobody serves cannot grow the service's metrics (issue 23, item 1).

On the code before service/paths.py, BentoML labelled each such request with its raw path:
50 random 100-character paths took /metrics from 100 to 1,103 lines."""

from __future__ import annotations

import os
import random
import socket
import string
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]
REQUESTS = 10_000
SAMPLE_LIMIT = 10_000  # deploy/prometheus/prometheus.yml


def series(metrics_text: str) -> list[str]:
    """The exposition's sample lines, without their values."""
    return sorted(
        line.rsplit(" ", 1)[0]
        for line in metrics_text.splitlines()
        if line and not line.startswith("#")
    )


def multiprocess_bytes() -> int:
    """Bytes of BentoML's Prometheus multiprocess files (the server's BENTOML_HOME is the
    tests' own, tests/conftest.py)."""
    folder = Path(os.environ["BENTOML_HOME"]) / "prometheus_multiproc_dir"
    return sum(path.stat().st_size for path in folder.iterdir())


def random_path(rng: random.Random) -> str:
    """150 characters: letters, digits, `-`, `_` and `/` (no `.`: a client would fold a `..`
    segment, and an unlucky path could become a served one)."""
    return "/" + "".join(rng.choices(string.ascii_letters + string.digits + "/_-", k=150))


def pipelined(url: str, requests: list[tuple[str, str]], batch: int = 200) -> list[int]:
    """Send `requests` (method, path) on one keep-alive connection, `batch` at a time without
    waiting for each answer (HTTP/1.1 pipelining); the status of each answer, in order."""
    parts = urlsplit(url)
    statuses: list[int] = []
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as conn:
        reader = conn.makefile("rb")
        for start in range(0, len(requests), batch):
            chunk = requests[start : start + batch]
            conn.sendall(
                b"".join(
                    f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
                    for method, path in chunk
                )
            )
            for _ in chunk:
                statuses.append(int(reader.readline().split()[1]))
                length = 0
                while (line := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                reader.read(length)
    return statuses


def test_unknown_paths_add_no_series_and_no_metric_bytes(live_server: dict) -> None:
    rng = random.Random(23)
    with httpx.Client(base_url=live_server["url"], timeout=10) as client:
        first = client.get(random_path(rng))  # the refusals' own counter exists from here on
        assert first.status_code == 404 and first.json() == {"error": "not found"}
        before, size_before = series(client.get("/metrics").text), multiprocess_bytes()
        requests = [(rng.choice(["GET", "POST"]), random_path(rng)) for _ in range(REQUESTS)]
        statuses = set(pipelined(live_server["url"], requests))
        after, size_after = series(client.get("/metrics").text), multiprocess_bytes()
        refused = client.get("/metrics").text
    assert statuses == {404}
    assert len(before) < SAMPLE_LIMIT / 10  # far under the deploy files' scrape bound
    assert after == before
    assert size_after == size_before
    line = 'shiftwatch_requests_rejected_total{endpoint="other",reason="unknown_path"}'
    assert f"{line} {REQUESTS + 1}.0" in refused.splitlines()


def test_every_path_the_service_serves_still_answers(live_server: dict) -> None:
    with httpx.Client(base_url=live_server["url"], timeout=10) as client:
        for path in ("/", "/livez", "/readyz", "/metrics", "/models", "/docs.json", "/schema.json"):
            assert client.get(path).status_code == 200, path
        docs = client.get("/").text
        assets = [part.split('"')[0] for part in docs.split('src="./')[1:]]
        for asset in assets:
            assert client.get("/" + asset).status_code == 200, asset
        assert client.get("/predict").status_code == 405  # a served path, another method
