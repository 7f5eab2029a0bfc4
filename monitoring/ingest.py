"""Tail the service's event-log segments into the monitor's state, exactly once."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
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
    lag_seconds: float = 0.0  # age of the oldest segment with unread bytes; 0 when caught up


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
                    self._apply(line, result, path.name)
                offset += end + 1
                self.state.set_offset(path.name, offset)
                self.state.expire(self.retention_seconds)
                self.state.commit()
            except BaseException:
                self.state.rollback()
                raise
            if max_events is not None and result.events >= max_events:
                return

    def _apply(self, line: bytes, result: IngestPass, segment: str) -> None:
        if not line.strip():
            return
        try:
            event = EVENT.validate_json(line)
        except ValidationError as exc:
            self.state.count("bad_lines")
            result.bad_lines += 1
            log.warning("unreadable event in %s skipped: %s", segment, str(exc).splitlines()[0])
            return
        if isinstance(event, PredictionEvent):
            self.state.add_prediction(event)
        else:
            self.state.add_label(event)
        result.events += 1
