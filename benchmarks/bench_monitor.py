"""Monitor benchmark: drift over a 10k-event window; ingest from files and from Redis
Streams; the Redis writer's append rate; stream memory per entry.

`python -m benchmarks.bench_monitor` (`make bench-monitor`) writes its section of
docs/benchmarks.md, and from the same numbers the generated section of docs/scaling.md
(benchmarks/render/scaling.py). The drift window comes from a real bundle's reference
(artifacts/models/baseline). The events come from the real Predictor
(benchmarks/monitor_events.py): N prediction events of the primary with its two shadows,
each followed by its label. The same events go to a file segment and, through the service's
own EventLog + StreamWriter writer, to a local redis-server (benchmarks/redis_bench.py).
Each ingest rate is the median of --ingest-repeats passes into a fresh SQLite state; one
more pass per transport is profiled (benchmarks/ingest_bench.py).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.ingest_bench import (
    READ_COUNT,
    RETENTION_S,
    STATE_MAX_BYTES,
    IngestPass,
    file_ingestor,
    ingest_pass,
    state_bounds,
)
from benchmarks.machine import CpuSnapshot, Environment, other_load_cores
from benchmarks.monitor_events import (
    file_transport,
    make_events,
    time_writer,
)
from benchmarks.redis_bench import MAX_LEN, PREFIX, SINGLE_WRITES, measure_redis
from benchmarks.render import monitor, scaling
from benchmarks.render.markdown import write_section
from benchmarks.results import MonitorRun
from monitoring.drift import DriftConfig, compute_drift
from shiftwatch.bundle import read_bundle
from shiftwatch.events import LabelEvent, PredictionEvent
from shiftwatch.reference import load_reference


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
    from monitoring.calibration import HEADLINE, Calibration
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


def time_compute(state_path: Path, models: list[str], window: int, repeats: int) -> list[float]:
    """`Monitor.compute`, all of it, over the state a file pass ingested: every model's window
    of `window` rows (drift, live accuracy, every estimator, the bounds, the label-shift
    verdict), the references read from artifacts/models as the monitor reads them."""
    from monitoring.monitor import Monitor
    from shiftwatch.settings import MonitorSettings

    settings = MonitorSettings(
        state_path=state_path,
        models=models,
        models_dir=Path("artifacts/models"),
        window_size=window,
        window_seconds=1e9,
        event_log_dir=state_path.parent / "no-events",
    )
    monitor = Monitor(settings)
    try:
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            windows = monitor.compute()
            seconds.append(time.perf_counter() - started)
        if any(w.rows != window for w in windows.values()):
            raise RuntimeError(
                f"windows of {[w.rows for w in windows.values()]} rows, not {window}"
            )
        return seconds
    finally:
        monitor.state.db.close()


def check_counts(passes: list[IngestPass], predictions: int, labels: int, joined: int) -> None:
    """Every event counted once; `joined` labels met their prediction."""
    for p in passes:
        counted = tuple(
            p.counters.get(name, 0)
            for name in ("events_prediction", "events_label", "labels_matched")
        )
        if counted != (predictions, labels, joined):
            raise RuntimeError(f"state counted {counted}, expected {(predictions, labels, joined)}")


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
        compute = time_compute(work / "file-0" / "state.sqlite", events.models, n, args.repeats)
        redis = measure_redis(work, events, repeats)
    mixed = redis.ingest["mixed"]
    check_counts(files + mixed.passes + [mixed.profile], n, n, n)
    check_counts(redis.ingest["predictions"].passes, n, 0, 0)
    check_counts(redis.ingest["labels"].passes, 0, n, 0)
    elapsed = time.perf_counter() - wall
    other = other_load_cores(cpu_start, CpuSnapshot.now())
    if other is not None:  # redis-server is this benchmark's, not other load
        other = max(other - redis.cpu_s / elapsed, 0.0)

    run = MonitorRun(
        environment=Environment.capture(),
        wall_s=elapsed,
        other_load_cores=other,
        bundle=args.bundle,
        reference_rows=len(reference),
        window=args.window,
        drift_s=drift,
        estimates_s=estimates,
        compute_s=compute,
        predictions=events.predictions,
        labels=events.labels,
        models=events.models,
        prediction_json_bytes=events.json_bytes(PredictionEvent),
        label_json_bytes=events.json_bytes(LabelEvent),
        file_writer=file_writer,
        file_passes=files[:-1],
        file_profile=files[-1],
        redis=redis,
        state_dir=tempfile.gettempdir(),
        read_count=READ_COUNT,
        retention_s=RETENTION_S,
        state_bounds=state_bounds(),
        state_max_bytes=STATE_MAX_BYTES,
        max_len=MAX_LEN,
        stream_prefix=PREFIX,
        single_writes=SINGLE_WRITES,
    )
    section = monitor.render(run)
    write_section(args.out, "bench_monitor", section)
    print(section)
    write_section(args.scaling, "bench_monitor_scaling", scaling.render(run))
    print(f"wrote section bench_monitor of {args.out}, bench_monitor_scaling of {args.scaling}")


if __name__ == "__main__":
    main()
