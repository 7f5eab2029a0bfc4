"""How long after its answer a prediction's event is on disk, with and without the default
shadows (they run after the answer, in their own process, so the event waits for them).

One client, one request at a time: each answer is followed by polling the event log's
segment files until that request's event is there. Prints the delays; not part of
docs/benchmarks.md.

    python -m benchmarks.event_delay [--requests 200]
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer

from benchmarks.bench_service import request_sequence, server_env, stored_bundle
from benchmarks.live_service import READY_TIMEOUT_S, Server
from benchmarks.results import DEFAULT, NO_SHADOWS
from benchmarks.timing import Timing
from shiftwatch.settings import ServiceSettings
from shiftwatch.transport.segments import logged_events


def delays(server: Server, events: Path, tokens: list[str], requests: int) -> Timing:
    samples = []
    with httpx.Client(base_url=server.url, trust_env=False, timeout=30) as client:
        for i in range(requests):
            rid = f"delay-{i}"
            answer = client.post(
                "/predict", json={"instances": [{"tokens": tokens, "request_id": rid}]}
            )
            answered = time.perf_counter()
            answer.raise_for_status()
            while not any(e.get("request_id") == rid for e in logged_events(events)[-5:]):
                time.sleep(0.0005)
            samples.append((time.perf_counter() - answered) * 1e3)
    return Timing(tuple(samples))


def main(requests: Annotated[int, typer.Option(min=10)] = 200) -> None:
    """Event delay after the answer, default shadows vs none."""
    settings = ServiceSettings()
    bundle, _ = stored_bundle(settings.primary_name)
    tokens, _, _ = request_sequence(32)
    max_tokens = min(settings.max_tokens, bundle.meta.max_positions)
    with tempfile.TemporaryDirectory(prefix="event_delay_") as folder:
        for config in (NO_SHADOWS, DEFAULT):
            work = Path(folder) / config.folder
            env = server_env(config, settings, max_tokens, work / "events", "")
            server = Server.start(config.name, env, work, bundle.path.parents[1])
            try:
                server.wait_ready(time.monotonic() + READY_TIMEOUT_S)
                delays(server, work / "events", tokens, 20)  # warm-up
                t = delays(server, work / "events", tokens, requests)
            finally:
                server.stop()
            print(json.dumps({"server": config.name, "requests": requests,
                              "event_delay_p50_ms": round(t.median_ms, 2),
                              "event_delay_p99_ms": round(t.p99_ms, 2)}))  # fmt: skip


if __name__ == "__main__":
    typer.run(main)
