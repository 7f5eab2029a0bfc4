"""Reproduction benchmark: wall time of the study per profile vs DESIGN.md's budgets.

Runs exactly what `shiftwatch reproduce --profile P` runs (every variant x seed of the
profile, then the figures and results) into a scratch folder, so the project's runs and
docs/results.md are left as they are, and times it. Each profile has its own section of
docs/benchmarks.md, replaced only when that profile is measured; a dataset other than
the embedded one (`--data`, e.g. the real docstring dataset) gets sections of its own.

    python -m benchmarks.bench_reproduction [--profile quick] [--profile paper] [--data PATH]
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console

from benchmarks.machine import CpuSnapshot, Environment, other_load_cores
from benchmarks.render import reproduction
from benchmarks.render.markdown import write_section
from benchmarks.results import ReproductionRun, RunTiming
from shiftwatch.data import Dataset, load_dataset
from training.config import PROFILES, Profile
from training.reproduce import reproduce
from training.study import RunRecord

ROOT = Path(__file__).resolve().parents[1]
console = Console(stderr=True)


def section_name(profile: str, dataset: str = "embedded") -> str:
    suffix = "" if dataset == "embedded" else f"_{dataset}"
    return f"bench_reproduction_{profile}{suffix}"


def run_timings(runs_dir: Path, results: dict) -> list[RunTiming]:
    """One record per run: epochs, time, ID test and mean shift-set accuracy."""
    timings = []
    for key, seconds in results["timing"]["per_run_seconds"].items():
        variant, seed = key.split("/")
        run = RunRecord.load(runs_dir / variant / seed, seconds)
        shift_sets = [s for s in results["eval_sets"] if s != "test"]
        shift_acc = sum(run.metrics[s]["accuracy"] for s in shift_sets) / len(shift_sets)
        timings.append(
            RunTiming(
                variant, seed, len(run.log), seconds, run.metrics["test"]["accuracy"], shift_acc
            )
        )
    return timings


def measure(profile: Profile, dataset: Dataset, out: Path) -> None:
    """Reproduce `profile` on `dataset` in a scratch folder, time it, write its section."""
    with tempfile.TemporaryDirectory(prefix=f"bench_reproduction_{profile.name}_") as scratch:
        runs_dir, results_dir = Path(scratch) / "runs", Path(scratch) / "results"

        def on_run(variant: str, seed: int):
            console.print(f"{profile.name}: training {variant} seed {seed}")
            return lambda record: console.print(
                f"  epoch {record['epoch']}: val acc {record['val_acc']:.3f}, "
                f"{record['seconds']:.1f} s"
            )

        start = CpuSnapshot.now()
        results = reproduce(profile, dataset, runs_dir, results_dir, on_run=on_run)
        end = CpuSnapshot.now()
        runs = run_timings(runs_dir, results)
    run = ReproductionRun(
        profile=profile,
        dataset_slug=dataset.slug,
        dataset_source=str(dataset.source),
        training_rows=len(dataset.split("train")),
        variants=len(results["variants"]),
        training_s=results["timing"]["training_seconds"],
        runs=runs,
        wall_s=end.wall_s - start.wall_s,
        other_load_cores=other_load_cores(start, end),
        environment=Environment.capture(torch=torch.__version__),
    )
    markdown = reproduction.render(run)
    print(markdown)
    section = section_name(profile.name, dataset.slug)
    write_section(out, section, markdown)
    console.print(f"wrote section '{section}' of {out}")


def main(
    profiles: Annotated[
        list[str] | None,
        typer.Option(
            "--profile",
            help="Profile to time (repeatable); default: quick then paper (~5 + ~30 min).",
        ),
    ] = None,
    data: Annotated[
        str, typer.Option(help="The dataset: embedded, or a folder/file (e.g. the docstrings).")
    ] = "embedded",
    out: Annotated[Path, typer.Option(help="Report file.")] = ROOT / "docs" / "benchmarks.md",
) -> None:
    """Time `shiftwatch reproduce` per profile against DESIGN.md's budgets; write the report."""
    names = profiles or ["quick", "paper"]
    for name in names:
        if name not in PROFILES:
            raise typer.BadParameter(
                f"unknown profile {name!r}; choose from {sorted(PROFILES)}", param_hint="--profile"
            )
    dataset = load_dataset(data)
    for name in names:
        measure(PROFILES[name], dataset, out)


if __name__ == "__main__":
    typer.run(main)
