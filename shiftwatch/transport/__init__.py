"""The event transport: how prediction and label events travel from the service to the monitor.

Two backends, one module each, each holding its writer (used by the service's event log) and
its reader (used by the monitor):
- `segments`: append-only JSON-lines files in one directory (one machine, a shared volume);
- `redis_streams`: Redis Streams (a fleet of replicas).

What both share lives here: the one error type, the one backoff, how a writer reports to
its owner's metrics, and how a reader applies one event's JSON to the monitor's state.
Events are `shiftwatch.events` models; a segment line and a stream entry hold the same JSON.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Annotated, Protocol

from pydantic import Field, TypeAdapter

from shiftwatch.events import LabelEvent, PredictionEvent, SegmentStart

log = logging.getLogger(__name__)

# Discriminated by `type`: one validator per line, not a try of each member in turn.
EVENT = TypeAdapter(
    Annotated[PredictionEvent | LabelEvent | SegmentStart, Field(discriminator="type")]
)


class TransportError(Exception):
    """A write or read the transport could not do; `reason` is a bounded metric label
    (writers: `io_error`, `transport_error`; readers: `connection`, `response`)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class Backoff:
    """After a failure, the next try waits `delay`, which doubles from `first` up to `most`;
    a success starts over."""

    def __init__(self, first: float, most: float) -> None:
        self.first = first
        self.most = most
        self.delay = first
        self._retry_at = 0.0

    def ready(self) -> bool:
        """Whether the wait after the last failure is over."""
        return time.monotonic() >= self._retry_at

    def failed(self) -> None:
        self._retry_at = time.monotonic() + self.delay
        self.delay = min(self.delay * 2, self.most)

    def succeeded(self) -> None:
        self.delay = self.first
        self._retry_at = 0.0


class WriterReport(Protocol):
    """What a writer tells its owner beyond `write`'s outcome (the service's metrics)."""

    def lost(self, reason: str, events: int) -> None: ...

    def up(self, backend: str, up: bool) -> None: ...


class Unreported:
    """A writer's report when nobody listens (tests, benchmarks)."""

    def lost(self, reason: str, events: int) -> None:
        pass

    def up(self, backend: str, up: bool) -> None:
        pass


class ReaderState(Protocol):
    """The monitor's state as a reader sees it: events applied, and the reader's position
    committed in the same transaction (monitoring/state.py implements it)."""

    def begin(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def add_prediction(self, event: PredictionEvent) -> None: ...

    def add_label(self, event: LabelEvent) -> None: ...

    def count(self, key: str | tuple[str, ...], by: int = 1) -> None:
        """Add to a counter: a name, or a tuple of a name and label values."""

    def reject(self, reason: str, detail: str) -> None:
        """An event dropped for `reason` (a bounded label): counted, logged rate-limited."""

    def expire(self, retention_seconds: float) -> None: ...


@dataclass
class IngestPass:
    """What one reader pass did."""

    events: int = 0
    bad_lines: int = 0
    lag_seconds: float = 0.0  # age of the oldest unread event; 0 when caught up
    # Redis only: per stream, entries not yet delivered ("lag") and delivered but not
    # acknowledged ("pending").
    streams: dict[str, dict[str, int]] = field(default_factory=dict)


def apply_event(
    state: ReaderState,
    raw: bytes,
    result: IngestPass,
    source: str,
    source_model: str | None = None,
) -> SegmentStart | None:
    """One event's JSON (a segment's line, a stream entry's field) into `state`; an unreadable
    one is counted and skipped; a segment header is returned for its reader. A prediction from
    a source that holds one model's predictions (`source_model`: a Redis prediction stream)
    must be that model's, else it is dropped (`stream_model_mismatch`). The caller owns the
    transaction."""
    if not raw.strip():
        return None
    try:
        event = EVENT.validate_json(raw)
    except ValueError as exc:  # pydantic's ValidationError is one
        state.count("bad_lines")
        result.bad_lines += 1
        log.warning("unreadable event in %s skipped: %s", source, str(exc).splitlines()[0])
        return None
    if isinstance(event, SegmentStart):
        return event
    if isinstance(event, PredictionEvent):
        if source_model is not None and event.model != source_model:
            state.reject(
                "stream_model_mismatch", f"prediction of model {event.model!r} in {source}"
            )
        else:
            state.add_prediction(event)
    else:
        state.add_label(event)
    result.events += 1
    return None
