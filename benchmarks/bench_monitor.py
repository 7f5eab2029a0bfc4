"""Monitor benchmark: drift over a 10k-event window, and ingest throughput (events/s).

`python -m benchmarks.bench_monitor` (`make bench-monitor`) writes its section of
docs/benchmarks.md. Uses a real bundle's reference window (artifacts/models/baseline)
and prediction events shaped like the service's, written to a temporary event log.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks.report import (
    CpuSnapshot,
    machine_summary,
    markdown_table,
    other_load_cores,
    verdict,
    write_section,
)
from monitoring.drift import DriftConfig, compute_drift
from monitoring.ingest import Ingestor
from monitoring.state import MonitorState
from shiftwatch.bundle import read_bundle
from shiftwatch.events import LabelEvent, ModelOutput, PredictionEvent

DRIFT_TARGET_S = 1.0
INGEST_TARGET = 5000.0


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


def write_log(directory: Path, predictions: int, reference) -> int:
    """Prediction events (primary + 2 shadows, like the service's) and a label for each."""
    directory.mkdir(parents=True)
    row = reference.iloc[0]
    features = {
        k: float(row[k])
        for k in ("length", "oov_share", "over_max_length", "distinct_share", "mean_log_rank")
    }
    output = {
        "model_version": "bench",
        "predicted_label": "topic_a",
        "confidence": 0.9,
        "entropy": 0.4,
        "probabilities": {
            label: 1 / 6
            for label in ("topic_a", "topic_b", "topic_c", "first_a", "first_b", "first_c")
        },
        "embedding": [0.1] * 8,
    }
    with (directory / "events-bench-000001.jsonl").open("w") as f:
        for i in range(predictions):
            event = PredictionEvent(
                model="baseline",
                **output,
                request_id=f"b{i}",
                timestamp=1e9 + i * 0.01,
                domain="news",
                features=features,
                shadows=[ModelOutput(model=m, **output) for m in ("research", "no_pe")],
            )
            f.write(event.model_dump_json() + "\n")
            f.write(
                LabelEvent(
                    request_id=f"b{i}", label="topic_a", timestamp=1e9 + i * 0.01
                ).model_dump_json()
                + "\n"
            )
    return 2 * predictions


def time_ingest(predictions: int, reference) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        written = write_log(Path(tmp) / "events", predictions, reference)
        state = MonitorState(Path(tmp) / "state.sqlite", known_domains={"news"})
        ingestor = Ingestor(Path(tmp) / "events", state, retention_seconds=1e9)
        started = time.perf_counter()
        ingested = 0
        while (step := ingestor.run_once().events) > 0:
            ingested += step
        seconds = time.perf_counter() - started
        if ingested != written:
            raise RuntimeError(f"ingested {ingested} of {written} events")
        return ingested, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=Path("artifacts/models/baseline"))
    parser.add_argument("--window", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--events",
        type=int,
        default=10_000,
        help="prediction events to ingest (plus as many labels)",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()

    reference = read_bundle(args.bundle).load_reference()
    cpu_start, wall = CpuSnapshot.now(), time.perf_counter()
    drift = time_drift(reference, args.window, args.repeats)
    ingested, ingest_s = time_ingest(args.events, reference)
    other = other_load_cores(cpu_start, CpuSnapshot.now())
    rate = ingested / ingest_s
    drift_median = statistics.median(drift)
    rows = [
        [
            f"drift over a {args.window:,}-event window (K-S/PSI/JS per column + embeddings + predictions)",
            f"{drift_median:.3f} s median of {len(drift)} (max {max(drift):.3f})",
            f"≤ {DRIFT_TARGET_S:g} s",
            verdict(drift_median, DRIFT_TARGET_S, True, " s"),
        ],
        [
            f"ingest ({ingested:,} events: predictions with 2 shadows, and their labels)",
            f"{rate:,.0f} events/s ({ingest_s:.2f} s)",
            f"≥ {INGEST_TARGET:,.0f} events/s",
            verdict(rate, INGEST_TARGET, False, " events/s"),
        ],
    ]
    section = "\n".join(
        [
            "## Monitor: drift computation and ingest",
            "",
            f"Generated by `python -m benchmarks.bench_monitor` (`make bench-monitor`) at "
            f"{datetime.now(UTC).isoformat(timespec='seconds')}; wall {time.perf_counter() - wall:.0f} s.",
            "",
            f"- Machine: {machine_summary()}",
            f"- Reference: {args.bundle}/reference.parquet ({len(reference)} rows); the window resamples it with lengths x1.5",
            f"- Other load: {other:.2f} cores used by other processes"
            if other is not None
            else "- Other load: unknown",
            "",
            markdown_table(["what", "measured", "target", "status"], rows),
        ]
    )
    write_section(args.out, "bench_monitor", section)
    print(section)


if __name__ == "__main__":
    main()
