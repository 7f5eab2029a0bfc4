"""A monitor that runs for weeks: one test per fault that used to stop it, lose events
silently or grow its state without bound. Real files, real SQLite, a real monitor process."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from harness import wait_until
from monitoring.monitor import Monitor
from monitoring.state import MonitorState
from orchestration.replay.stack import start_monitor
from shiftwatch.events import LabelEvent
from shiftwatch.settings import MonitorSettings
from shiftwatch.transport.segments import SegmentReader, SegmentWriter
from tests.monitoring.served import served_prediction
from tests.monitoring.test_state import prediction
from tests.servers import TINY_NAMES, monitor_env


def predictions(n: int, start: int = 0, ts: float | None = None):
    now = time.time() if ts is None else ts
    return [prediction(f"r{i}", now + i * 1e-3) for i in range(start, start + n)]


def drain(ingestor: SegmentReader) -> int:
    total = 0
    while events := ingestor.run_once().events:
        total += events
    return total


def stepped(monitor, check):
    """One pass of the monitor's loop, then `check`: waits that drive the loop themselves."""
    monitor.step()
    return check()


# -- lost events are counted, never silent ---------------------------------------------


@pytest.mark.unit
def test_segments_deleted_before_read_are_counted_exactly(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path / "events", segment_bytes=8192, max_bytes=16384)
    state = MonitorState(tmp_path / "state.sqlite")
    ingestor = SegmentReader(tmp_path / "events", state, retention_seconds=1e9)
    writer.write(predictions(20))
    read_first = drain(ingestor)  # a reader keeping up, at first
    for start in range(20, 500, 40):  # then away while the disk budget deletes segments
        writer.write(predictions(40, start=start))
    read_later = drain(ingestor)
    writer.close()
    c = state.counters()
    assert read_first == 20 and c[("lost", "segment_gap")] > 0
    assert read_first + read_later + c[("lost", "segment_gap")] == 500  # exactly, nothing twice
    assert c["events_prediction"] == read_first + read_later


@pytest.mark.unit
def test_a_half_read_segment_deleted_counts_its_unread_rest(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path / "events", segment_bytes=1 << 20, max_bytes=1 << 30)
    state = MonitorState(tmp_path / "state.sqlite")
    ingestor = SegmentReader(tmp_path / "events", state, retention_seconds=1e9)
    writer.write(predictions(30))
    assert ingestor.run_once(max_events=12).events == 12  # stopped mid-segment
    (first,) = (tmp_path / "events").glob("events-*.jsonl")
    first.unlink()  # as another writer's disk budget would
    writer.write(predictions(5, start=30))  # noticed: a new segment, with its header
    assert drain(ingestor) == 5
    assert state.counters()[("lost", "segment_gap")] == 18


@pytest.mark.unit
def test_a_torn_line_is_skipped_once_its_writer_moved_on(tmp_path: Path) -> None:
    events = tmp_path / "events"
    writer = SegmentWriter(events, segment_bytes=1 << 20, max_bytes=1 << 30)
    writer.write(predictions(5))
    writer.close()
    (segment,) = events.glob("events-*.jsonl")
    with segment.open("a") as f:  # a writer killed mid-line
        f.write(prediction("torn", time.time()).model_dump_json()[:50])
    state = MonitorState(tmp_path / "state.sqlite")
    ingestor = SegmentReader(events, state, retention_seconds=1e9)
    assert drain(ingestor) == 5
    assert ingestor.run_once().events == 0 and ("lost", "torn_line") not in state.counters()
    old = time.time() - 120  # the writer has been quiet for two minutes: it is gone
    os.utime(segment, (old, old))
    assert ingestor.run_once().events == 0
    assert state.counters()[("lost", "torn_line")] == 1
    assert ingestor.run_once().lag_seconds == 0.0  # no longer looks unread forever


@pytest.mark.unit
def test_a_torn_line_of_a_writer_that_rolled_on_is_skipped_at_once(tmp_path: Path) -> None:
    events = tmp_path / "events"
    writer = SegmentWriter(events, segment_bytes=1 << 20, max_bytes=1 << 30)
    writer.write(predictions(3))
    (first,) = events.glob("events-*.jsonl")
    with first.open("a") as f:
        f.write('{"type": "prediction", "request_id": "cut')
    writer._file.close()  # the next write opens the writer's next segment
    writer._file = None
    writer.write(predictions(2, start=3))
    state = MonitorState(tmp_path / "state.sqlite")
    assert drain(SegmentReader(events, state, retention_seconds=1e9)) == 5
    c = state.counters()
    assert c[("lost", "torn_line")] == 1 and c.get(("lost", "segment_gap"), 0) == 0


