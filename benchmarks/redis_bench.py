"""What the monitor benchmark measures on one local redis-server, started and stopped here:
the service's writer appending the events, the streams' memory, one-event writes, and the
monitor's consumer draining the streams (mixed, predictions alone, labels alone)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import redis

from benchmarks.ingest_bench import IngestPass, ingest_pass, stream_ingestor
from benchmarks.monitor_events import (
    BenchEvents,
    WriterPass,
    file_transport,
    time_single_writes,
    time_writer,
)
from harness import RedisServer
from shiftwatch.settings import ServiceSettings
from shiftwatch.transport.redis_streams import (
    StreamWriter,
    connect,
    label_stream,
    prediction_stream,
)

MAX_LEN: int = ServiceSettings.model_fields["redis_max_len"].default
PREFIX = "bench"
SINGLE_WRITES = 300  # one-event batches timed per transport
# Which streams each kind of ingest pass reads: both (the monitor's case), or one alone.
# Labels alone have no prediction to join: each is stored as an orphan, what a monitor
# shard does with the labels of requests that other shards' models answered.
KINDS = ("mixed", "predictions", "labels")
CPU_FIELDS = ("used_cpu_sys", "used_cpu_user", "used_cpu_sys_children", "used_cpu_user_children")


@dataclass
class StreamIngest:
    """Timed ingest passes of one kind, with redis-server's CPU during each."""

    passes: list[IngestPass]
    redis_cpu_s: list[float]
    profile: IngestPass | None = None  # an extra pass with its parts timed

    @property
    def rate(self) -> float:
        return statistics.median(p.rate for p in self.passes)

    @property
    def redis_cpu_per_event(self) -> float:
        return statistics.median(
            cpu / p.events for cpu, p in zip(self.redis_cpu_s, self.passes, strict=True)
        )


@dataclass
class RedisRun:
    version: str
    writers: list[WriterPass]
    lengths: dict[str, int]  # stream -> entries after the writer
    memory: dict[str, int]  # stream -> MEMORY USAGE (all entries sampled), bytes
    used_memory: int  # INFO memory's used_memory, bytes
    single_writes: dict[str, tuple[float, float]]  # transport -> (median wall, mean CPU), µs
    ingest: dict[str, StreamIngest]  # KINDS -> passes
    cpu_s: float  # redis-server's CPU over the whole run

    @property
    def writer(self) -> WriterPass:
        """The median writer pass by rate."""
        return sorted(self.writers, key=lambda w: w.rate)[len(self.writers) // 2]


def redis_cpu_seconds(client: redis.Redis) -> float:
    """CPU redis-server has used (INFO cpu: its own getrusage, microseconds, all threads and
    any fork's), finer than /proc's ticks for passes of a fraction of a second."""
    cpu = client.info("cpu")
    return sum(float(cpu[key]) for key in CPU_FIELDS)


def measure_redis(work: Path, events: BenchEvents, repeats: int) -> RedisRun:
    """Everything, on one redis-server in `work`; `repeats` timed passes of each."""
    server = RedisServer(work / "redis").start()
    try:
        client = server.client()
        cpu = partial(redis_cpu_seconds, client)
        streams = [prediction_stream(PREFIX, events.models[0]), label_stream(PREFIX)]
        # The writer: the first pass fills the streams the monitor reads; the others' are deleted.
        writers: list[WriterPass] = []
        for r in range(repeats):
            prefix = PREFIX if r == 0 else f"{PREFIX}-writer-{r}"
            transport = StreamWriter(server.url, prefix, MAX_LEN)
            writers.append(time_writer(transport, events.events, cpu))
            if r:
                client.delete(*client.keys(f"{prefix}:*"))
        lengths = {s: int(client.xlen(s)) for s in streams}
        if list(lengths.values()) != [events.predictions, events.labels]:
            raise RuntimeError(f"streams hold {lengths} entries after the writer")
        memory = {s: int(client.memory_usage(s, samples=0)) for s in streams}
        used_memory = int(client.info("memory")["used_memory"])
        single_writes = {
            "redis": time_single_writes(
                StreamWriter(server.url, f"{PREFIX}-single", MAX_LEN), events.events, SINGLE_WRITES
            ),
            "file": time_single_writes(
                file_transport(work / "single"), events.events, SINGLE_WRITES
            ),
        }
        client.delete(*client.keys(f"{PREFIX}-single:*"))
        expected = {
            "mixed": len(events.events),
            "predictions": events.predictions,
            "labels": events.labels,
        }
        read = {"mixed": streams, "predictions": streams[:1], "labels": streams[1:]}
        ingest = {}
        for kind in KINDS:
            ingest[kind] = StreamIngest([], [])
            for r in range(repeats + (kind == "mixed")):  # + the profiled pass
                consumer = connect(server.url)  # a pass's own client: profiling wraps it
                before = cpu()
                result = ingest_pass(
                    work / f"redis-{kind}-{r}",
                    stream_ingestor(consumer, read[kind], f"bench-{kind}-{r}"),
                    expected[kind],
                    consumer,
                    profile=r == repeats,
                )
                used = cpu() - before
                consumer.close()
                if r == repeats:
                    ingest[kind].profile = result
                else:
                    ingest[kind].passes.append(result)
                    ingest[kind].redis_cpu_s.append(used)
        version = client.info("server")["redis_version"]
        cpu_s = cpu()
        client.close()
    finally:
        server.stop()
    return RedisRun(version, writers, lengths, memory, used_memory, single_writes, ingest, cpu_s)
