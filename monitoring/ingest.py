"""Tail the service's event-log segments (the `file` transport) into the monitor's state,
exactly once."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

from monitoring.state import MonitorState, SegmentMark
from shiftwatch.events import LabelEvent, PredictionEvent, SegmentStart

log = logging.getLogger(__name__)
SEGMENT_GLOB = "events-*.jsonl"
# Discriminated by `type`: one validator per line, not a try of each member in turn.
EVENT = TypeAdapter(
    Annotated[PredictionEvent | LabelEvent | SegmentStart, Field(discriminator="type")]
)
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
    if isinstance(event, SegmentStart):  # a file segment's header: its writer's count so far
        state.segment_started(writer_of(source), event.events_before)
        return
    if isinstance(event, PredictionEvent):
        state.add_prediction(event)
    else:
        state.add_label(event)
    result.events += 1


HEADER_PREFIX = b'{"type":"segment_start"'  # pydantic writes `type` first
TORN_AFTER_SECONDS = 60.0  # an unfinished last line this old, its writer gone quiet, is torn


def writer_of(segment: str) -> str:
    """`events-<writer>-<seq>.jsonl` -> `events-<writer>`."""
    return segment.rsplit("-", 1)[0]


class Ingestor:
    """Segments are read from their marks (byte offset and lines consumed, committed with
    what the lines changed). Lost events are counted, never silent:
    - every segment starts with a `segment_start` line: the number of events its writer had
      written before it. Compared with the events of that writer consumed so far, it gives
      exactly how many were lost in between (`segment_gap`): segments the disk budget deleted
      before they were read, the unread rest of a deleted half-read one, lines a failed write
      left out — however long the monitor was away;
    - a writer's last segment gone with unread bytes (no later header will account for them):
      after the retention, its unread bytes at the segment's mean line size (`unread_tail`,
      an estimate);
    - an unfinished last line whose writer has moved on (a newer segment of the same writer,
      or no write for TORN_AFTER_SECONDS): skipped (`torn_line`);
    - a file replaced under a known name (another inode): read from its start.
    """

    def __init__(self, directory: Path, state: MonitorState, retention_seconds: float) -> None:
        self.directory = Path(directory)
        self.state = state
        self.retention_seconds = retention_seconds

    def run_once(self, max_events: int | None = None) -> IngestPass:
        """Read every segment from its mark to its last complete line."""
        result = IngestPass()
        segments = sorted(self.directory.glob(SEGMENT_GLOB)) if self.directory.is_dir() else []
        newest = {}  # writer -> its newest segment
        for path in segments:
            newest[writer_of(path.name)] = path.name
        marks = self.state.segments()  # as committed before this pass
        self._account_for_gone({p.name for p in segments}, marks)
        for path in segments:
            moved_on = newest[writer_of(path.name)] != path.name
            self._read_segment(path, marks.get(path.name), moved_on, result, max_events)
            if max_events is not None and result.events >= max_events:
                break
        behind, marks = [], self.state.segments()
        for path in segments:
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            if stat.st_size > marks.get(path.name, SegmentMark()).position:
                behind.append(stat.st_mtime)
        result.lag_seconds = max(0.0, time.time() - min(behind)) if behind else 0.0
        return result

    def _account_for_gone(self, present: set[str], marks: dict[str, SegmentMark]) -> None:
        """Forget gone segments whose loss a later header of their writer accounts for; count
        the unread bytes of a writer's last segment once it has been gone for the retention."""
        now = time.time()
        writers = {writer_of(name) for name in present}
        for name, mark in marks.items():
            if name in present:
                continue
            unread = mark.size - mark.position
            last_of_writer = writer_of(name) not in writers
            if unread > 0 and last_of_writer and now - mark.seen < self.retention_seconds:
                continue  # its writer may still roll to a new segment, whose header counts it
            self.state.begin()
            if unread > 0 and last_of_writer:
                lost = _estimated_events(mark, unread)
                self.state.count("lost|unread_tail", lost)
                self.state.writer_consumed(writer_of(name), lost)
            self.state.forget_segment(name)
            self.state.commit()

    def _read_segment(
        self,
        path: Path,
        mark: SegmentMark | None,
        moved_on: bool,
        result: IngestPass,
        max_events: int | None,
    ) -> None:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return
        mark = mark or SegmentMark(inode=stat.st_ino)
        if mark.inode not in (0, stat.st_ino) or stat.st_size < mark.position:
            log.warning("segment %s was replaced; reading the new file from its start", path.name)
            mark = SegmentMark(inode=stat.st_ino)  # its header accounts for what was lost
        offset, lines_read = mark.position, mark.lines
        seen = SegmentMark(offset, lines_read, stat.st_size, stat.st_ino, time.time())
        if offset >= stat.st_size:
            if (mark.size, mark.inode) != (seen.size, seen.inode):
                self._commit_mark(path.name, seen)
            return
        while offset < stat.st_size:
            with path.open("rb") as f:
                f.seek(offset)
                chunk = f.read(CHUNK_BYTES)
            end = chunk.rfind(b"\n")
            if end < 0:  # an unfinished line: still being written, or torn
                quiet = time.time() - stat.st_mtime > TORN_AFTER_SECONDS
                if offset + len(chunk) >= stat.st_size and (moved_on or quiet):
                    self.state.begin()
                    self.state.count("lost|torn_line")
                    self.state.writer_consumed(writer_of(path.name), 1)  # accounted for
                    self.state.commit()
                    log.warning("segment %s: unfinished last line skipped", path.name)
                    offset = stat.st_size
                self._commit_mark(path.name, replace(seen, position=offset, lines=lines_read))
                return
            lines = chunk[:end].split(b"\n")
            if max_events is not None:  # stop mid-chunk (tests of restart safety)
                lines = lines[: max(0, max_events - result.events)]
                end = sum(len(line) + 1 for line in lines) - 1
            self.state.begin()
            try:
                for line in lines:
                    apply_event(self.state, line, result, path.name)
                offset += end + 1
                events = sum(1 for line in lines if not line.startswith(HEADER_PREFIX))
                self.state.writer_consumed(writer_of(path.name), events)
                lines_read += events
                self.state.mark_segment(path.name, replace(seen, position=offset, lines=lines_read))
                self.state.expire(self.retention_seconds)
                self.state.commit()
            except BaseException:
                self.state.rollback()
                raise
            if max_events is not None and result.events >= max_events:
                return

    def _commit_mark(self, segment: str, mark: SegmentMark) -> None:
        self.state.begin()
        self.state.mark_segment(segment, mark)
        self.state.commit()


def _estimated_events(mark: SegmentMark, unread_bytes: int) -> int:
    """Events in `unread_bytes` of a segment, at its mean line size so far (1 KiB if none)."""
    mean = mark.position / mark.lines if mark.lines else 1024.0
    return max(1, round(unread_bytes / mean))
