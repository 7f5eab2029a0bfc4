"""Accuracy without labels, and with a few: every estimator, the lower bound and the corrected
estimate against realised accuracy.

`python -m benchmarks.bench_estimation` (`make bench-estimation`) writes its section of
docs/benchmarks.md. It runs `shiftwatch demo`'s live stack (service with a primary and two
shadows, monitor) over every built-in scenario of the embedded dataset and over the real
dataset (docstrings of the installed packages: the control, the held-out `ood` packages, and
their ramp), once per run of ESTIMATION_RUNS: a label coverage (the share of requests
whose label is sent), a label delay and a traffic seed. Each replay sends 1,600 sequences
at 80/s, the shift at the halfway mark; the monitor's window is the last 400 predictions,
wholly post-onset by the end of the traffic.

What is read, per run × scenario × model:
- every post-onset poll of `/status` (the windows): the label-free bound against live
  accuracy on the window's labeled rows;
- the settled window, once every label sent has arrived: every estimator's error against
  live accuracy on the same labeled rows, and the bounds and the corrected estimate against
  the window's *true* accuracy, counted by this benchmark from the service's own event log
  (every model's answer to each of the window's requests) and the true labels of the
  replayed rows, labeled or not;
- the label-shift verdict in every poll.
The rules (README, "Label-free accuracy") were fixed before any of these runs.
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
    ESTIMATION_EVENTS,
    ESTIMATION_RATE,
    ESTIMATION_RUNS,
    ESTIMATION_WINDOW,
)
from orchestration.replay.demo import embedded_plan, file_plan, run_demo
from orchestration.replay.driver import ReplayConfig, replay_traffic
from orchestration.replay.traffic import SCENARIOS
from shiftwatch.transport.segments import logged_events


def plans(coverage: float, delay: float, seed: int, docstrings: Path | None) -> list[tuple]:
    base = ReplayConfig(
        "in_domain",
        "http://unset",
        rate=ESTIMATION_RATE,
        events=ESTIMATION_EVENTS,
        label_delay=delay,
        label_coverage=coverage,
        seed=seed,
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


def true_accuracy(events: list[dict], timeline: dict) -> dict[str, float]:
    """Each model's accuracy on the last ESTIMATION_WINDOW requests of this replay it
    answered, from the service's event log (the primary's and every shadow's answer) and the
    replayed rows' true labels, whether or not a label was sent."""
    config = ReplayConfig(**{**timeline["config"], "url": "http://unset", "monitor_url": None})
    rows, _ = replay_traffic(config)
    truth = rows["label"].tolist()
    prefix = f"{config.scenario}-{config.seed}-"
    answers: dict[str, list[tuple[int, str]]] = {}
    for event in events:
        if event["type"] != "prediction" or not event["request_id"].startswith(prefix):
            continue
        index = int(event["request_id"].rsplit("-", 1)[1])
        for output in [event, *event.get("shadows", [])]:
            answers.setdefault(output["model"], []).append((index, output["predicted_label"]))
    accuracy = {}
    for model, answered in answers.items():
        window = sorted(answered)[-ESTIMATION_WINDOW:]
        accuracy[model] = sum(label == truth[i] for i, label in window) / len(window)
    return accuracy


def readings(out_dir: Path, dataset: str, run: tuple, rows: list[dict]) -> list[dict]:
    """One record per scenario × model of one demo run."""
    coverage, delay, seed = run
    events = logged_events(out_dir / "events")
    records = []
    for scenario in sorted({row["scenario"] for row in rows}):
        timeline = json.loads((out_dir / scenario / "timeline.json").read_text())
        truth = true_accuracy(events, timeline)
        settled = timeline["samples"][-1]
        for row in (r for r in rows if r["scenario"] == scenario):
            model = row["model"]
            final = settled["models"][model]
            polls = [s for s in timeline["samples"][:-1] if model in s["models"]]
            during = [s for s in polls if s["after_onset"]]
            records.append(
                {
                    "dataset": dataset,
                    "scenario": scenario,
                    "model": model,
                    "role": row["role"],
                    "coverage": coverage,
                    "delay": delay,
                    "seed": seed,
                    "headline": final["headline_estimator"],
                    "truth": truth.get(model),
                    "settled": {
                        key: final.get(key)
                        for key in (
                            "rows",
                            "labeled",
                            "live_accuracy",
                            "estimation_errors",
                            "accuracy_bound",
                            "bound_basis",
                            "label_free_bound",
                            "bound_confidence_term",
                            "bound_peer_term",
                            "bound_peer",
                            "corrected_accuracy",
                        )
                    },
                    # the last poll before the traffic ends: the newest rows still unlabeled
                    "live_errors": during[-1]["models"][model]["estimation_errors"]
                    if during
                    else {},
                    "windows": [
                        {
                            "sent": s["sent"],
                            "labeled": s["models"][model]["labeled"],
                            "live_accuracy": s["models"][model]["live_accuracy"],
                            "label_free_bound": s["models"][model].get("label_free_bound"),
                        }
                        for s in during
                    ],
                    # every poll and the settled window that showed label shift: requests
                    # sent so far in this replay, and whether it was after the onset
                    "label_shift_polls": [
                        {"sent": s["sent"], "after_onset": s["after_onset"]}
                        for s in timeline["samples"]
                        if s["models"].get(model, {}).get("label_shift")
                    ],
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
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="write the section again from the last run's records.json in --work",
    )
    args = parser.parse_args()
    if args.render_only:
        saved = json.loads((args.work / "records.json").read_text())
        section = estimation.render(saved["records"], saved["seconds"], saved["machine"])
        write_section(args.out, "bench_estimation", section)
        print(section)
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    docstrings = args.docstrings if (args.docstrings / "manifest.json").exists() else None
    prepare(args.models, args.runs, docstrings)
    started = time.monotonic()
    records = []
    for run in ESTIMATION_RUNS:
        coverage, delay, seed = run
        for dataset, plan in plans(coverage, delay, seed, docstrings):
            name = f"{dataset}-labels{100 * coverage:g}-delay{delay:g}-seed{seed}"
            print(f"{name}: {len(plan.replays)} replays", flush=True)
            out_dir = args.work / name
            rows = run_demo(out_dir, args.models, plan, ESTIMATION_WINDOW, on_step=print)
            records += readings(out_dir, dataset, run, rows)
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
