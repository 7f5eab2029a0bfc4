"""Prediction and label events as the service makes them, for the monitor benchmark.

The events come from the real `service.predictor.Predictor` (primary and shadows from the
model store) on the test split, so their JSON is the size the service's is: full-precision
probabilities and reduced embeddings of three models, drift features, a store tag per model,
a 32-hex-digit request id. A pool of distinct sequences is predicted once and repeated
under new request ids and timestamps up to the count asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from benchmarks.bench_service import stored_bundle
from benchmarks.results import DEFAULT_SHADOWS
from service.event_log import EventLog
from service.predictor import Predictor
from service.schemas import Instance
from shiftwatch.data import load_dataset
from shiftwatch.events import LabelEvent, PredictionEvent
from shiftwatch.settings import ServiceSettings
from shiftwatch.transport import TransportError
from shiftwatch.transport.segments import SegmentWriter

PRIMARY: str = ServiceSettings.model_fields["primary_model"].default
FIRST_TIMESTAMP = 1.77e9  # unix seconds: as many digits as the service's time.time()
SPACING_SECONDS = 0.01  # between consecutive requests' timestamps
PREDICT_CHUNK = 100  # instances per Predictor.predict call


@dataclass(frozen=True)
class BenchEvents:
    """N prediction events, each followed by its label: what the monitor ingests."""

    events: list[PredictionEvent | LabelEvent]
    predictions: int
    models: list[str]  # the primary, then the shadows whose outputs ride in its events

    @property
    def labels(self) -> int:
        return len(self.events) - self.predictions

    def json_bytes(self, kind: type[BaseModel]) -> float:
        """Mean size of one event's JSON (a segment line, a stream entry's field)."""
        sizes = [len(e.model_dump_json()) for e in self.events[:2000] if isinstance(e, kind)]
        return sum(sizes) / len(sizes)


def make_events(predictions: int, pool_size: int = 1000) -> BenchEvents:
    """`predictions` prediction events of the default primary with its default shadows, each
    followed by its true label, from the first `pool_size` test sequences, repeated."""
    models = [PRIMARY, *DEFAULT_SHADOWS]
    settings = ServiceSettings(
        primary_model=PRIMARY, shadow_models=DEFAULT_SHADOWS, event_log_enabled=False
    )
    predictor = Predictor({name: stored_bundle(name) for name in models}, settings)
    test = load_dataset().split("test").head(pool_size)
    instances = [
        Instance(text=text, domain=domain)
        for text, domain in zip(test["text"], test["domain"], strict=True)
    ]
    pool: list[PredictionEvent] = []
    for start in range(0, len(instances), PREDICT_CHUNK):
        _, ready, shadow_work = predictor.predict(instances[start : start + PREDICT_CHUNK])
        pool += ready + predictor.run_shadows(shadow_work)  # every one is the primary's
    labels = list(test["label"])
    events: list[PredictionEvent | LabelEvent] = []
    for i in range(predictions):
        request_id, ts = f"{i:032x}", FIRST_TIMESTAMP + i * SPACING_SECONDS
        events.append(
            pool[i % len(pool)].model_copy(update={"request_id": request_id, "timestamp": ts})
        )
        events.append(LabelEvent(request_id=request_id, label=labels[i % len(pool)], timestamp=ts))
    return BenchEvents(events, predictions, models)


def file_transport(directory: Path) -> SegmentWriter:
    """The service's file transport with its default segment size and disk budget."""
    fields = ServiceSettings.model_fields
    return SegmentWriter(
        directory,
        fields["event_log_segment_bytes"].default,
        fields["event_log_max_bytes"].default,
    )


class TimedTransport:
    """A transport that records how many events it wrote and when its last write returned."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.written = 0
        self.failed = 0
        self.finished = 0.0

    def available(self) -> bool:
        return self.inner.available()

    def write(self, events: list[BaseModel]) -> None:
        try:
            self.inner.write(events)
        except TransportError:
            self.failed += len(events)
            raise
        self.written += len(events)
        self.finished = time.perf_counter()

    def close(self) -> None:
        self.inner.close()


@dataclass(frozen=True)
class WriterPass:
    """One EventLog writer thread draining a full queue into its transport."""

    events: int
    seconds: float  # from the writer's start to its last write's return
    writer_cores: float  # this process's CPU (the writer thread; the main thread sleeps)
    server_cores: float  # the transport's server (redis-server), over the same time

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def time_writer(
    transport, events: list[BaseModel], server_cpu: Callable[[], float], timeout_s: float = 300
) -> WriterPass:
    """Queue every event first (the writer thread not yet started), then start the writer and
    time it until the transport has written them all, in batches of up to 512 (EventLog's)."""
    timed = TimedTransport(transport)
    log = EventLog(timed, queue_size=len(events) + 1)
    log.append(events)
    if log.pending != len(events):
        raise RuntimeError(f"queued {log.pending} of {len(events)} events")
    server_started, own_started = server_cpu(), time.process_time()
    started = time.perf_counter()
    log.start()
    while timed.written + timed.failed < len(events):
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError(
                f"the writer wrote {timed.written} of {len(events)} in {timeout_s} s"
            )
        time.sleep(0.002)
    waited = time.perf_counter() - started
    server, own = server_cpu() - server_started, time.process_time() - own_started
    log.close()
    if timed.failed:
        raise RuntimeError(f"the transport failed to write {timed.failed} events")
    return WriterPass(len(events), timed.finished - started, own / waited, server / waited)


def time_single_writes(transport, events: list[BaseModel], calls: int) -> tuple[float, float]:
    """`transport.write` of one event at a time, as one client's requests make it (each
    batch holds the one event its request queued): median wall and mean CPU, in µs."""
    walls = []
    cpu = time.process_time()
    for event in events[:calls]:
        started = time.perf_counter()
        transport.write([event])
        walls.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu
    walls.sort()
    return walls[len(walls) // 2] * 1e6, cpu / len(walls) * 1e6
