"""Label-free accuracy estimation benchmark: every estimator against realised accuracy.

`python -m benchmarks.bench_estimation` (`make bench-estimation`) writes its section of
docs/benchmarks.md. It runs `shiftwatch demo`'s live stack (service with a primary and two
shadows, monitor) over every built-in scenario of the embedded dataset and over the real
dataset (docstrings of the installed packages: the control, the held-out `ood` packages, and
their ramp), once per label delay. Each replay sends 1,600 sequences at 80/s, the shift at
the halfway mark; the monitor's window is the last 400 predictions, so it is wholly
post-onset by the end of the traffic.

Two readings per scenario × model, both on the same rows for estimate and live accuracy:
- live: the last poll before the traffic ends, when the newest `delay × rate` predictions
  still wait for their labels: the estimate on the window's labeled rows against their
  accuracy (what an operator can check at that moment);
- settled: the final window once every label has arrived.
The headline estimator (fixed in advance: monitoring/calibration.py) is held to the targets
of DESIGN.md; the others are reported beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from benchmarks.machine import machine_summary
from benchmarks.render import estimation
from benchmarks.render.markdown import write_section
from benchmarks.results import (
    ESTIMATION_DELAYS,
    ESTIMATION_EVENTS,
    ESTIMATION_RATE,
    ESTIMATION_WINDOW,
)
from orchestration.replay.demo import embedded_plan, file_plan, run_demo
from orchestration.replay.driver import ReplayConfig
from orchestration.replay.traffic import SCENARIOS


def plans(delay: float, docstrings: Path | None) -> list[tuple[str, object]]:
    base = ReplayConfig(
        "in_domain",
        "http://unset",
        rate=ESTIMATION_RATE,
        events=ESTIMATION_EVENTS,
        label_delay=delay,
        seed=0,
    )
    out = [("embedded", embedded_plan(base, list(SCENARIOS), "baseline", ("research", "no_pe")))]
    if docstrings is not None:
        names = ("docstrings-baseline", "docstrings-research", "docstrings-no_pe")
        domains = _ood_domains(docstrings)
        plan = file_plan(
            base, str(docstrings), "split=test", "split=ood", names[0], names[1:], domains
        )
        out.append(("docstrings", plan))
    return out


def _ood_domains(folder: Path) -> tuple[str, ...]:
    from shiftwatch.data.loader import Selection, read_labeled_rows

    rows, _ = read_labeled_rows(folder)
    return tuple(sorted(set(Selection.parse("split=ood").rows(rows, str(folder))["domain"])))


def readings(out_dir: Path, dataset: str, delay: float, rows: list[dict]) -> list[dict]:
    """One record per scenario × model: every estimator's live and settled error."""
    records = []
    for row in rows:
        timeline = json.loads((out_dir / row["scenario"] / "timeline.json").read_text())
        during = [s for s in timeline["samples"][:-1] if s["after_onset"]]  # [-1]: settled
        live = during[-1]["models"].get(row["model"], {}) if during else {}
        records.append(
            {
                "dataset": dataset,
                "delay": delay,
                "scenario": row["scenario"],
                "model": row["model"],
                "role": row["role"],
                "headline": row["headline_estimator"],
                "live_accuracy": row["live_accuracy_after_onset"],
                "live_labeled": live.get("labeled"),
                "live": live.get("estimation_errors", {}),
                "settled": row["estimation_errors"],
            }
        )
    return records


def prepare(models_dir: Path, runs_dir: Path, docstrings: Path | None) -> None:
    """The embedded bundles and the docstrings ones (`<slug>-<variant>`), trained with the quick
    profile when their seed-0 runs are missing, exported again when older than their run or
    than the calibration columns."""
    from exports.config import ExportConfig
    from exports.prepare import prepare_bundles
    from shiftwatch.data import load_dataset
    from training.config import profile
    from training.model import VARIANTS

    for source, prefix in ((Path("embedded"), ""), (docstrings, "docstrings-")):
        if source is None:
            continue
        dataset = load_dataset(source)
        names = {v: f"{prefix}{v}" for v in VARIANTS}
        prepare_bundles(
            dataset, profile("quick"), runs_dir, models_dir, names, ExportConfig(), on_step=print
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=Path, default=Path("artifacts/models"))
    parser.add_argument("--runs", type=Path, default=Path("artifacts/runs"))
    parser.add_argument("--docstrings", type=Path, default=Path("artifacts/data/docstrings"))
    parser.add_argument("--work", type=Path, default=Path("artifacts/bench-estimation"))
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    docstrings = args.docstrings if (args.docstrings / "manifest.json").exists() else None
    prepare(args.models, args.runs, docstrings)
    started = time.monotonic()
    records = []
    for delay in ESTIMATION_DELAYS:
        for dataset, plan in plans(delay, docstrings):
            out_dir = args.work / f"{dataset}-delay{delay:g}"
            print(f"{dataset}, labels {delay:g} s late: {len(plan.replays)} replays", flush=True)
            rows = run_demo(out_dir, args.models, plan, ESTIMATION_WINDOW, on_step=print)
            records += readings(out_dir, dataset, delay, rows)
    args.work.mkdir(parents=True, exist_ok=True)
    seconds, machine = time.monotonic() - started, machine_summary()
    (args.work / "records.json").write_text(
        json.dumps({"seconds": seconds, "machine": machine, "records": records}, indent=2)
    )
    section = estimation.render(records, seconds, machine)
    write_section(args.out, "bench_estimation", section)
    print(section)


if __name__ == "__main__":
    main()
