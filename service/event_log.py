"""The event log: prediction and label events written off the request path, to a transport.

Guarantees (DESIGN.md, "Prediction and label events"), whatever the transport:
- never blocks a prediction: `append` only enqueues; a full queue drops the event
  and counts it (`shiftwatch_event_log_write_errors_total{reason="queue_full"}`);
- a failed write is counted (`reason="io_error"` for files, `"transport_error"` for Redis)
  and logged, never raised;
- while the transport is unavailable (Redis down) the writer waits and the queue buffers;
  events still queued when the process stops are counted (`reason="shutdown"`).

Transports (shiftwatch/transport/): `SegmentWriter` (files, one machine) and `StreamWriter`
(Redis Streams, a fleet). Each has `backend`, `available()`, `write(events)` (raises
`TransportError` when the batch is lost) and `close()`, and reports to the service's metrics
through `TransportMetrics`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from typing import Protocol

from pydantic import BaseModel

from service import prometheus
from shiftwatch.settings import ServiceSettings
from shiftwatch.transport import TransportError

log = logging.getLogger(__name__)
BATCH_EVENTS = 512  # events per write: one flush or one Redis round trip for many
BATCH_LINGER_SECONDS = 0.05  # how long the first event of a batch waits for others
UNAVAILABLE_WAIT_SECONDS = 0.05  # how often the writer asks an unavailable transport again


class TransportMetrics:
    """A writer's report, into the service's metrics."""

    def lost(self, reason: str, events: int) -> None:
        prometheus.event_log_write_errors.labels(reason=reason).inc(events)

    def up(self, backend: str, up: bool) -> None:
        prometheus.event_transport_up.labels(backend=backend).set(int(up))


class Transport(Protocol):
    backend: str

    def available(self) -> bool: ...

    def write(self, events: list[BaseModel]) -> None: ...

    def close(self) -> None: ...


class EventLog:
    def __init__(self, transport: Transport, queue_size: int) -> None:
        self.transport = transport
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-log-writer", daemon=True)

    def start(self) -> EventLog:
        self._thread.start()
        return self

    def append(self, events: Iterable[BaseModel]) -> None:
        """Enqueue events for writing; never blocks, never raises."""
        for event in events:
            kind = getattr(event, "type", "unknown")
            try:
                self._queue.put_nowait(event)
                prometheus.event_log_events.labels(type=kind).inc()
            except queue.Full:
                prometheus.event_log_write_errors.labels(reason="queue_full").inc()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (while the transport is available), then stop the writer."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    # -- writer thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                prometheus.event_log_queue.set(self._queue.qsize())
                if not self.transport.available():
                    if self._stop.is_set():
                        break
                    time.sleep(UNAVAILABLE_WAIT_SECONDS)
                    continue
                batch = self._next_batch()
                if batch:
                    self._write(batch)
                elif self._stop.is_set():
                    break
        finally:
            lost = self._queue.qsize()
            if lost:
                prometheus.event_log_write_errors.labels(reason="shutdown").inc(lost)
                log.warning("event log stopped with %d events unwritten", lost)
            self.transport.close()

    def _next_batch(self) -> list[BaseModel]:
        try:
            batch = [self._queue.get(timeout=0.2)]
        except queue.Empty:
            return []
        # Linger before draining: one write (a flush, a Redis round trip) then carries the
        # events of many requests, and the writer thread, which holds the GIL while it
        # serialises, wakes far less often than once per request.
        if self._queue.qsize() < BATCH_EVENTS - 1:  # a full batch waiting goes at once
            self._stop.wait(BATCH_LINGER_SECONDS)
        while len(batch) < BATCH_EVENTS:  # drain what is already waiting
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write(self, events: list[BaseModel]) -> None:
        try:
            self.transport.write(events)
        except TransportError as exc:
            prometheus.event_log_write_errors.labels(reason=exc.reason).inc(len(events))
            log.warning("event log write failed (%d events lost): %s", len(events), exc)


def open_event_log(settings: ServiceSettings) -> EventLog | None:
    """The event log the settings describe, started; None when it is disabled."""
    if not settings.event_log_enabled:
        return None
    report = TransportMetrics()
    if settings.event_transport == "redis":
        from shiftwatch.transport.redis_streams import StreamWriter

        transport = StreamWriter(
            settings.redis_url, settings.redis_stream_prefix, settings.redis_max_len, report
        )
    else:
        from shiftwatch.transport.segments import SegmentWriter

        transport = SegmentWriter(
            settings.event_log_dir,
            settings.event_log_segment_bytes,
            settings.event_log_max_bytes,
            report,
        )
    return EventLog(transport, settings.event_log_queue).start()
