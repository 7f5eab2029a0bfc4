"""The event log: append-only JSON-lines segments, written off the request path.

Guarantees (DESIGN.md, "Prediction and label events"):
- never blocks a prediction: `append` only enqueues; a full queue drops the event
  and counts it (`shiftwatch_event_log_write_errors_total{reason="queue_full"}`);
- a failed write is counted (`reason="io_error"`) and logged, never raised; a segment removed
  or replaced under the writer (another writer's disk budget, the directory swapped for a
  file) is noticed before each batch, so events are never written into an unlinked file;
- bounded disk: the writer rolls to a new segment past `segment_bytes` and
  deletes the oldest segments while all of them together exceed `max_bytes`.
  A consumer that falls further behind than that loses the deleted events; the
  monitor counts such gaps.

Segments are `events-<writer>-<seq>.jsonl`, `<writer>` = host and pid, so several
workers or replicas can share one directory without interleaving lines.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from pydantic import BaseModel

from service import metrics

log = logging.getLogger(__name__)
SEGMENT_GLOB = "events-*.jsonl"
_STOP = object()


class EventLog:
    def __init__(
        self, directory: Path, segment_bytes: int, max_bytes: int, queue_size: int
    ) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.writer_id = f"{socket.gethostname()}-{os.getpid()}".replace("/", "_")
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="event-log-writer", daemon=True)
        self._file: IO[str] | None = None
        self._path: Path | None = None  # the open segment
        self._seq = 0
        self._size = 0

    def start(self) -> EventLog:
        self._thread.start()
        return self

    def append(self, events: Iterable[BaseModel]) -> None:
        """Enqueue events for writing; never blocks, never raises."""
        for event in events:
            kind = getattr(event, "type", "unknown")
            try:
                self._queue.put_nowait(event)
                metrics.event_log_events.labels(type=kind).inc()
            except queue.Full:
                metrics.event_log_write_errors.labels(reason="queue_full").inc()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the writer."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    # -- writer thread -------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < 512:  # drain what is already waiting: one flush for many events
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            self._write([item for item in batch if item is not _STOP])
            if stop:
                if self._file is not None:
                    self._file.close()
                return

    def _write(self, events: list[BaseModel]) -> None:
        if not events:
            return
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
            self._file.flush()
        except OSError as exc:
            metrics.event_log_write_errors.labels(reason="io_error").inc(len(lines))
            log.warning("event log write failed (%d events lost): %s", len(lines), exc)
            if self._file is not None:
                try:
                    self._file.close()
                except OSError:
                    pass
            self._file = None  # reopen (next segment) on the next write

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
        self._size = path.stat().st_size
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