@pytest.mark.unit
def test_a_file_replaced_under_a_read_name_is_read_from_its_start(tmp_path: Path) -> None:
    events = tmp_path / "events"
    events.mkdir()
    segment = events / "events-host-1-000001.jsonl"
    segment.write_text("".join(p.model_dump_json() + "\n" for p in predictions(10)))
    state = MonitorState(tmp_path / "state.sqlite")
    ingestor = SegmentReader(events, state, retention_seconds=1e9)
    assert drain(ingestor) == 10
    replacement = events / "replacement.tmp"  # a new file, larger than the stored offset
    replacement.write_text("".join(p.model_dump_json() + "\n" for p in predictions(25, 100)))
    replacement.replace(segment)
    assert drain(ingestor) == 25  # not from the old offset, in the middle of a line
    assert state.counters().get("bad_lines", 0) == 0


# -- event time, request ids, bounded state ----------------------------------------------


@pytest.mark.unit
def test_a_future_timestamp_is_clamped_and_does_not_empty_the_windows(tmp_path: Path) -> None:
    state = MonitorState(tmp_path / "state.sqlite", max_clock_skew=300)
    now = time.time()
    state.begin()
    state.add_prediction(prediction("ok", now))
    state.add_prediction(prediction("ahead", now + 10 * 86400))  # a writer's clock off by days
    state.add_prediction(prediction("next", now + 1))
    state.expire(retention_seconds=3600)
    state.commit()
    assert state.counters()["future_timestamps"] == 1
    window = state.window("baseline", 100, max_age_seconds=3600)
    assert len(window) == 3  # nothing expired on arrival, the clamped one kept
    assert window["ts"].max() <= time.time() + 300


@pytest.mark.unit
def test_a_request_id_reused_after_its_label_starts_a_new_request(tmp_path: Path) -> None:
    state = MonitorState(tmp_path / "state.sqlite", known_domains={"news"})
    state.begin()
    state.add_prediction(prediction("row-7", 1.0, label="a"))
    state.add_label(LabelEvent(request_id="row-7", label="a", timestamp=2.0))
    state.add_prediction(prediction("row-7", 3.0, label="a"))  # the same id, a new request
    state.add_label(LabelEvent(request_id="row-7", label="b", timestamp=4.0))
    state.add_prediction(prediction("row-8", 5.0))
    state.add_prediction(prediction("row-8", 6.0))  # still open: a duplicate
    state.commit()
    c = state.counters()
    assert c["request_ids_reused"] == 1 and c["predictions_duplicate"] == 1
    assert c["labels_matched"] == 2 and c.get("labels_duplicate", 0) == 0
    assert (c[("labeled", "baseline", "news")], c[("correct", "baseline", "news")]) == (2, 1)
    assert len(state.window("baseline", 100, 1e9)) == 3


@pytest.mark.unit
def test_state_stays_within_its_row_and_byte_bounds(tmp_path: Path) -> None:
    state = MonitorState(tmp_path / "state.sqlite", max_requests=300, max_bytes=2**20)
    for batch in range(40):
        state.begin()
        for p in predictions(100, start=batch * 100, ts=1e6 + batch):
            state.add_prediction(p)
            if int(p.request_id[1:]) % 2 == 0:
                state.add_label(LabelEvent(request_id=p.request_id, label="a", timestamp=2e6))
        state.expire(retention_seconds=1e9)
        state.commit()
        state.reclaim()
    rows = state.db.execute("SELECT count(*) FROM requests").fetchone()[0]
    c = state.counters()
    assert rows == 300 and c["predictions_evicted"] == (4000 - 300) // 2  # the unlabeled
    assert state.used_bytes() <= 2**20
    newest = state.window("baseline", 1000, 1e9)
    assert newest["ts"].min() >= 1e6 + 36  # the oldest went first

    small = MonitorState(tmp_path / "small.sqlite", max_bytes=2**20)
    for batch in range(30):
        small.begin()
        for p in predictions(200, start=batch * 200, ts=1e6 + batch):
            small.add_prediction(p)
        small.expire(retention_seconds=1e9)
        small.commit()
        small.reclaim()
    assert 0 < small.db.execute("SELECT count(*) FROM requests").fetchone()[0] < 6000
    assert small.used_bytes() <= 2**20
    small.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert (tmp_path / "small.sqlite").stat().st_size <= 2**20 + 2**20  # freed pages returned


