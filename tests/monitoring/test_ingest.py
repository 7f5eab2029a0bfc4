"""Tailing the event log: complete lines only, bad lines counted, exactly once across kill -9."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from monitoring.state import MonitorState
from shiftwatch.events import LabelEvent
from shiftwatch.transport.segments import SegmentReader
from tests.monitoring.crash import kill_9_mid_ingest
from tests.monitoring.test_state import prediction


def write_log(directory: Path, n: int, segments: int = 2) -> tuple[int, int]:
    """n predictions, every other one labeled, spread over segments; returns (predictions, labels)."""
    directory.mkdir(parents=True, exist_ok=True)
    per = -(-n // segments)
    labels = 0
    for s in range(segments):
        with (directory / f"events-test-{s + 1:06d}.jsonl").open("w") as f:
            for i in range(s * per, min(n, (s + 1) * per)):
                f.write(prediction(f"r{i}", float(i)).model_dump_json() + "\n")
                if i % 2 == 0:
                    f.write(
                        LabelEvent(
                            request_id=f"r{i}", label="a", timestamp=float(i)
                        ).model_dump_json()
                        + "\n"
                    )
                    labels += 1
    return n, labels


@pytest.mark.unit
def test_only_complete_lines_are_consumed(tmp_path: Path) -> None:
    log_dir = tmp_path / "events"
    log_dir.mkdir()
    segment = log_dir / "events-w-000001.jsonl"
    line = prediction("r1", 1.0).model_dump_json()
    second = prediction("r2", 2.0).model_dump_json()
    segment.write_text(line + "\n" + second[:40])  # the second line is still being written
    state = MonitorState(tmp_path / "s.sqlite")
    ingest = SegmentReader(log_dir, state, retention_seconds=1e9)
    assert ingest.run_once().events == 1
    with segment.open("a") as f:
        f.write(second[40:] + "\n")
    assert ingest.run_once().events == 1
    assert state.counters()["events_prediction"] == 2


@pytest.mark.unit
def test_a_bad_line_is_counted_and_skipped(tmp_path: Path) -> None:
    log_dir = tmp_path / "events"
    log_dir.mkdir()
    good = prediction("r1", 1.0).model_dump_json()
    (log_dir / "events-w-000001.jsonl").write_text(
        f'{{"type": "prediction"}}\nnot json at all\n{good}\n'
    )
    state = MonitorState(tmp_path / "s.sqlite")
    result = SegmentReader(log_dir, state, retention_seconds=1e9).run_once()
    assert (result.events, result.bad_lines) == (1, 2)
    assert state.counters()["bad_lines"] == 2


CHILD = """
import sys
from pathlib import Path
from shiftwatch.transport.segments import SegmentReader
from monitoring.state import MonitorState
state = MonitorState(Path(sys.argv[2]), known_domains={"news"})
ingest = SegmentReader(Path(sys.argv[1]), state, retention_seconds=1e9)
while True:
    ingest.run_once(max_events=7)  # small transactions, so the kill lands between and inside them
"""


@pytest.mark.integration
def test_kill_9_mid_stream_then_restart_counts_every_event_exactly_once(tmp_path: Path) -> None:
    log_dir, db = tmp_path / "events", tmp_path / "state.sqlite"
    predictions, labels = write_log(log_dir, 1500)
    ingested = kill_9_mid_ingest(
        [sys.executable, "-c", CHILD, str(log_dir), str(db)], db, predictions // 3
    )
    assert 0 < ingested < predictions, "the kill should land mid-stream"

    state = MonitorState(db, known_domains={"news"})
    while SegmentReader(log_dir, state, retention_seconds=1e9).run_once().events:
        pass
    c = state.counters()
    assert c["events_prediction"] == predictions
    assert c["events_label"] == labels == c["labels_matched"]
    assert c.get("labels_duplicate", 0) == 0 and c.get("predictions_duplicate", 0) == 0
    assert c[("labeled", "baseline", "news")] == labels
    assert len(state.window("baseline", 10_000, 1e9)) == predictions
