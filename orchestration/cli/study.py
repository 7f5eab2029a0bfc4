"""Data and the study: `shiftwatch data`, `train`, `reproduce`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from orchestration.cli import (
    DataOption,
    ProfileOption,
    RunsOption,
    _epoch_progress,
    _progress,
    app,
    console,
    user_errors,
)


@app.command()
def data(
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder to write dataset.parquet and manifest.json "
            "(default artifacts/data/<source>)."
        ),
    ] = None,
    source: Annotated[
        str,
        typer.Option(
            help="embedded: the synthetic generator, with its shift sets. docstrings: the real "
            "dataset, docstring sections of installed packages, held-out packages as split ood."
        ),
    ] = "embedded",
    seed: Annotated[int, typer.Option(help="Generator or sampling seed.")] = 0,
) -> None:
    """Write a dataset into a folder: the embedded generator's or the real docstring one."""
    from shiftwatch.data import DataConfig, write_default_dataset, write_docstring_dataset

    sources = ("embedded", "docstrings")
    if source not in sources:
        console.print(f"[red]error:[/red] --source {source!r} is not one of {list(sources)}")
        raise typer.Exit(2)
    out = out or Path("artifacts/data") / source
    with user_errors():
        if source == "embedded":
            meta = write_default_dataset(out, DataConfig(seed=seed))
        else:
            from shiftwatch.data.docstrings import DocstringConfig

            with console.status("reading the installed packages' docstrings"):
                meta = write_docstring_dataset(out, DocstringConfig(seed=seed))
    table = Table("split", "sequences")
    for split, size in meta["sizes"].items():
        table.add_row(split, str(size))
    out_console = Console()
    out_console.print(f"{out} (content sha256 {meta['content_sha256'][:12]}…)")
    out_console.print(table)


@app.command()
def train(
    variant: Annotated[str, typer.Option(help="baseline, research or no_pe.")],
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    profile: ProfileOption = "quick",
    data: DataOption = None,
    runs_dir: RunsOption = Path("artifacts/runs"),
) -> None:
    """Train one variant and evaluate it in-domain and on every shift set."""
    from dataclasses import replace

    from shiftwatch.data import load_dataset
    from training.config import profile as get_profile
    from training.train import train_run

    with user_errors():
        chosen = get_profile(profile)
        dataset = load_dataset(data)
        config = replace(chosen.train, seed=seed)
        with _progress() as progress:
            on_epoch = _epoch_progress(progress, f"{variant} seed {seed}", config.max_epochs)
            run_dir = runs_dir / dataset.slug / variant / str(seed)
            result = train_run(variant, dataset, config, run_dir, on_epoch=on_epoch)
    table = Table(
        "set", "accuracy", "macro-F1", "ECE", title=f"{variant} seed {seed}: {result.run_dir}"
    )
    for name, report in result.metrics.items():
        table.add_row(
            name, f"{report['accuracy']:.3f}", f"{report['macro_f1']:.3f}", f"{report['ece']:.3f}"
        )
    Console().print(table)


@app.command()
def reproduce(
    profile: ProfileOption = "quick",
    data: Annotated[
        list[str] | None,
        typer.Option(
            help="A dataset: `embedded` (the generator), a generated folder or a JSONL/CSV/"
            "Parquet file. Repeat it to run the study on several, side by side. Default: embedded."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where results.md and results/<dataset>/ go. Default: docs/ for paper, "
            "artifacts/reproduce/<profile>/ otherwise."
        ),
    ] = None,
    runs_dir: RunsOption = Path("artifacts/runs"),
    render_only: Annotated[
        bool, typer.Option(help="Redraw figures and tables from the finished runs; no training.")
    ] = False,
) -> None:
    """Train every variant x seed on each dataset: figures, results, claims side by side."""
    from shiftwatch.data import load_dataset
    from training.config import profile as get_profile
    from training.reproduce import reproduce_all

    with user_errors():
        chosen = get_profile(profile)
        out = out or (Path("docs") if profile == "paper" else Path("artifacts/reproduce") / profile)
        datasets = [load_dataset(d) for d in (data or ["embedded"])]
        slugs = [d.slug for d in datasets]
        if len(set(slugs)) != len(slugs):
            raise ValueError(f"two datasets share a name ({slugs}): rename a file or folder")
        with _progress() as progress:
            results = reproduce_all(
                chosen,
                datasets,
                runs_dir,
                out,
                render=render_only,
                on_run=lambda v, s: _epoch_progress(
                    progress, f"{v} seed {s}", chosen.train.max_epochs
                ),
                on_dataset=lambda d: console.print(f"dataset {d.slug}: {d.source}"),
            )
    table = Table("claim", *results, title=f"{out / 'results.md'}")
    first = next(iter(results.values()))
    for key, claim in first["claims"].items():
        table.add_row(
            f"{key}. {claim['claim']}", *(r["claims"][key]["verdict"] for r in results.values())
        )
    Console().print(table)
