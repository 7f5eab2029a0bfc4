"""Tail the service's event-log segments (the `file` transport) into the monitor's state,
exactly once."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from monitoring.state import MonitorState
from shiftwatch.events import LabelEvent, PredictionEvent

log = logging.getLogger(__name__)
SEGMENT_GLOB = "events-*.jsonl"
EVENT = TypeAdapter(PredictionEvent | LabelEvent)
CHUNK_BYTES = 1 << 20  # read and commit at most this much per transaction


@dataclass
class IngestPass:
    events: int = 0
    bad_lines: int = 0
    lag_seconds: float = 0.0  # age of the oldest unread event; 0 when caught up
    # Redis only: per stream, entries not yet delivered ("lag") and delivered but not
    # acknowledged ("pending").
    streams: dict[str, dict[str, int]] = field(default_factory=dict)


def apply_event(state: MonitorState, raw: bytes, result: IngestPass, source: str) -> None:
    """One event's JSON (a segment's line, a stream entry's field) into `state`; an unreadable
    one is counted and skipped. The caller owns the transaction."""
    if not raw.strip():
        return
    try:
        event = EVENT.validate_json(raw)
    except ValidationError as exc:
        state.count("bad_lines")
        result.bad_lines += 1
        log.warning("unreadable event in %s skipped: %s", source, str(exc).splitlines()[0])
        return
    if isinstance(event, PredictionEvent):
        state.add_prediction(event)
    else:
        state.add_label(event)
    result.events += 1


class Ingestor:
    def __init__(self, directory: Path, state: MonitorState, retention_seconds: float) -> None:
        self.directory = Path(directory)
        self.state = state
        self.retention_seconds = retention_seconds

    def run_once(self, max_events: int | None = None) -> IngestPass:
        """Read every segment from its stored offset to its last complete line."""
        result = IngestPass()
        offsets = self.state.offsets()
        segments = sorted(self.directory.glob(SEGMENT_GLOB)) if self.directory.is_dir() else []
        present = {p.name for p in segments}
        for gone in set(offsets) - present:  # rotated away by the service's disk budget
            self.state.begin()
            self.state.forget_segment(gone)
            self.state.commit()
        for path in segments:
            self._read_segment(path, offsets.get(path.name, 0), result, max_events)
            if max_events is not None and result.events >= max_events:
                break
        behind = []
        for path in segments:
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            if stat.st_size > self.state.offsets().get(path.name, 0):
                behind.append(stat.st_mtime)
        result.lag_seconds = max(0.0, time.time() - min(behind)) if behind else 0.0
        return result

    def _read_segment(
        self, path: Path, offset: int, result: IngestPass, max_events: int | None
    ) -> None:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return
        if size < offset:  # replaced under the same name: start over
            log.warning("segment %s shrank below its offset; reading it from the start", path.name)
            offset = 0
        while offset < size:
            with path.open("rb") as f:
                f.seek(offset)
                chunk = f.read(CHUNK_BYTES)
            end = chunk.rfind(b"\n")
            if end < 0:
                return  # a line still being written
            lines = chunk[:end].split(b"\n")
            if max_events is not None:  # stop mid-chunk (tests of restart safety)
                lines = lines[: max(0, max_events - result.events)]
                end = sum(len(line) + 1 for line in lines) - 1
            self.state.begin()
            try:
                for line in lines:
                    apply_event(self.state, line, result, path.name)
                offset += end + 1
                self.state.set_offset(path.name, offset)
                self.state.expire(self.retention_seconds)
                self.state.commit()
            except BaseException:
                self.state.rollback()
                raise
            if max_events is not None and result.events >= max_events:
                return
