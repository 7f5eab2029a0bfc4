"""The `redis` event transport: every replica appends to Redis Streams; each monitor shard
reads its models' streams through a consumer group.

The contract both sides agree on, and nothing else:
- a prediction event goes to `<prefix>:predictions:<model>`, the model that answered it
  (its shadows' outputs ride in the same entry), so a monitor shard reads only its models';
- a label event goes to `<prefix>:labels`, read by every monitor (a label does not say which
  model answered its request, and may arrive at any replica);
- an entry holds one field, `event`, the event's JSON: the same JSON a file segment's line holds.

Writer (`StreamWriter`, the service's event log):
- one MULTI/EXEC transaction per batch the event log drains (up to 512 events), so a
  batch is appended whole or not at all. The same transaction sets this writer's marker key
  to the batch's number: when the connection drops before the reply, the batch is held "in
  doubt", and on reconnect the marker says whether it landed; if not it is sent again. So an
  outage loses no batch already drained and appends none twice;
- streams are trimmed to about `max_len` entries each (XADD MAXLEN ~, whole macro nodes,
  cheap), so Redis memory stays bounded however long the monitor is away;
- while the server is unreachable `available()` answers False without touching the network
  until the next reconnect attempt (backoff 0.1 s doubling to 5 s): the event log stops
  draining and its bounded queue buffers, then drops and counts. `/predict` never waits;
- a command the server refuses (out of memory, a key of the wrong type) loses the batch,
  counted as `transport_error`; so does a batch still in doubt when the process stops.

Reader (`StreamReader`, the monitor), exactly once: each read is applied in one SQLite
transaction together with the last applied entry id of each stream, committed, and only
then acknowledged (XACK). After a crash the consumer first re-reads what it had been
delivered but not acknowledged (its pending entries); those at or below the committed id
were applied already and are only acknowledged. So every entry is counted once, whichever
moment the process died.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import Protocol
from urllib.parse import urlsplit

import redis
from pydantic import BaseModel
from redis.backoff import NoBackoff
from redis.retry import Retry

from shiftwatch.transport import (
    Backoff,
    IngestPass,
    ReaderState,
    TransportError,
    Unreported,
    WriterReport,
    apply_event,
)

log = logging.getLogger(__name__)
EVENT_FIELD = b"event"
# Short timeouts: a writer or consumer facing a dead server notices in about a second and
# backs off, instead of hanging on a half-open connection.
SOCKET_TIMEOUT_SECONDS = 2.0


def prediction_stream(prefix: str, model: str) -> str:
    return f"{prefix}:predictions:{model}"


def label_stream(prefix: str) -> str:
    return f"{prefix}:labels"


def stream_model(stream: str) -> str | None:
    """The model whose predictions `stream` holds (`<prefix>:predictions:<model>`), or None
    for the label stream. A model name holds no `:` (shiftwatch/names.py), so the last part
    is the model whatever the prefix."""
    head, found, model = stream.rpartition(":predictions:")
    return model if found and head and model and ":" not in model else None


def stream_of(prefix: str, event: BaseModel) -> str:
    """The stream an event is appended to."""
    if getattr(event, "type", None) == "label":
        return label_stream(prefix)
    return prediction_stream(prefix, event.model)


def connect(url: str) -> redis.Redis:
    """A client for `url` (redis:// or rediss://); connects lazily, on the first command."""
    return redis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
        # No hidden retries: a writer that retried a pipeline whose reply was lost would
        # append it twice; callers count the failure and back off themselves.
        retry=Retry(NoBackoff(), 0),
    )


