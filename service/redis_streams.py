"""The `redis` event transport: every replica appends to Redis Streams (shiftwatch/streams.py).

- one MULTI/EXEC transaction per batch the writer thread drains (up to 512 events), so a
  batch is appended whole or not at all. The same transaction sets this writer's marker key
  to the batch's number: when the connection drops before the reply, the batch is held "in
  doubt", and on reconnect the marker says whether it landed; if not it is sent again. So an
  outage loses no batch already drained and appends none twice;
- streams are trimmed to about `max_len` entries each (XADD MAXLEN ~, whole macro nodes,
  cheap), so Redis memory stays bounded however long the monitor is away;
- while the server is unreachable `available()` answers False without touching the network
  until the next reconnect attempt (backoff 0.1 s doubling to 5 s): the writer stops draining
  and the bounded queue buffers, then drops and counts (`queue_full`). `/predict` never waits.
- a command the server refuses (out of memory, a key of the wrong type) loses the batch,
  counted as `transport_error`; so does a batch still in doubt when the process stops.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

import redis
from pydantic import BaseModel

from service import metrics
from service.event_log import TransportError
from shiftwatch.streams import EVENT_FIELD, connect, safe_url, stream_of

log = logging.getLogger(__name__)
FIRST_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 5.0
MARKER_TTL_SECONDS = 7 * 86400  # a writer's marker outlives any outage it must resolve


class RedisStreams:
    backend = "redis"

    def __init__(self, url: str, prefix: str, max_len: int) -> None:
        self.url = safe_url(url)
        self.prefix = prefix
        self.max_len = max_len
        self.client = connect(url)
        writer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.marker = f"{prefix}:writers:{writer}"
        self._batch = 0  # number of the last batch sent
        self._in_doubt: list[BaseModel] = []  # the last batch, when its outcome is unknown
        self._up: bool | None = None  # unknown until the first check
        self._backoff = FIRST_BACKOFF_SECONDS
        self._next_attempt = 0.0

    def available(self) -> bool:
        """Whether the server is reachable and no batch is in doubt; while not, tries again
        at most once per backoff interval."""
        if self._up:
            return True
        if time.monotonic() < self._next_attempt:
            return False
        try:
            self.client.ping()
            if self._in_doubt:
                self._resolve()
        except redis.ConnectionError as exc:  # TimeoutError is one
            self._down(exc)
            return False
        except (redis.RedisError, TransportError) as exc:
            self._lose(self._in_doubt, exc)
        self._set_up(True)
        log.info("event transport: connected to %s", self.url)
        self._backoff = FIRST_BACKOFF_SECONDS
        return True

    def write(self, events: list[BaseModel]) -> None:
        self._batch += 1
        pipe = self.client.pipeline(transaction=True)
        for event in events:
            pipe.xadd(
                stream_of(self.prefix, event),
                {EVENT_FIELD: event.model_dump_json()},
                maxlen=self.max_len,
                approximate=True,
            )
        pipe.set(self.marker, self._batch, ex=MARKER_TTL_SECONDS)
        try:
            pipe.execute()
        except redis.ConnectionError as exc:  # it may have landed: `available` finds out
            self._in_doubt = events
            self._down(exc)
        except redis.RedisError as exc:  # refused: MULTI aborted, or a command failed
            raise TransportError("transport_error", f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        if self._in_doubt:
            self._lose(self._in_doubt, RuntimeError("still in doubt at shutdown"))
        self.client.close()

    def _resolve(self) -> None:
        """After a reconnect: the batch in doubt landed if the marker holds its number."""
        landed = self.client.get(self.marker) == str(self._batch).encode()
        events = self._in_doubt
        self._in_doubt = []
        log.info("event transport: batch in doubt (%d events) %s", len(events),
                 "had landed" if landed else "is sent again")  # fmt: skip
        if not landed:
            try:
                self.write(events)
            except TransportError:
                self._in_doubt = events  # so that `available` counts them lost
                raise
            if self._in_doubt:
                raise redis.ConnectionError("connection lost again")

    def _lose(self, events: list[BaseModel], exc: Exception) -> None:
        self._in_doubt = []
        if events:
            metrics.event_log_write_errors.labels(reason="transport_error").inc(len(events))
            log.warning("event transport: %d events lost: %s", len(events), exc)

    def _down(self, exc: Exception) -> None:
        if self._up is not False:
            log.warning("event transport: %s unreachable (%s); buffering", self.url, exc)
        self._set_up(False)
        self._next_attempt = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF_SECONDS)

    def _set_up(self, up: bool) -> None:
        self._up = up
        metrics.event_transport_up.labels(backend=self.backend).set(int(up))
