"""The `file` event transport: append-only JSON-lines segments in one directory.

- bounded disk: the writer rolls to a new segment past `segment_bytes` and deletes the
  oldest segments while all of them together exceed `max_bytes`. A consumer that falls
  further behind than that loses the deleted events, and learns how many: every segment
  starts with a `segment_start` line holding the number of events its writer wrote before;
- a segment removed or replaced under the writer (another writer's disk budget, the
  directory swapped for a file) is noticed before each batch, so events are never written
  into an unlinked file.

Segments are `events-<writer>-<seq>.jsonl`, `<writer>` = host and pid, so several workers
or replicas can share one directory without interleaving lines.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path
from typing import IO

from pydantic import BaseModel

from service import metrics
from service.event_log import TransportError
from shiftwatch.events import SegmentStart

log = logging.getLogger(__name__)
SEGMENT_GLOB = "events-*.jsonl"


class FileSegments:
    backend = "file"

    def __init__(self, directory: Path, segment_bytes: int, max_bytes: int) -> None:
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
        metrics.event_transport_up.labels(backend=self.backend).set(1)

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
