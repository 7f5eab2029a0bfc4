"""Consume the fleet's Redis Streams (the `redis` transport) into the monitor's state,
exactly once.

The monitor reads its models' prediction streams and the label stream through one consumer
group (one group per monitor shard, one consumer in it). Each read is applied in one SQLite
transaction together with the last applied entry id of each stream, committed, and only
then acknowledged (XACK). After a crash the consumer first re-reads what it had been
delivered but not acknowledged (its pending entries); those at or below the committed id
were applied already and are only acknowledged. So every entry is counted once, whichever
moment the process died.
"""

from __future__ import annotations

import logging
import time

import redis

from monitoring.ingest import IngestPass, apply_event
from monitoring.state import MonitorState
from shiftwatch.streams import EVENT_FIELD, entry_id

log = logging.getLogger(__name__)
CONSUMER = "monitor"  # one consumer per group: a restarted monitor owns its pending entries
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 10.0


class StreamError(Exception):
    """Redis could not be read; `reason` is the metric label (connection, response)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class StreamIngestor:
    def __init__(
        self,
        client: redis.Redis,
        state: MonitorState,
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
        self._backoff = FIRST_BACKOFF_SECONDS
        self._next_attempt = 0.0
        self._last = IngestPass()  # what the last successful pass saw, reported while backing off

    def run_once(self, max_events: int | None = None) -> IngestPass:
        """Read and apply everything delivered to the group so far; raises StreamError."""
        if time.monotonic() < self._next_attempt:  # backing off after a failure: quietly
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
        self._backoff = FIRST_BACKOFF_SECONDS
        self._last = result
        return result

    def _failed(self, reason: str, exc: Exception) -> StreamError:
        self._next_attempt = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF_SECONDS)
        self._recovering = True  # what was delivered before the failure may be unapplied
        return StreamError(reason, f"{type(exc).__name__}: {exc}")

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
                apply_event(self.state, fields.get(EVENT_FIELD, b""), result, stream)
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
        for stream, group, _ in infos:
            lag = group.get("lag")
            if lag is None:  # Redis cannot tell after some trims and deletions: an upper bound
                lag = self.client.xlen(stream)
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
