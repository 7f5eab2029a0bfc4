"""The `file` event transport: append-only JSON-lines segments in one directory.

Writer (`SegmentWriter`, the service's event log):
- bounded disk: the writer rolls to a new segment past `segment_bytes` and deletes the
  oldest segments while all of them together exceed `max_bytes`. A reader that falls
  further behind than that loses the deleted events, and learns how many: every segment
  starts with a `segment_start` line holding the number of events its writer wrote before;
- a segment removed or replaced under the writer (another writer's disk budget, the
  directory swapped for a file) is noticed before each batch, so events are never written
  into an unlinked file.

Segments are `events-<writer>-<seq>.jsonl`, `<writer>` = host, pid and a random suffix, so
several workers or replicas can share one directory without interleaving lines.

Reader (`SegmentReader`, the monitor): tails the segments into the monitor's state, exactly
once (see its docstring). `logged_events` reads them whole, for tests and benchmarks.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Protocol

from pydantic import BaseModel

from shiftwatch.events import SegmentStart
from shiftwatch.transport import (
    IngestPass,
    ReaderState,
    TransportError,
    Unreported,
    WriterReport,
    apply_event,
)

log = logging.getLogger(__name__)
SEGMENT_GLOB = "events-*.jsonl"
CHUNK_BYTES = 1 << 20  # read and commit at most this much per transaction
HEADER_PREFIX = b'{"type":"segment_start"'  # pydantic writes `type` first
TORN_AFTER_SECONDS = 60.0  # an unfinished last line this old, its writer gone quiet, is torn


def writer_of(segment: str) -> str:
    """`events-<writer>-<seq>.jsonl` -> `events-<writer>`."""
    return segment.rsplit("-", 1)[0]


def logged_events(directory: Path) -> list[dict]:
    """The prediction and label events in a directory's segments, in segment order, as
    dicts: not the `segment_start` headers, nor a line still being written."""
    events = []
    for path in sorted(Path(directory).glob(SEGMENT_GLOB)):
        try:  # the writer may delete a segment between the listing and the read
            text = path.read_text()
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("type") in ("prediction", "label"):
                events.append(event)
    return events


class SegmentWriter:
    backend = "file"

    def __init__(
        self,
        directory: Path,
        segment_bytes: int,
        max_bytes: int,
        report: WriterReport | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        # Unique per writer object: a restarted container keeps its hostname and often its pid,
        # and must never append to (or replace) a segment of its previous life.
        host = f"{socket.gethostname()}-{os.getpid()}".replace("/", "_")
        self.writer_id = f"{host}-{uuid.uuid4().hex[:8]}"
        self._file: IO[str] | None = None
        self._path: Path | None = None  # the open segment
        self._seq = 0
        self._size = 0
        self._written = 0  # event lines written, over every segment of this writer
        (report or Unreported()).up(self.backend, True)

    def available(self) -> bool:
        return True  # a failed write is reported by `write`; the next batch tries again

    def write(self, events: list[BaseModel]) -> None:
        lines = [event.model_dump_json() + "\n" for event in events]
        try:
            if self._file is not None and self._segment_gone():
                self._file.close()
                self._file = None
            for line in lines:
                if self._file is None or self._size + len(line) > self.segment_bytes:
                    self._roll()
                self._file.write(line)
                self._size += len(line)
                self._written += 1  # a line lost to a failed flush shows in the next header
            self._file.flush()
        except OSError as exc:
            if self._file is not None:
                try:
                    self._file.close()
                except OSError:
                    pass
            self._file = None  # reopen (next segment) on the next write
            raise TransportError("io_error", str(exc)) from exc

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _segment_gone(self) -> bool:
        """Whether the open segment's path no longer names the open file."""
        try:
            return not os.path.samestat(os.stat(self._path), os.fstat(self._file.fileno()))
        except OSError:  # removed, or a path component is no longer a directory
            return True

    def _roll(self) -> None:
        if self._file is not None:
            self._file.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        path = self.directory / f"events-{self.writer_id}-{self._seq:06d}.jsonl"
        self._file = path.open("a", encoding="utf-8")
        self._path = path
        start = SegmentStart(writer=self.writer_id, seq=self._seq, events_before=self._written)
        header = start.model_dump_json() + "\n"
        self._file.write(header)
        self._size = path.stat().st_size + len(header)
        self._enforce_budget(keep=path)

    def _enforce_budget(self, keep: Path) -> None:
        segments = sorted(self.directory.glob(SEGMENT_GLOB), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in segments)
        for path in segments:
            if total <= self.max_bytes or path == keep:
                break
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
            log.info("event log over %d bytes: deleted %s", self.max_bytes, path.name)


@dataclass(frozen=True)
class SegmentMark:
    """How far a segment file has been read: byte offset, event lines consumed, and the file
    as last seen (size, inode, unix time)."""

    position: int = 0
    lines: int = 0
    size: int = 0
    inode: int = 0
    seen: float = 0.0


class SegmentState(ReaderState, Protocol):
    """The monitor's state, with the segment reader's marks and per-writer counts."""

    def segments(self) -> dict[str, SegmentMark]: ...

    def mark_segment(self, segment: str, mark: SegmentMark) -> None: ...

    def forget_segment(self, segment: str) -> None: ...

    def segment_started(self, writer: str, events_before: int) -> None: ...

    def writer_consumed(self, writer: str, lines: int) -> None: ...


class SegmentReader:
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

    def __init__(self, directory: Path, state: SegmentState, retention_seconds: float) -> None:
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
                self.state.count(("lost", "unread_tail"), lost)
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
                    self.state.count(("lost", "torn_line"))
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
                    start = apply_event(self.state, line, result, path.name)
                    if start is not None:  # its writer's count of events before this segment
                        self.state.segment_started(writer_of(path.name), start.events_before)
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
