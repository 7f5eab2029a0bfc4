"""Monitor ingest, timed: file segments (`SegmentReader`) and Redis Streams (`StreamReader`).

Each pass starts from a fresh SQLite state and drains everything with `run_once` until it
reads nothing; Redis passes each use a consumer group of their own, created at the start of
the streams, so every pass reads the same entries. A profiled pass times, inside the real
code path, the four things an event costs (monkeypatched onto this pass's objects only):
SQLite statements, pydantic's JSON validation, XREADGROUP, and the XACK/XINFO pipelines;
"rest" is the pass minus their sum (described in benchmarks/render/monitor.py's PARTS).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

import shiftwatch.transport
from monitoring.state import MonitorState
from shiftwatch.settings import MonitorSettings
from shiftwatch.transport.redis_streams import StreamReader
from shiftwatch.transport.segments import SegmentReader

DEFAULTS = MonitorSettings.model_fields
READ_COUNT: int = DEFAULTS["redis_read_count"].default  # entries per stream per XREADGROUP
RETENTION_S: float = DEFAULTS["label_retention_seconds"].default
# The state's size bound, in monitors that have one (the oldest requests evicted past it).
STATE_MAX_BYTES: int | None = (
    DEFAULTS["state_max_bytes"].default if "state_max_bytes" in DEFAULTS else None
)
# MonitorState's keyword -> the MonitorSettings field the monitor passes it from, for those
# this version of the monitor has.
STATE_BOUNDS = {
    "max_requests": "state_max_requests",
    "max_bytes": "state_max_bytes",
    "max_clock_skew": "max_clock_skew_seconds",
}


@dataclass
class IngestPass:
    """One drain of every event into a fresh state."""

    events: int
    seconds: float
    counters: dict[str, int]  # the state's counters after it (events_prediction, labels_matched)
    state_bytes: int  # the SQLite database's size after it (pages in use, WAL included)
    profile: dict[str, float] = field(default_factory=dict)  # part -> seconds (profiled only)
    calls: Counter[str] = field(default_factory=Counter)  # part -> calls (profiled only)

    @property
    def rate(self) -> float:
        return self.events / self.seconds


class Stopwatch:
    """Seconds and calls per part, of the callables it wraps."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()

    def wrap(self, part: str, call: Callable) -> Callable:
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - started
                self.calls[part] += 1

        return timed


class TimedConnection:
    """Stands in for MonitorState's sqlite3 connection: `execute` timed, the rest passed on."""

    def __init__(self, db, watch: Stopwatch) -> None:
        self._db = db
        self.execute = watch.wrap("sqlite", db.execute)

    def __getattr__(self, name: str):
        return getattr(self._db, name)


class TimedAdapter:
    """Stands in for shiftwatch.transport.EVENT (a pydantic TypeAdapter)."""

    def __init__(self, adapter, watch: Stopwatch) -> None:
        self.validate_json = watch.wrap("validate", adapter.validate_json)


@contextmanager
def profiled(state: MonitorState, client: redis.Redis | None, watch: Stopwatch) -> Iterator[None]:
    """Time the parts of ingest on this state (and client) while the block runs."""
    adapter, db = shiftwatch.transport.EVENT, state.db
    state.db = TimedConnection(db, watch)
    shiftwatch.transport.EVENT = TimedAdapter(adapter, watch)
    if client is not None:
        client.xreadgroup = watch.wrap("xreadgroup", client.xreadgroup)
        make_pipeline = client.pipeline

        def pipeline(*args, **kwargs):
            pipe = make_pipeline(*args, **kwargs)
            pipe.execute = watch.wrap("pipelines", pipe.execute)
            return pipe

        client.pipeline = pipeline
    try:
        yield
    finally:
        state.db, shiftwatch.transport.EVENT = db, adapter


def state_bounds() -> list[tuple[str, str, float]]:
    """(MonitorState keyword, MonitorSettings field, default) of each bound the monitor has."""
    return [
        (kw, name, DEFAULTS[name].default) for kw, name in STATE_BOUNDS.items() if name in DEFAULTS
    ]


def monitor_state(path: Path) -> MonitorState:
    """A fresh state, opened as the monitor opens it: with its default bounds."""
    bounds = {kw: value for kw, _, value in state_bounds()}
    return MonitorState(path, known_domains={"news"}, **bounds)


def drain(ingestor: SegmentReader | StreamReader) -> tuple[int, float]:
    """`run_once` until a pass reads nothing: events applied and seconds taken."""
    started, events = time.perf_counter(), 0
    while (step := ingestor.run_once().events) > 0:
        events += step
    return events, time.perf_counter() - started


def ingest_pass(
    work: Path,
    open_ingestor: Callable[[MonitorState], SegmentReader | StreamReader],
    expected: int,
    client: redis.Redis | None = None,
    profile: bool = False,
) -> IngestPass:
    """Drain into a fresh state in `work`; checks every event was applied once."""
    work.mkdir(parents=True)
    state = monitor_state(work / "state.sqlite")
    try:
        ingestor, watch = open_ingestor(state), Stopwatch()
        if profile:
            with profiled(state, client, watch):
                events, seconds = drain(ingestor)
        else:
            events, seconds = drain(ingestor)
        counters = state.counters()
        pages, free, page_bytes = (
            state.db.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("page_count", "freelist_count", "page_size")
        )
    finally:
        state.db.close()
    if events != expected:
        raise RuntimeError(f"ingested {events} of {expected} events")
    result = IngestPass(events, seconds, counters, (pages - free) * page_bytes, calls=watch.calls)
    if profile:
        result.profile = dict(watch.seconds)
        result.profile["rest"] = seconds - sum(watch.seconds.values())
    return result


def file_ingestor(directory: Path) -> Callable[[MonitorState], SegmentReader]:
    return lambda state: SegmentReader(directory, state, RETENTION_S)


def stream_ingestor(
    client: redis.Redis, streams: list[str], group: str
) -> Callable[[MonitorState], StreamReader]:
    """The monitor's consumer with its default read count, in a group of its own."""
    return lambda state: StreamReader(client, state, streams, group, RETENTION_S, READ_COUNT)
