"""The event log: lines written, segments rolled, disk bounded, failures counted not raised."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from harness import wait_until
from service.event_log import EventLog, TransportMetrics
from shiftwatch.events import LabelEvent
from shiftwatch.transport.segments import SegmentWriter

pytestmark = pytest.mark.unit


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def label_events(n: int, start: int = 0) -> list[LabelEvent]:
    return [
        LabelEvent(request_id=f"r{i}", label="topic_a", timestamp=1.0)
        for i in range(start, start + n)
    ]


def labels(directory: Path) -> list[dict]:
    return [e for e in lines(directory) if e["type"] != "segment_start"]


def lines(directory: Path) -> list[dict]:
    found = []
    for path in sorted(directory.glob("events-*.jsonl")):
        try:  # the writer may delete a segment between the listing and the read
            text = path.read_text()
        except FileNotFoundError:
            continue
        found += [json.loads(line) for line in text.splitlines() if line.endswith("}")]
    return found


def test_events_are_written_as_json_lines(tmp_path: Path) -> None:
    log = EventLog(
        SegmentWriter(tmp_path, 1 << 20, 1 << 22, TransportMetrics()), queue_size=100
    ).start()
    log.append(label_events(10))
    log.close()
    assert [e["request_id"] for e in labels(tmp_path)] == [f"r{i}" for i in range(10)]
    assert all(e["type"] == "label" for e in labels(tmp_path))
    assert lines(tmp_path)[0]["type"] == "segment_start"


def test_segments_roll_and_disk_stays_bounded(tmp_path: Path) -> None:
    log = EventLog(
        SegmentWriter(tmp_path, 4096, 8192, TransportMetrics()), queue_size=10_000
    ).start()
    for chunk in range(20):
        log.append(label_events(50, start=chunk * 50))
        wait_until(lambda: log.pending == 0, 5, "the queue written")
    log.close()
    segments = sorted(tmp_path.glob("events-*.jsonl"))
    assert len(segments) >= 2
    total = sum(p.stat().st_size for p in segments)
    assert total <= 8192 + 4096  # the budget, plus the segment being written
    events = [e for e in lines(tmp_path) if e["type"] == "label"]
    ids = [int(e["request_id"][1:]) for e in events]
    assert ids == sorted(ids) and ids[-1] == 999  # the newest events survive, in order
    # Each segment opens with the count of events its writer wrote before it, so a reader
    # knows exactly how many the deleted segments held: here, those before the survivors.
    headers = [e for e in lines(tmp_path) if e["type"] == "segment_start"]
    assert [h["seq"] for h in headers] == sorted(h["seq"] for h in headers)
    assert headers[0]["events_before"] == ids[0] > 0


def test_writers_never_share_segment_names(tmp_path: Path) -> None:
    """A restarted process (same host, same pid) must not append to its predecessor's files."""
    first, second = SegmentWriter(tmp_path, 4096, 1 << 20), SegmentWriter(tmp_path, 4096, 1 << 20)
    first.write(label_events(2))
    second.write(label_events(2, start=2))
    first.close()
    second.close()
    names = sorted(p.name for p in tmp_path.glob("events-*.jsonl"))
    assert len(names) == 2 and first.writer_id != second.writer_id
    assert sorted(e["request_id"] for e in labels(tmp_path)) == ["r0", "r1", "r2", "r3"]


def test_unwritable_directory_counts_errors_and_keeps_going(tmp_path: Path) -> None:
    blocker = tmp_path / "events"
    blocker.write_text("a file where the directory should be")
    before = counter("shiftwatch_event_log_write_errors_total", reason="io_error")
    log = EventLog(SegmentWriter(blocker, 4096, 8192, TransportMetrics()), queue_size=100).start()
    log.append(label_events(3))
    log.close()
    assert counter("shiftwatch_event_log_write_errors_total", reason="io_error") == before + 3


def test_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    log = EventLog(
        SegmentWriter(tmp_path, 1 << 20, 1 << 22, TransportMetrics()), queue_size=5
    )  # not started
    before = counter("shiftwatch_event_log_write_errors_total", reason="queue_full")
    started = time.perf_counter()
    log.append(label_events(12))
    assert time.perf_counter() - started < 0.5
    assert counter("shiftwatch_event_log_write_errors_total", reason="queue_full") == before + 7
