"""The Redis Streams transport against a real redis-server: streams, bounds, outages."""

from __future__ import annotations

import json
import time

import pytest
from prometheus_client import REGISTRY

from harness import RedisServer
from service.event_log import EventLog, TransportMetrics
from shiftwatch.events import LabelEvent, PredictionEvent
from shiftwatch.transport.redis_streams import (
    EVENT_FIELD,
    StreamWriter,
    label_stream,
    prediction_stream,
)
from tests.servers import wait_until

pytestmark = pytest.mark.integration


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def lost(reason: str) -> float:
    return sample("shiftwatch_event_log_write_errors_total", reason=reason)


def prediction(i: int, model: str) -> PredictionEvent:
    return PredictionEvent(
        request_id=f"r{i}",
        timestamp=1000.0 + i,
        model=model,
        model_version=f"{model}:v1",
        predicted_label="a",
        confidence=0.9,
        entropy=0.3,
        probabilities={"a": 0.9, "b": 0.1},
        embedding=[0.0, 1.0],
        features={"length": 3.0},
    )


def label(i: int) -> LabelEvent:
    return LabelEvent(request_id=f"r{i}", label="a", timestamp=2000.0 + i)


def counted_checks(transport: StreamWriter) -> list[bool]:
    """Every answer the transport gives the writer thread when it asks whether it can write
    (once per writer loop), in order: a test waits on the writer's progress with it."""
    answers: list[bool] = []
    available = transport.available

    def checked() -> bool:
        answers.append(available())
        return answers[-1]

    transport.available = checked
    return answers


def stream_ids(server: RedisServer, stream: str) -> list[str]:
    entries = server.client().xrange(stream)
    return [json.loads(fields[EVENT_FIELD])["request_id"] for _, fields in entries]


def test_events_go_to_their_model_stream_and_the_label_stream(redis_server) -> None:
    log = EventLog(
        StreamWriter(redis_server.url, "sw", max_len=10_000, report=TransportMetrics()),
        queue_size=1000,
    ).start()
    log.append([prediction(0, "acme-base"), prediction(1, "acme_nope"), label(0)])
    log.append([prediction(2, "acme-base"), label(1)])
    log.close()
    assert stream_ids(redis_server, prediction_stream("sw", "acme-base")) == ["r0", "r2"]
    assert stream_ids(redis_server, prediction_stream("sw", "acme_nope")) == ["r1"]
    assert stream_ids(redis_server, label_stream("sw")) == ["r0", "r1"]
    entry = redis_server.client().xrange(prediction_stream("sw", "acme_nope"))[0][1]
    assert PredictionEvent.model_validate_json(entry[EVENT_FIELD]) == prediction(1, "acme_nope")


def test_streams_are_trimmed_to_about_max_len(redis_server) -> None:
    log = EventLog(
        StreamWriter(redis_server.url, "sw", max_len=1000, report=TransportMetrics()),
        queue_size=10_000,
    )
    log.start()
    for chunk in range(10):
        log.append([label(i) for i in range(chunk * 500, (chunk + 1) * 500)])
        wait_until(lambda: log.pending == 0, 10, "the chunk written")
    log.close()
    ids = stream_ids(redis_server, label_stream("sw"))
    # MAXLEN ~ trims whole macro nodes (100 entries by default): at most one node over.
    assert 1000 <= len(ids) <= 1100
    assert ids[-1] == "r4999" and ids == [f"r{i}" for i in range(5000 - len(ids), 5000)]


def test_unreachable_at_start_buffers_then_delivers(tmp_path) -> None:
    server = RedisServer(tmp_path / "redis")  # its port is chosen, nothing listens yet
    transport = StreamWriter(server.url, "sw", max_len=10_000, report=TransportMetrics())
    checks = counted_checks(transport)
    log = EventLog(transport, queue_size=1000).start()
    wait_until(lambda: sample("shiftwatch_event_transport_up", backend="redis") == 0.0, 10, "down")
    started = time.perf_counter()
    log.append([label(i) for i in range(300)])
    assert time.perf_counter() - started < 0.5  # append never waits for the transport
    # The writer asked twice more with the events queued (it takes a batch only after a yes)
    appended = len(checks)
    wait_until(lambda: len(checks) >= appended + 2, 10, "the writer to ask twice more")
    assert not any(checks[appended:]) and log.pending == 300  # buffered, not thrown away
    server.start()
    try:
        wait_until(lambda: log.pending == 0, 10, "the buffered events written")
        log.close()
        assert sample("shiftwatch_event_transport_up", backend="redis") == 1.0
        assert stream_ids(server, label_stream("sw")) == [f"r{i}" for i in range(300)]
    finally:
        server.stop()


def test_outage_mid_stream_counts_every_event_once(redis_server) -> None:
    before = {reason: lost(reason) for reason in ("transport_error", "queue_full", "shutdown")}
    transport = StreamWriter(redis_server.url, "sw", max_len=100_000, report=TransportMetrics())
    checks = counted_checks(transport)
    log = EventLog(transport, queue_size=200).start()
    sent = 0
    for round_ in range(30):
        if round_ == 10:
            redis_server.stop()
        if round_ == 20:
            redis_server.start()
        started = time.perf_counter()
        log.append([label(i) for i in range(sent, sent + 50)])
        assert time.perf_counter() - started < 0.5
        sent += 50
        # The writer's turn at this round (a batch taken, or the server found down).
        turn = len(checks)
        wait_until(lambda turn=turn: len(checks) > turn, 10, "the writer to take its turn")
    wait_until(lambda: log.pending == 0, 30, "every queued event written")
    log.close()
    delivered = stream_ids(redis_server, label_stream("sw"))
    dropped = sum(lost(reason) - before[reason] for reason in before)
    assert len(delivered) == len(set(delivered))  # nothing twice
    assert len(delivered) + dropped == sent  # and every missing event counted
    assert lost("queue_full") > before["queue_full"]  # the outage outlasted the queue
    assert delivered[-1] == f"r{sent - 1}"
