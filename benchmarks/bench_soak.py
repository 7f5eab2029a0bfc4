"""Soak benchmark: a simulated day of traffic through a real monitor process.

`python -m benchmarks.bench_soak` (`make bench-soak`) writes its section of
docs/benchmarks.md. The day's events are written with the service's own file-transport
writer (segments, disk budget and all) as fast as the monitor ingests them: 50 requests/s of
simulated time, each a prediction of the primary with its two shadows (the bundles of
artifacts/models), half of them labeled a simulated minute later. Timestamps are compressed
(the simulated day ends now), the monitor runs with its default bounds. Every simulated hour:
the state's size on disk, the monitor's resident memory, and what it has counted.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.machine import Environment
from benchmarks.render import soak
from benchmarks.render.markdown import write_section
from benchmarks.results import SoakRun, SoakSample
from orchestration.replay.stack import start_monitor
from shiftwatch.bundle import read_bundle
from shiftwatch.events import LabelEvent, ModelOutput, PredictionEvent
from shiftwatch.features import FEATURE_NAMES
from shiftwatch.reference import load_reference
from shiftwatch.transport.segments import SegmentWriter

MODELS = ("baseline", "research", "no_pe")
LABEL_DELAY_SECONDS = 60.0
MAX_AHEAD_EVENTS = 50_000  # the writer waits while the monitor is further behind than this


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def state_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


class Traffic:
    """Prediction events shaped like the service's, built from 1,000 rows of the models'
    reference windows (outputs prepared once: the writer must outpace the monitor)."""

    def __init__(self, models_dir: Path, seed: int = 0, pool: int = 1000) -> None:
        references = {m: load_reference(read_bundle(models_dir / m)) for m in MODELS}
        self.rng = np.random.default_rng(seed)
        self.labels = sorted(references["baseline"]["label"].unique())
        self.pool = []
        for row in range(pool):
            outputs = [self._output(m, references[m], row) for m in MODELS]
            first = references["baseline"].iloc[row % len(references["baseline"])]
            features = {name: float(first[name]) for name in FEATURE_NAMES}
            self.pool.append((outputs[0].model_dump(), outputs[1:], features, str(first["domain"])))

    def _output(self, model: str, reference, row: int) -> ModelOutput:
        r = reference.iloc[row % len(reference)]
        return ModelOutput(
            model=model,
            model_version=f"{model}:soak",
            predicted_label=str(r["predicted_label"]),
            confidence=float(r["confidence"]),
            entropy=float(r["entropy"]),
            probabilities={label: 1 / len(self.labels) for label in self.labels},
            embedding=[float(r[c]) for c in reference.columns if c.startswith("embedding_")],
        )

    def prediction(self, request_id: str, ts: float) -> PredictionEvent:
        primary, shadows, features, domain = self.pool[int(self.rng.integers(len(self.pool)))]
        return PredictionEvent.model_construct(
            **primary,
            type="prediction",
            request_id=request_id,
            timestamp=ts,
            domain=domain,
            features=features,
            shadows=shadows,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per simulated second")
    parser.add_argument("--labeled", type=float, default=0.5, help="share of requests labeled")
    parser.add_argument("--models-dir", type=Path, default=Path("artifacts/models"))
    parser.add_argument("--work", type=Path, default=Path("artifacts/bench-soak"))
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()

    work = args.work
    if work.exists():
        for path in sorted(work.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
    events_dir, state_path = work / "events", work / "monitor" / "state.sqlite"
    monitor = start_monitor(
        {
            "SHIFTWATCH_MONITOR_EVENT_TRANSPORT": "file",
            "SHIFTWATCH_MONITOR_EVENT_LOG_DIR": str(events_dir),
            "SHIFTWATCH_MONITOR_STATE_PATH": str(state_path),
            "SHIFTWATCH_MONITOR_MODELS_DIR": str(args.models_dir),
            "SHIFTWATCH_MONITOR_MODELS": ",".join(MODELS),
            "SHIFTWATCH_MONITOR_POLL_SECONDS": "0.1",
        },
        work / "monitor.log",
    )
    traffic = Traffic(args.models_dir)
    writer = SegmentWriter(events_dir, segment_bytes=16 * 2**20, max_bytes=256 * 2**20)
    seconds = int(args.hours * 3600)
    per_second = args.rate
    day_start = time.time() - seconds - LABEL_DELAY_SECONDS
    wall = time.perf_counter()
    samples: list[SoakSample] = []
    written, requests, carry = 0, 0, 0.0
    pending_labels: list[LabelEvent] = []

    def status() -> dict:
        return httpx.get(monitor.url + "/status", timeout=30).json()

    def ingested(s: dict) -> int:
        c = s["counters"]
        return c.get("events_prediction", 0) + c.get("events_label", 0)

    def sample(hour: float) -> None:
        s = status()
        c = s["counters"]
        samples.append(
            SoakSample(
                hour=hour,
                requests=requests,
                ingested=ingested(s),
                state_bytes=state_bytes(state_path),
                resident_bytes=resident_bytes(monitor.process.pid),
                labels_joined=c.get("labels_matched", 0),
                predictions_dropped=c.get("predictions_evicted", 0)
                + c.get("predictions_expired", 0),
                labels_unmatched=c.get("labels_unmatched", 0) + c.get("labels_evicted", 0),
                events_lost=sum(c.get("lost", {}).values()),
            )
        )
        print(" | ".join(soak.sample_cells(samples[-1])), flush=True)

    try:
        sample(0)
        for second in range(seconds):
            ts = day_start + second
            carry += per_second
            batch = []
            while carry >= 1:
                carry -= 1
                request_id = f"soak-{requests}"
                batch.append(traffic.prediction(request_id, ts))
                if traffic.rng.random() < args.labeled:
                    label = traffic.labels[int(traffic.rng.integers(len(traffic.labels)))]
                    pending_labels.append(
                        LabelEvent(
                            request_id=request_id,
                            label=label,
                            timestamp=ts + LABEL_DELAY_SECONDS,
                        )
                    )
                requests += 1
            due = [e for e in pending_labels if e.timestamp <= ts]
            pending_labels = [e for e in pending_labels if e.timestamp > ts]
            writer.write(batch + due)
            written += len(batch) + len(due)
            if second % 60 == 0:  # keep within the event log's budget: the writer waits
                while written - ingested(status()) > MAX_AHEAD_EVENTS:
                    time.sleep(0.2)
            if (second + 1) % 3600 == 0:
                sample((second + 1) / 3600)
        writer.write(pending_labels)
        written += len(pending_labels)
        deadline = time.monotonic() + 600
        while ingested(status()) < written and time.monotonic() < deadline:
            time.sleep(0.5)
        if seconds % 3600:
            sample(seconds / 3600)
    finally:
        writer.close()
        monitor.stop()

    run = SoakRun(
        environment=Environment.capture(),
        wall_s=time.perf_counter() - wall,
        hours=args.hours,
        rate=args.rate,
        labeled=args.labeled,
        label_delay_s=LABEL_DELAY_SECONDS,
        max_ahead_events=MAX_AHEAD_EVENTS,
        requests=requests,
        written=written,
        samples=samples,
    )
    section = soak.render(run)
    write_section(args.out, "bench_soak", section)
    print(section)


if __name__ == "__main__":
    main()
