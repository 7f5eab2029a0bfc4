"""Consuming Redis Streams (a real redis-server): joins across streams, shards by group,
exactly once across a crash between commit and acknowledgement and across kill -9."""

from __future__ import annotations

import sys
import time

import pytest
import redis

from monitoring.state import MonitorState
from shiftwatch.events import LabelEvent
from shiftwatch.transport import TransportError
from shiftwatch.transport.redis_streams import (
    EVENT_FIELD,
    StreamReader,
    connect,
    label_stream,
    prediction_stream,
)
from tests.monitoring.crash import kill_9_mid_ingest
from tests.monitoring.test_state import prediction

pytestmark = pytest.mark.integration

BASELINE = prediction_stream("sw", "baseline")
LABELS = label_stream("sw")


def label(request_id: str, value: str = "a", ts: float = 1e6) -> LabelEvent:
    return LabelEvent(request_id=request_id, label=value, timestamp=ts)


def append(client: redis.Redis, stream: str, events) -> None:
    for event in events:
        client.xadd(stream, {EVENT_FIELD: event.model_dump_json()})


def ingestor(server, state: MonitorState, streams=(BASELINE, LABELS), group="g", count=1000):
    return StreamReader(connect(server.url), state, list(streams), group, 1e9, count)


def drain(ingest: StreamReader) -> int:
    total = 0
    while events := ingest.run_once().events:
        total += events
    return total


def test_labels_join_predictions_whichever_stream_comes_first(redis_server, tmp_path) -> None:
    client = redis_server.client()
    append(client, LABELS, [label("r1", "a"), label("r2", "b")])  # labels ahead of predictions
    append(client, BASELINE, [prediction("r1", 1.0), prediction("r2", 2.0), prediction("r3", 3.0)])
    state = MonitorState(tmp_path / "s.sqlite", known_domains={"news"})
    ingest = ingestor(redis_server, state)
    result = ingest.run_once()
    assert result.events == 5
    c = state.counters()
    assert (c["events_prediction"], c["events_label"], c["labels_matched"]) == (3, 2, 2)
    assert (c[("labeled", "baseline", "news")], c[("correct", "baseline", "news")]) == (2, 1)
    assert result.streams == {BASELINE: {"lag": 0, "pending": 0}, LABELS: {"lag": 0, "pending": 0}}
    append(client, LABELS, [label("r3", "a")])
    assert ingest.run_once().events == 1 and state.counters()["labels_matched"] == 3


def test_backlog_is_reported_per_stream_before_it_is_read(redis_server, tmp_path) -> None:
    client = redis_server.client()
    state = MonitorState(tmp_path / "s.sqlite")
    ingest = ingestor(redis_server, state, count=10)
    append(client, BASELINE, [prediction(f"r{i}", float(i)) for i in range(25)])
    result = ingest.run_once(max_events=10)
    assert result.events == 10
    assert result.streams[BASELINE] == {"lag": 15, "pending": 0}
    assert result.lag_seconds >= 0.0 and result.lag_seconds < 60
    assert drain(ingest) == 15


def test_shards_read_their_own_models_and_every_label(redis_server, tmp_path) -> None:
    client = redis_server.client()
    other = prediction_stream("sw", "other")
    append(client, BASELINE, [prediction("r1", 1.0)])
    append(client, other, [prediction("x1", 1.0).model_copy(update={"model": "other"})])
    append(client, LABELS, [label("r1"), label("x1")])
    first = MonitorState(tmp_path / "a.sqlite")
    second = MonitorState(tmp_path / "b.sqlite")
    assert drain(ingestor(redis_server, first, (BASELINE, LABELS), group="shard-a")) == 3
    assert drain(ingestor(redis_server, second, (other, LABELS), group="shard-b")) == 3
    assert first.counters()["labels_matched"] == 1 == second.counters()["labels_matched"]
    assert len(first.window("baseline", 100, 1e9)) == 1


def test_crash_after_commit_before_ack_counts_nothing_twice(redis_server, tmp_path) -> None:
    client = redis_server.client()
    append(client, BASELINE, [prediction(f"r{i}", float(i)) for i in range(30)])
    append(client, LABELS, [label(f"r{i}") for i in range(0, 30, 3)])
    state = MonitorState(tmp_path / "s.sqlite", known_domains={"news"})
    crashing = ingestor(redis_server, state, count=20)
    execute = redis.client.Pipeline.execute

    def lost_ack(self, *args, **kwargs):  # the process dies between COMMIT and XACK
        if any(command[0][0] == "XACK" for command in self.command_stack):
            raise redis.ConnectionError("killed before the acknowledgement")
        return execute(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redis.client.Pipeline, "execute", lost_ack)
        with pytest.raises(TransportError):
            crashing.run_once()
    applied = state.counters()["events_prediction"]
    assert 0 < applied < 30
    assert client.xpending(BASELINE, "g")["pending"] == applied  # delivered, not acknowledged
    restarted = ingestor(redis_server, MonitorState(tmp_path / "s.sqlite", {"news"}))
    drain(restarted)
    c = state.counters()
    assert (c["events_prediction"], c["events_label"], c["labels_matched"]) == (30, 10, 10)
    assert c.get("predictions_duplicate", 0) == 0 and c.get("labels_duplicate", 0) == 0
    assert client.xpending(BASELINE, "g")["pending"] == 0


