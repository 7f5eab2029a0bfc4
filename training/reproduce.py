"""`shiftwatch reproduce`: every variant x seed of a profile on each dataset, then figures,
per-dataset results and one page with the claims side by side.

Layout: runs in RUNS/<dataset>/<variant>/<seed>/; per dataset OUT/results/<dataset>/
(results.md, results.json, figures); OUT/results.md compares the datasets.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from shiftwatch.data import Dataset
from training import figures
from training.config import Profile
from training.model import VARIANTS
from training.results_md import combined_markdown, results_markdown
from training.study import RunRecord, accuracy_table, evaluate_claims
from training.train import train_run

log = logging.getLogger(__name__)

FIGURES = {
    "fig1": "fig1_baseline_curves.png",
    "fig2": "fig2_confusion_baseline_vs_research.png",
    "fig3": "fig3_research_curves.png",
    "fig4": "fig4_no_pe_curves.png",
    "per_domain": "figA1_per_domain_accuracy.png",
    "per_seed": "figA2_per_seed_accuracy.png",
}
CURVES = (
    ("baseline", "fig1", "Fig 1: baseline"),
    ("research", "fig3", "Fig 3: research"),
    ("no_pe", "fig4", "Fig 4: no_pe ablation"),
)


def reproduce(
    profile: Profile,
    dataset: Dataset,
    runs_dir: Path,
    out_dir: Path,
    variants: tuple[str, ...] = tuple(VARIANTS),
    model_fields: dict | None = None,
    on_run: Callable[[str, int], Callable[[dict], None] | None] | None = None,
) -> dict:
    """Train every variant x seed, then write results.json, results.md and the figures.

    Args:
        on_run: called before each run with (variant, seed); may return an
            `on_epoch` callback for progress.

    Returns:
        The content of results.json.
    """
    started = time.perf_counter()
    runs: list[RunRecord] = []
    for variant in variants:
        for seed in profile.seeds:
            config = replace(profile.train, seed=seed)
            on_epoch = on_run(variant, seed) if on_run else None
            result = train_run(
                variant, dataset, config, runs_dir / variant / str(seed), model_fields, on_epoch
            )
            runs.append(RunRecord.load(result.run_dir, result.seconds))
    training_seconds = time.perf_counter() - started
    timing = {
        "training_seconds": training_seconds,
        "per_run_seconds": {f"{r.variant}/{r.seed}": r.seconds for r in runs},
    }
    return write_results(profile, dataset, runs, out_dir, variants, timing, started)


def study_dirs(dataset: Dataset, runs_dir: Path, out_dir: Path) -> tuple[Path, Path]:
    """Where a dataset's runs and its results go."""
    return runs_dir / dataset.slug, out_dir / "results" / dataset.slug


def reproduce_all(
    profile: Profile,
    datasets: list[Dataset],
    runs_dir: Path,
    out_dir: Path,
    render: bool = False,
    on_run: Callable[[str, int], Callable[[dict], None] | None] | None = None,
    on_dataset: Callable[[Dataset], None] | None = None,
) -> dict[str, dict]:
    """The study on every dataset (trained, or redrawn from finished runs when `render`),
    then OUT/results.md with the datasets side by side. Returns dataset slug -> results."""
    results = {}
    for dataset in datasets:
        if on_dataset is not None:
            on_dataset(dataset)
        runs, out = study_dirs(dataset, runs_dir, out_dir)
        if render:
            results[dataset.slug] = render_only(profile, dataset, runs, out)
        else:
            results[dataset.slug] = reproduce(profile, dataset, runs, out, on_run=on_run)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.md").write_text(combined_markdown(results, profile.name))
    return results


def render_only(profile: Profile, dataset: Dataset, runs_dir: Path, out_dir: Path) -> dict:
    """Redraw figures and tables from the existing run folders, keeping the timings that
    the training run measured (read from the previous results.json in `out_dir`)."""
    previous = out_dir / "results.json"
    if not previous.exists():
        raise FileNotFoundError(f"{previous} not found: render-only needs a finished reproduction")
    recorded = json.loads(previous.read_text())
    variants = tuple(recorded["variants"])
    runs = [
        RunRecord.load(runs_dir / v / str(s), recorded["timing"]["per_run_seconds"][f"{v}/{s}"])
        for v in variants
        for s in profile.seeds
    ]
    timing = {
        k: recorded["timing"][k] for k in ("training_seconds", "per_run_seconds", "total_seconds")
    }
    return write_results(profile, dataset, runs, out_dir, variants, timing, time.perf_counter())


def write_results(
    profile: Profile,
    dataset: Dataset,
    runs: list[RunRecord],
    out_dir: Path,
    variants: tuple[str, ...],
    timing: dict,
    started: float,
) -> dict:
    """Figures, results.json and results.md from finished runs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shift_sets = [s for s in dataset.eval_sets if s != "test"]
    labels = list(dataset.labels)
    for variant, key, title in CURVES:
        if variant in variants:
            figures.learning_curves(runs, variant, shift_sets, out_dir / FIGURES[key], title)
    figures.confusion_matrices(runs, dataset.eval_sets, labels, out_dir / FIGURES["fig2"])
    figures.per_domain_accuracy(runs, dataset.eval_sets, out_dir / FIGURES["per_domain"])
    figures.per_seed_accuracy(runs, dataset.eval_sets, out_dir / FIGURES["per_seed"])

    table = accuracy_table(runs)
    results = {
        "profile": profile.name,
        "seeds": list(profile.seeds),
        "variants": list(variants),
        "train_config": profile.train.to_dict(),
        "dataset": {"source": dataset.source, "content_sha256": dataset.content_sha256},
        "labels": labels,
        "eval_sets": dataset.eval_sets,
        "accuracy": {
            f"{variant}/{name}": {k: float(v) for k, v in row.items()}
            for (variant, name), row in table.iterrows()
        },
        "claims": evaluate_claims(runs, shift_sets, labels),
        "timing": {
            "total_seconds": time.perf_counter() - started,
            **timing,  # a re-render keeps the measured total
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, torch threads {profile.train.threads}",
        },
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "figures": FIGURES,
    }
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "results.md").write_text(results_markdown(results, runs, table))
    log.info("reproduction written to %s in %.0f s", out_dir, results["timing"]["total_seconds"])
    return results