# -- errors are caught, counted, retried; the loop never dies --------------------------


@pytest.fixture
def monitor_settings(tiny_store: dict, tmp_path: Path) -> MonitorSettings:
    bundle, _ = tiny_store["baseline"]
    return MonitorSettings(
        event_transport="file",
        event_log_dir=tmp_path / "events",
        state_path=tmp_path / "state.sqlite",
        models_dir=Path(bundle.path).parent,
        models=list(TINY_NAMES.values()),
        recompute_seconds=0.2,
    )


def primary_predictions(tiny_store: dict, n: int, start: int = 0):
    """The tiny primary's predictions, each value as it serves them (the monitor checks)."""
    meta, now = tiny_store["baseline"][0].meta, time.time()
    return [served_prediction(meta, f"r{i}", now + i * 1e-3) for i in range(start, start + n)]


@pytest.mark.integration
def test_a_full_disk_is_retried_and_nothing_is_lost(
    monitor_settings: MonitorSettings, tiny_store: dict
) -> None:
    monitor = Monitor(monitor_settings)
    writer = SegmentWriter(monitor_settings.event_log_dir, 1 << 20, 1 << 30)
    writer.write(primary_predictions(tiny_store, 300))
    pages = monitor.state.db.execute("PRAGMA page_count").fetchone()[0]
    monitor.state.db.execute(f"PRAGMA max_page_count={pages}")  # the disk is full
    failing = wait_until(
        lambda: stepped(monitor, lambda: monitor.failures.current.get("ingest")), 60, "failing"
    )
    assert failing.reason == "disk_full" and failing.since <= time.time()
    assert monitor.status()["failing"]["ingest"]["reason"] == "disk_full"
    monitor.state.db.execute("PRAGMA max_page_count=1073741823")  # space freed
    wait_until(
        lambda: stepped(monitor, lambda: monitor.counters.get("events_prediction") == 300),
        60,
        "every event ingested after the fault",
    )
    assert "ingest" not in monitor.failures.current
    assert monitor.failures.counts["ingest_disk_full"] >= 1
    assert monitor.counters.get("predictions_duplicate", 0) == 0


@pytest.mark.integration
def test_a_locked_state_is_reported_then_recovered_from(
    monitor_settings: MonitorSettings, tiny_store: dict, tmp_path: Path
) -> None:
    """The fault that used to kill the ingest thread: another connection holds an exclusive
    lock on the state while events arrive. /healthz says what fails and since when, and the
    monitor catches up by itself once the lock is released."""
    server = {"store": tiny_store, "events": monitor_settings.event_log_dir}
    env = monitor_env(server, tmp_path)
    monitor = start_monitor(env, tmp_path / "monitor.log")
    try:
        writer = SegmentWriter(monitor_settings.event_log_dir, 1 << 20, 1 << 30)
        status = lambda: httpx.get(monitor.url + "/status").json()  # noqa: E731
        health = lambda: httpx.get(monitor.url + "/healthz")  # noqa: E731
        writer.write(primary_predictions(tiny_store, 10))
        wait_until(lambda: status()["counters"].get("events_prediction") == 10, 60, "10 events")
        lock = sqlite3.connect(tmp_path / "state.sqlite", timeout=30)
        lock.execute("BEGIN EXCLUSIVE")
        writer.write(primary_predictions(tiny_store, 10, start=10))
        failing = wait_until(lambda: health().json()["failing"].get("ingest"), 60, "failing")
        assert failing["reason"] == "state_locked" and failing["since"] <= time.time()
        assert health().status_code == 200 and health().json()["alive"] is True
        metrics = httpx.get(monitor.url + "/metrics").text
        assert 'shiftwatch_monitor_failing{stage="ingest"} 1.0' in metrics
        lock.rollback()
        lock.close()
        wait_until(lambda: status()["counters"].get("events_prediction") == 20, 90, "20 events")
        wait_until(lambda: health().json()["failing"] == {}, 60, "recovered")
        assert health().json()["alive"] is True
        metrics = httpx.get(monitor.url + "/metrics").text
        assert 'shiftwatch_monitor_failing{stage="ingest"} 0.0' in metrics
        assert 'shiftwatch_monitor_errors_total{kind="ingest_state_locked"}' in metrics
    finally:
        monitor.stop()