def test_unreachable_server_is_an_error_with_backoff_then_resumes(tmp_path) -> None:
    from harness import RedisServer

    server = RedisServer(tmp_path / "redis")
    state = MonitorState(tmp_path / "s.sqlite")
    ingest = ingestor(server, state)
    with pytest.raises(TransportError) as failure:
        ingest.run_once()
    assert failure.value.reason == "connection"
    assert ingest.run_once().events == 0  # backing off: no second attempt at once, no error
    server.start()
    try:
        append(server.client(), BASELINE, [prediction("r1", 1.0)])
        deadline = time.monotonic() + 10
        while ingest.run_once().events == 0:  # the first retry waits out the backoff
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert state.counters()["events_prediction"] == 1
    finally:
        server.stop()


CHILD = """
import sys
from pathlib import Path
from monitoring.state import MonitorState
from shiftwatch.transport.redis_streams import StreamReader
from shiftwatch.transport.redis_streams import connect
state = MonitorState(Path(sys.argv[2]), known_domains={"news"})
ingest = StreamReader(connect(sys.argv[1]), state, sys.argv[3:], "g", 1e9, 7)
while True:
    ingest.run_once()  # 7 entries per transaction, so the kill lands between and inside them
"""


def test_kill_9_mid_stream_then_restart_counts_every_event_exactly_once(
    redis_server, tmp_path
) -> None:
    client = redis_server.client()
    n = 1500
    append(client, BASELINE, [prediction(f"r{i}", float(i)) for i in range(n)])
    append(client, LABELS, [label(f"r{i}") for i in range(0, n, 2)])
    db = tmp_path / "state.sqlite"
    args = [sys.executable, "-c", CHILD, redis_server.url, str(db), BASELINE, LABELS]
    ingested = kill_9_mid_ingest(args, db, n // 3)
    assert 0 < ingested < n, "the kill should land mid-stream"

    state = MonitorState(db, known_domains={"news"})
    drain(ingestor(redis_server, state))
    c = state.counters()
    assert c["events_prediction"] == n
    assert c["events_label"] == n // 2 == c["labels_matched"]
    assert c.get("labels_duplicate", 0) == 0 and c.get("predictions_duplicate", 0) == 0
    assert len(state.window("baseline", 10_000, 1e9)) == n


def test_entries_trimmed_before_they_were_read_are_counted(redis_server, tmp_path) -> None:
    client = redis_server.client()
    state = MonitorState(tmp_path / "s.sqlite")
    ingest = ingestor(redis_server, state)
    for i in range(50):
        client.xadd(BASELINE, {EVENT_FIELD: prediction(f"r{i}", float(i)).model_dump_json()})
    assert drain(ingest) == 50
    for i in range(50, 3050):  # the monitor away while the writers trim to ~1000
        event = prediction(f"r{i}", float(i)).model_dump_json()
        client.xadd(BASELINE, {EVENT_FIELD: event}, maxlen=1000, approximate=True)
    kept = client.xlen(BASELINE)
    assert drain(ingest) == kept < 3000
    c = state.counters()
    assert c[("lost", "trimmed")] == 3000 - kept  # exactly the entries it never saw
    assert c["events_prediction"] + c[("lost", "trimmed")] == 3050
    ingest.run_once()
    assert state.counters()[("lost", "trimmed")] == 3000 - kept  # counted once


def test_a_group_read_to_the_end_reports_no_backlog_whatever_redis_counts(
    redis_server, tmp_path
) -> None:
    """XINFO's `lag` is the stream's entries added minus the group's read counter, and that
    counter can be left behind: the fleet's Redis, reloaded from its append-only file, kept
    reporting 3,889 entries of lag for a group whose last delivered id was the stream's
    last. Here the counter is set behind as `XGROUP SETID ... ENTRIESREAD` would restore it."""
    client = redis_server.client()
    append(client, BASELINE, [prediction(f"r{i}", float(i)) for i in range(5)])
    ingest = ingestor(redis_server, MonitorState(tmp_path / "s.sqlite"))
    assert drain(ingest) == 5
    last = client.xinfo_stream(BASELINE)["last-generated-id"]
    client.xgroup_setid(BASELINE, "g", last, entries_read=2)
    (group,) = client.xinfo_groups(BASELINE)
    assert (group["last-delivered-id"], group["lag"]) == (last, 3)  # Redis: 3 behind
    result = ingest.run_once()
    assert (result.events, result.streams[BASELINE]) == (0, {"lag": 0, "pending": 0})
