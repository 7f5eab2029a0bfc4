"""The `shiftwatch` command: one subcommand per stage, each a thin layer over a library call.

This module holds the app, the shared options and helpers; the commands live in
`study` (data, train, reproduce), `models` (export, import, serve) and `live`
(monitor, replay, demo).

Stages are imported inside their command, so `shiftwatch --help` and the
torch-free commands never load torch (the core imports no stage at module level).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

app = typer.Typer(
    help="Serve transformer sequence classifiers and catch data shift live.", no_args_is_help=True
)
console = Console(stderr=True)

DataOption = Annotated[
    Path | None,
    typer.Option(
        help="Dataset: a generated folder or a JSONL/CSV/Parquet file (default: embedded)."
    ),
]
ProfileOption = Annotated[str, typer.Option(help="Training profile: quick or paper.")]
RunsOption = Annotated[
    Path, typer.Option(help="Where run folders go: RUNS/<dataset>/<variant>/<seed>/.")
]


# The BentoML model store inside the project (as `make` uses it), and no telemetry, unless the
# environment says otherwise.
ENVIRONMENT_DEFAULTS = {
    "BENTOML_HOME": "artifacts/bentoml",
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    "EVIDENTLY_DISABLE_TELEMETRY": "1",
    "ORT_DISABLE_TELEMETRY": "1",  # read when onnxruntime is imported: the CLI imports it later
}


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False,
) -> None:
    for key, value in ENVIRONMENT_DEFAULTS.items():
        os.environ.setdefault(key, str(Path(value).resolve()) if key == "BENTOML_HOME" else value)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@contextmanager
def user_errors():
    """Turn the library's validation errors into one clear line and exit code 2."""
    from shiftwatch.data import DataError
    from shiftwatch.tokenizer import TokenizerError

    try:
        yield
    except (DataError, TokenizerError, ValueError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _epoch_progress(progress: Progress, description: str, total: int):
    task = progress.add_task(description, total=total, status="")

    def on_epoch(record: dict) -> None:
        status = f"train {record['train_acc']:.3f} · val {record['val_acc']:.3f}"
        progress.update(task, advance=1, status=status)

    return on_epoch


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs · {task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
    )


def _count_progress() -> Progress:
    """A bar of sequences sent, under the task's description."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


# The commands register themselves on `app` when their modules are imported, in this order.
# isort: off
from orchestration.cli import study  # noqa: E402, F401
from orchestration.cli import models  # noqa: E402, F401
from orchestration.cli import live  # noqa: E402, F401
# isort: on