def safe_url(url: str) -> str:
    """`url` without its password, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def entry_id(value: bytes | str) -> tuple[int, int]:
    """A stream entry id (`<ms>-<seq>`) as a sortable pair."""
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


WRITER_FIRST_BACKOFF_SECONDS = 0.1
WRITER_MAX_BACKOFF_SECONDS = 5.0
MARKER_TTL_SECONDS = 7 * 86400  # a writer's marker outlives any outage it must resolve
CONSUMER = "monitor"  # one consumer per group: a restarted monitor owns its pending entries
READER_FIRST_BACKOFF_SECONDS = 0.5
READER_MAX_BACKOFF_SECONDS = 10.0


class StreamWriter:
    backend = "redis"

    def __init__(
        self, url: str, prefix: str, max_len: int, report: WriterReport | None = None
    ) -> None:
        self.url = safe_url(url)
        self.prefix = prefix
        self.max_len = max_len
        self.client = connect(url)
        writer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.marker = f"{prefix}:writers:{writer}"
        self._batch = 0  # number of the last batch sent
        self._in_doubt: list[BaseModel] = []  # the last batch, when its outcome is unknown
        self._up: bool | None = None  # unknown until the first check
        self.report = report or Unreported()
        self._retry = Backoff(WRITER_FIRST_BACKOFF_SECONDS, WRITER_MAX_BACKOFF_SECONDS)

    def available(self) -> bool:
        """Whether the server is reachable and no batch is in doubt; while not, tries again
        at most once per backoff interval."""
        if self._up:
            return True
        if not self._retry.ready():
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
        self._retry.succeeded()
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
            self.report.lost("transport_error", len(events))
            log.warning("event transport: %d events lost: %s", len(events), exc)

    def _down(self, exc: Exception) -> None:
        if self._up is not False:
            log.warning("event transport: %s unreachable (%s); buffering", self.url, exc)
        self._set_up(False)
        self._retry.failed()

    def _set_up(self, up: bool) -> None:
        self._up = up
        self.report.up(self.backend, up)


class StreamState(ReaderState, Protocol):
    """The monitor's state, with the stream reader's last applied ids and counts."""

    def stream_positions(self) -> dict[str, str]: ...

    def set_stream_position(self, stream: str, last_id: str, consumed: int) -> None: ...

    def stream_accounting(self, stream: str) -> tuple[int, int]: ...

    def stream_trimmed(self, stream: str, lost_total: int) -> None: ...


class StreamReader:
    def __init__(
        self,
        client: redis.Redis,
        state: StreamState,
        streams: list[str],
        group: str,
        retention_seconds: float,
        read_count: int,
    ) -> None:
        self.client = client
        self.state = state
        self.streams = list(dict.fromkeys(streams))
        self.group = group
        self.retention_seconds = retention_seconds
        self.read_count = read_count
        self._groups_ready = False
        self._recovering = True  # pending entries first, after every (re)start
        self._retry = Backoff(READER_FIRST_BACKOFF_SECONDS, READER_MAX_BACKOFF_SECONDS)
        self._last = IngestPass()  # what the last successful pass saw, reported while backing off

    def run_once(self, max_events: int | None = None) -> IngestPass:
        """Read and apply everything delivered to the group so far; raises TransportError."""
        if not self._retry.ready():  # backing off after a failure: quietly
            return IngestPass(lag_seconds=self._last.lag_seconds, streams=self._last.streams)
        result = IngestPass()
        try:
            self._ensure_groups()
            for stream, group, info in self._infos():  # trimmed unread: seen only before reading
                self._count_trimmed(stream, group, info)
            while max_events is None or result.events < max_events:
                limit = self.read_count if max_events is None else max_events - result.events
                if not self._read_batch(min(limit, self.read_count), result):
                    break
            result.streams, result.lag_seconds = self._backlog(self._infos())
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):  # the server lost its data: create the groups again
                self._groups_ready = False
            raise self._failed("response", exc) from exc
        except redis.RedisError as exc:
            raise self._failed("connection", exc) from exc
        self._retry.succeeded()
        self._last = result
        return result

    def _failed(self, reason: str, exc: Exception) -> TransportError:
        self._retry.failed()
        self._recovering = True  # what was delivered before the failure may be unapplied
        return TransportError(reason, f"{type(exc).__name__}: {exc}")

    def _ensure_groups(self) -> None:
        if self._groups_ready:
            return
        for stream in self.streams:
            try:  # from the first retained entry: events written before the monitor started
                self.client.xgroup_create(stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._groups_ready = True

    def _read_batch(self, count: int, result: IngestPass) -> bool:
        """One XREADGROUP, applied, committed and acknowledged; False when nothing was read."""
        start = "0" if self._recovering else ">"
        reply = self.client.xreadgroup(
            self.group, CONSUMER, {stream: start for stream in self.streams}, count=count
        )
        entries = [
            (stream.decode(), entry, fields)
            for stream, messages in reply or []
            for entry, fields in messages
        ]
        if not entries:
            if self._recovering:
                self._recovering = False
                return True  # now the new entries
            return False
        # New entries (">") are past every committed id; only re-read pending ones may not be.
        applied = self.state.stream_positions() if self._recovering else {}
        done = {stream: entry_id(last) for stream, last in applied.items()}
        positions, consumed = {}, {}
        self.state.begin()
        try:
            for stream, entry, fields in entries:
                if stream in done and entry_id(entry) <= done[stream]:
                    continue  # applied before a crash, not yet acknowledged
                raw = fields.get(EVENT_FIELD, b"")
                apply_event(self.state, raw, result, stream, stream_model(stream))
                positions[stream] = entry
                consumed[stream] = consumed.get(stream, 0) + 1
            for stream, last in positions.items():
                self.state.set_stream_position(stream, last.decode(), consumed[stream])
            self.state.expire(self.retention_seconds)
            self.state.commit()
        except BaseException:
            self.state.rollback()
            raise
        by_stream: dict[str, list[bytes]] = {}
        for stream, entry, _ in entries:
            by_stream.setdefault(stream, []).append(entry)
        pipe = self.client.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xack(stream, self.group, *ids)
        pipe.execute()
        return True

    def _infos(self) -> list[tuple[str, dict, dict]]:
        """(stream, this group's XINFO GROUPS entry, XINFO STREAM) of every stream, one
        round trip."""
        pipe = self.client.pipeline(transaction=False)
        for stream in self.streams:
            pipe.xinfo_groups(stream)
            pipe.xinfo_stream(stream)
        replies = pipe.execute()
        infos = []
        for stream, groups, info in zip(self.streams, replies[::2], replies[1::2], strict=True):
            group = next((g for g in groups if _text(g["name"]) == self.group), None)
            if group is not None:
                infos.append((stream, group, info))
        return infos

    def _backlog(
        self, infos: list[tuple[str, dict, dict]]
    ) -> tuple[dict[str, dict[str, int]], float]:
        """Per stream: entries not yet delivered to the group (lag) and delivered but not
        acknowledged (pending); and the age of the oldest undelivered entry, in seconds."""
        streams, oldest = {}, None
        for stream, group, info in infos:
            delivered = entry_id(group["last-delivered-id"])
            if delivered >= entry_id(info["last-generated-id"]):
                lag = 0  # read to the end (Redis's own count can stay behind: below)
            else:
                # Redis counts lag from a read counter; after some trims and deletions it
                # cannot tell (None): the stream's length is then an upper bound.
                lag = group.get("lag")
                lag = self.client.xlen(stream) if lag is None else lag
            streams[stream] = {"lag": int(lag), "pending": int(group["pending"])}
            if lag:
                first = self.client.xrange(
                    stream, f"({_text(group['last-delivered-id'])}", "+", count=1
                )
                if first:
                    ms = entry_id(first[0][0])[0]
                    oldest = ms if oldest is None else min(oldest, ms)
        lag_seconds = 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)
        return streams, lag_seconds

    def _count_trimmed(self, stream: str, group: dict, info: dict) -> None:
        """Entries trimmed (MAXLEN) before this group read them. While the stream's first
        entry is past the group's position, every entry still in the stream is unread, so
        added = consumed + trimmed unread + length, all but one term known."""
        first = info.get("first-entry")
        if not first or entry_id(first[0]) <= entry_id(group["last-delivered-id"]):
            return  # the group has read up to the stream's start: nothing missed
        consumed, _ = self.state.stream_accounting(stream)
        lost = int(info["entries-added"]) - consumed - int(info["length"])
        self.state.begin()
        self.state.stream_trimmed(stream, lost)
        self.state.commit()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
