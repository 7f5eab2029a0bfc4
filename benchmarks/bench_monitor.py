"""Monitor benchmark: drift over a 10k-event window; ingest from files and from Redis
Streams; the Redis writer's append rate; stream memory per entry.

`python -m benchmarks.bench_monitor` (`make bench-monitor`) writes its section of
docs/benchmarks.md, and from the same numbers the generated section of docs/scaling.md
(benchmarks/scaling_report.py). The drift window comes from a real bundle's reference
(artifacts/models/baseline). The events come from the real Predictor
(benchmarks/monitor_events.py): N prediction events of the primary with its two shadows,
each followed by its label. The same events go to a file segment and, through the service's
own EventLog + StreamWriter writer, to a local redis-server (benchmarks/redis_bench.py).
Each ingest rate is the median of --ingest-repeats passes into a fresh SQLite state; one
more pass per transport is profiled (benchmarks/ingest_bench.py).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks import scaling_report
from benchmarks.ingest_bench import (
    PARTS,
    READ_COUNT,
    RETENTION_S,
    STATE_MAX_BYTES,
    IngestPass,
    file_ingestor,
    ingest_pass,
    state_bounds,
)
from benchmarks.monitor_events import (
    BenchEvents,
    WriterPass,
    file_transport,
    make_events,
    time_writer,
)
from benchmarks.redis_bench import MAX_LEN, PREFIX, SINGLE_WRITES, RedisRun, measure_redis
from benchmarks.report import (
    CpuSnapshot,
    machine_summary,
    markdown_table,
    other_load_cores,
    verdict,
    write_section,
)
from monitoring.drift import DriftConfig, compute_drift
from shiftwatch.bundle import read_bundle
from shiftwatch.events import LabelEvent, PredictionEvent
from shiftwatch.reference import load_reference

DRIFT_TARGET_S = 1.0
INGEST_TARGET = 5000.0  # events/s from file segments (DESIGN.md)
REDIS_INGEST_TARGET = 20000.0  # events/s from Redis Streams (DESIGN.md)


def window_from_reference(reference, rows: int, rng: np.random.Generator):
    """A live-like window: reference rows resampled, lengths stretched (a real shift)."""
    window = reference.sample(
        n=rows, replace=True, random_state=int(rng.integers(1 << 31))
    ).reset_index(drop=True)
    window["length"] = window["length"] * 1.5
    return window


def time_drift(reference, rows: int, repeats: int) -> list[float]:
    rng = np.random.default_rng(0)
    embedding = [c for c in reference.columns if c.startswith("embedding_")]
    seconds = []
    for _ in range(repeats):
        window = window_from_reference(reference, rows, rng)
        started = time.perf_counter()
        compute_drift(reference, window, DriftConfig(), embedding)
        seconds.append(time.perf_counter() - started)
    return seconds


def time_estimates(reference, labels: list[str], rows: int, repeats: int) -> list[float]:
    """Every label-free estimator, the ATC interval and the label-shift verdict on a window
    (as Monitor.compute runs them; the drift they need is computed outside the timing)."""
    from monitoring.estimation import HEADLINE, Calibration
    from monitoring.label_shift import label_shift_verdict
    from shiftwatch.bundle import probability_columns

    rng = np.random.default_rng(1)
    calibration = Calibration.fit(reference, labels)
    columns = [probability_columns(len(labels))[i] for i in np.argsort(labels)]
    seconds = []
    for _ in range(repeats):
        window = window_from_reference(reference, rows, rng)
        window["probabilities"] = list(window[columns].to_numpy(dtype=np.float32))
        drift = compute_drift(reference, window, DriftConfig())
        started = time.perf_counter()
        scores = calibration.scores(window)
        calibration.estimates(scores)
        calibration.interval(HEADLINE, scores)
        calibration.label_shift(window)
        label_shift_verdict(calibration, reference, window, drift, DriftConfig())
        seconds.append(time.perf_counter() - started)
    return seconds


def check_counts(passes: list[IngestPass], predictions: int, labels: int, joined: int) -> None:
    """Every event counted once; `joined` labels met their prediction."""
    for p in passes:
        counted = tuple(
            p.counters.get(name, 0)
            for name in ("events_prediction", "events_label", "labels_matched")
        )
        if counted != (predictions, labels, joined):
            raise RuntimeError(f"state counted {counted}, expected {(predictions, labels, joined)}")


def rate_cell(passes: list[IngestPass]) -> tuple[float, str]:
    """The median rate of timed passes, and how it reads in the table."""
    rates = sorted(p.rate for p in passes)
    median = statistics.median(rates)
    seconds = statistics.median(p.seconds for p in passes)
    spread = f" (range {rates[0]:,.0f}-{rates[-1]:,.0f})" if len(rates) > 1 else ""
    return median, f"{median:,.0f} events/s, median of {len(rates)}{spread}; {seconds:.2f} s each"


def profile_rows(file_pass: IngestPass, redis_pass: IngestPass) -> list[list[str]]:
    """µs per event, share of the pass and calls, per part, for both transports."""
    rows = []
    for part, what in PARTS.items():
        row = [what]
        for p in (file_pass, redis_pass):
            if part not in p.profile:
                row.append("-")
                continue
            seconds, calls = p.profile[part], p.calls.get(part, 0)
            cell = f"{seconds / p.events * 1e6:.1f} µs ({seconds / p.seconds:.0%}"
            if calls:
                per = calls / p.events
                cell += f"; {per:.1f} calls per event" if per >= 0.1 else f"; {calls} calls"
            row.append(cell + ")")
        rows.append(row)
    rows.append(
        ["whole profiled pass"]
        + [
            f"{p.seconds / p.events * 1e6:.1f} µs ({p.rate:,.0f} events/s)"
            for p in (file_pass, redis_pass)
        ]
    )
    return rows


def redis_tables(redis: RedisRun, events: BenchEvents, file_writer: WriterPass) -> list[str]:
    """The writers, one-event writes, stream memory, and the single-kind ingest passes."""
    writer_rows = [
        [
            f"redis, pass {i + 1}",
            f"{w.rate:,.0f}",
            f"{w.seconds:.2f}",
            f"{w.writer_cores:.2f}",
            f"{w.server_cores:.2f}",
            f"{w.server_cores / w.rate * 1e6:.1f}",
        ]
        for i, w in enumerate(redis.writers)
    ]
    writer_rows.append(
        [
            "file (the segment the file ingest reads)",
            f"{file_writer.rate:,.0f}",
            f"{file_writer.seconds:.2f}",
            f"{file_writer.writer_cores:.2f}",
            "-",
            "-",
        ]
    )
    single_rows = [
        [backend, f"{wall_us:.0f}", f"{cpu_us:.0f}"]
        for backend, (wall_us, cpu_us) in redis.single_writes.items()
    ]
    memory_rows = []
    for stream, length in redis.lengths.items():
        kind = LabelEvent if stream.endswith(":labels") else PredictionEvent
        used = redis.memory[stream]
        memory_rows.append(
            [
                f"`{stream}`",
                f"{length:,}",
                f"{used:,}",
                f"{used / length:,.0f}",
                f"{events.json_bytes(kind):,.0f}",
                f"{MAX_LEN * used / length / 1e6:,.0f} MB",
            ]
        )
    kinds = {
        "mixed": "predictions and their labels (the target's measure, above)",
        "predictions": "prediction stream alone",
        "labels": "label stream alone: no prediction to join, each stored as an orphan "
        "(a shard's share of other shards' labels)",
    }
    kind_rows = []
    for kind, what in kinds.items():
        ingest = redis.ingest[kind]
        kind_rows.append(
            [
                what,
                rate_cell(ingest.passes)[1],
                f"{1e6 / ingest.rate:.0f}",
                f"{ingest.redis_cpu_per_event * 1e6:.1f}",
                f"{statistics.median(p.state_bytes for p in ingest.passes) / 1e6:.1f} MB",
            ]
        )
    return [
        "### Writers: one replica's EventLog with each transport",
        "",
        f"The {len(events.events):,} events queued first, then one writer thread drains them "
        "in batches of up to 512 (the service's code): for Redis one MULTI/EXEC of XADDs per "
        "batch, for files one write and flush. cores: CPU over the pass's wall time; the "
        "writer process's is the writer thread's (nothing else runs).",
        "",
        markdown_table(
            [
                "pass",
                "events/s appended",
                "seconds",
                "writer process cores",
                "redis-server cores",
                "redis-server CPU µs per event",
            ],
            writer_rows,
        ),
        "",
        f"One event per write, as at one client (each request's event is a batch of its own), "
        f"{SINGLE_WRITES} writes each, on the writer's thread:",
        "",
        markdown_table(
            ["transport", "µs per write (median wall)", "µs CPU per write (mean)"], single_rows
        ),
        "",
        "### Redis stream memory",
        "",
        markdown_table(
            [
                "stream",
                "entries",
                "MEMORY USAGE (bytes)",
                "bytes per entry",
                "JSON bytes per event",
                f"at MAXLEN {MAX_LEN:,}",
            ],
            memory_rows,
        ),
        "",
        f"INFO used_memory after the writer passes: {redis.used_memory / 1e6:,.1f} MB.",
        "",
        "### Redis ingest by kind of event",
        "",
        markdown_table(
            [
                "streams read",
                "events/s",
                "µs per event",
                "redis-server CPU µs per event",
                "monitor state after",
            ],
            kind_rows,
        ),
    ]


def scaling_inputs(date: str, redis: RedisRun, events: BenchEvents, file_rate: float):
    """What docs/scaling.md's generated section is computed from."""
    prediction_stream, label_stream = redis.lengths
    mixed = redis.ingest["mixed"]
    return scaling_report.Measured(
        date=date,
        machine=", ".join(part.strip() for part in machine_summary().split(";")[:2]),
        writer_rate=redis.writer.rate,
        writer_cores=redis.writer.writer_cores,
        redis_write_cores=redis.writer.server_cores,
        ingest_rate=mixed.rate,
        prediction_rate=redis.ingest["predictions"].rate,
        orphan_label_rate=redis.ingest["labels"].rate,
        file_ingest_rate=file_rate,
        redis_read_cpu_prediction=redis.ingest["predictions"].redis_cpu_per_event,
        redis_read_cpu_label=redis.ingest["labels"].redis_cpu_per_event,
        prediction_entry_bytes=redis.memory[prediction_stream] / events.predictions,
        label_entry_bytes=redis.memory[label_stream] / events.labels,
        prediction_json_bytes=events.json_bytes(PredictionEvent),
        state_bytes_per_sequence=statistics.median(p.state_bytes for p in mixed.passes)
        / events.predictions,
        max_len=MAX_LEN,
        retention_s=RETENTION_S,
        state_max_bytes=STATE_MAX_BYTES,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=Path("artifacts/models/baseline"))
    parser.add_argument("--window", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5, help="drift computations timed")
    parser.add_argument(
        "--events",
        type=int,
        default=10_000,
        help="prediction events to ingest (plus as many labels)",
    )
    parser.add_argument(
        "--ingest-repeats", type=int, default=3, help="timed passes of each kind and transport"
    )
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--scaling", type=Path, default=Path("docs/scaling.md"))
    args = parser.parse_args()

    bundle = read_bundle(args.bundle)
    reference = load_reference(bundle)
    cpu_start, wall = CpuSnapshot.now(), time.perf_counter()
    drift = time_drift(reference, args.window, args.repeats)
    estimates = time_estimates(reference, bundle.meta.labels, args.window, args.repeats)
    events = make_events(args.events)
    n, repeats = events.predictions, args.ingest_repeats
    with tempfile.TemporaryDirectory(prefix="bench_monitor_") as tmp:
        work = Path(tmp)
        file_writer = time_writer(file_transport(work / "events"), events.events, lambda: 0.0)
        files = [
            ingest_pass(
                work / f"file-{r}",
                file_ingestor(work / "events"),
                len(events.events),
                profile=r == repeats,
            )
            for r in range(repeats + 1)  # the last one profiled
        ]
        redis = measure_redis(work, events, repeats)
    mixed = redis.ingest["mixed"]
    check_counts(files + mixed.passes + [mixed.profile], n, n, n)
    check_counts(redis.ingest["predictions"].passes, n, 0, 0)
    check_counts(redis.ingest["labels"].passes, 0, n, 0)
    elapsed = time.perf_counter() - wall
    other = other_load_cores(cpu_start, CpuSnapshot.now())
    if other is not None:  # redis-server is this benchmark's, not other load
        other = max(other - redis.cpu_s / elapsed, 0.0)

    date = datetime.now(UTC).isoformat(timespec="seconds")
    drift_median = statistics.median(drift)
    file_rate, file_cell = rate_cell(files[:-1])
    redis_rate, redis_cell = rate_cell(mixed.passes)
    what = f"{len(events.events):,} events: predictions with 2 shadows, and their labels"
    bounds = "".join(f"{name} {value:,}, " for _, name, value in state_bounds())
    rows = [
        [
            f"drift over a {args.window:,}-event window (K-S/PSI/JS per column + embeddings + predictions)",
            f"{drift_median:.3f} s median of {len(drift)} (max {max(drift):.3f})",
            f"≤ {DRIFT_TARGET_S:g} s",
            verdict(drift_median, DRIFT_TARGET_S, True, " s"),
        ],
        [
            f"label-free estimates over the same {args.window:,}-event window (ATC x2 with its "
            "bootstrap interval, DoC, BBSE, the label-shift verdict with its reweighted drift)",
            f"{statistics.median(estimates):.3f} s median of {len(estimates)} (max "
            f"{max(estimates):.3f}); with drift {drift_median + statistics.median(estimates):.3f} s",
            f"drift + estimates ≤ {DRIFT_TARGET_S:g} s",
            verdict(drift_median + statistics.median(estimates), DRIFT_TARGET_S, True, " s"),
        ],
        [
            f"ingest from file segments ({what})",
            file_cell,
            f"≥ {INGEST_TARGET:,.0f} events/s",
            verdict(file_rate, INGEST_TARGET, False, " events/s"),
        ],
        [
            f"ingest from Redis Streams (the same events; XREADGROUP count {READ_COUNT} per stream)",
            redis_cell,
            f"≥ {REDIS_INGEST_TARGET:,.0f} events/s",
            verdict(redis_rate, REDIS_INGEST_TARGET, False, " events/s"),
        ],
    ]
    section = "\n".join(
        [
            "## Monitor: drift computation and ingest",
            "",
            f"Generated by `python -m benchmarks.bench_monitor` (`make bench-monitor`) at "
            f"{date}; wall {elapsed:.0f} s.",
            "",
            f"- Machine: {machine_summary()}",
            f"- Reference: {args.bundle}/reference.parquet ({len(reference)} rows); the window resamples it with lengths x1.5",
            f"- Events: {n:,} prediction events of {events.models[0]} with shadows "
            f"{', '.join(events.models[1:])}, made by service.predictor.Predictor on the first "
            f"1,000 test sequences (repeated under new request ids), each followed by its label; "
            f"JSON {events.json_bytes(PredictionEvent):,.0f} B per prediction, "
            f"{events.json_bytes(LabelEvent):,.0f} B per label",
            f"- Redis: redis-server {redis.version} on 127.0.0.1 (append-only file, fsync every "
            f"second, as deployed), started and stopped here; streams `{PREFIX}:*`, MAXLEN "
            f"~{MAX_LEN:,} (the default); its CPU from INFO cpu (getrusage), {redis.cpu_s:.1f} "
            "s in all",
            f"- Monitor: a fresh SQLite state (WAL) per pass, in {tempfile.gettempdir()}; "
            f"retention ({RETENTION_S:,.0f} s), {bounds}read count as the monitor's "
            "defaults; each Redis pass a consumer group of its own from the streams' start",
            f"- Other load: {other:.2f} cores used by processes other than this one and its "
            "redis-server"
            if other is not None
            else "- Other load: unknown",
            "",
            markdown_table(["what", "measured", "target", "status"], rows),
            "",
            f"Every mixed pass counted each prediction once and joined every label ({n:,} "
            "each); the single-kind passes below counted theirs once.",
            "",
            "### Where ingest time goes",
            "",
            "One more mixed pass per transport with the parts below timed inside the real "
            "code path (wrappers on that pass's SQLite connection, validator and Redis "
            "client, which cost it a little). Per event, share of the pass, and calls.",
            "",
            markdown_table(
                ["part", "file segments", "Redis Streams"], profile_rows(files[-1], mixed.profile)
            ),
            "",
            *redis_tables(redis, events, file_writer),
        ]
    )
    write_section(args.out, "bench_monitor", section)
    print(section)
    measured = scaling_inputs(date, redis, events, file_rate)
    write_section(args.scaling, "bench_monitor_scaling", scaling_report.render(measured))
    print(f"wrote section bench_monitor of {args.out}, bench_monitor_scaling of {args.scaling}")


if __name__ == "__main__":
    main()
