"""The `shiftwatch` command: one subcommand per stage, each a thin layer over a library call.

Stages are imported inside their command, so `shiftwatch --help` and the
torch-free commands never load torch (the core imports no stage at module level).
"""

from __future__ import annotations

import logging
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
from rich.table import Table

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
RunsOption = Annotated[Path, typer.Option(help="Where run folders go: RUNS/<variant>/<seed>/.")]


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@contextmanager
def user_errors():
    """Turn the library's validation errors into one clear line and exit code 2."""
    from shiftwatch.data import DataError
    from shiftwatch.vocab import VocabError

    try:
        yield
    except (DataError, VocabError, ValueError, FileNotFoundError) as exc:
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


@app.command()
def data(
    out: Annotated[
        Path, typer.Option(help="Folder to write dataset.parquet and manifest.json.")
    ] = Path("artifacts/data/default"),
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
) -> None:
    """Generate the embedded multi-domain dataset (with its shift sets) into a folder."""
    from shiftwatch.data import DataConfig, write_default_dataset

    with user_errors():
        meta = write_default_dataset(out, DataConfig(seed=seed))
    table = Table("split", "sequences", title=f"{out} (sha256 {meta['content_sha256'][:12]}…)")
    for split, size in meta["sizes"].items():
        table.add_row(split, str(size))
    Console().print(table)


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
            result = train_run(
                variant, dataset, config, runs_dir / variant / str(seed), on_epoch=on_epoch
            )
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
    data: DataOption = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Where results.md/json and figures go. Default: docs/ for paper."),
    ] = None,
    runs_dir: RunsOption = Path("artifacts/runs"),
    render_only: Annotated[
        bool, typer.Option(help="Redraw figures and tables from the finished runs; no training.")
    ] = False,
) -> None:
    """Train every variant x seed of a profile; write the study's figures and results table."""
    from shiftwatch.data import load_dataset
    from training.config import profile as get_profile
    from training.reproduce import render_only as redraw
    from training.reproduce import reproduce as run_reproduction

    with user_errors():
        chosen = get_profile(profile)
        out = out or (Path("docs") if profile == "paper" else Path("artifacts/reproduce") / profile)
        dataset = load_dataset(data)
        if render_only:
            results = redraw(chosen, dataset, runs_dir, out)
        else:
            with _progress() as progress:
                results = run_reproduction(
                    chosen,
                    dataset,
                    runs_dir,
                    out,
                    on_run=lambda v, s: _epoch_progress(
                        progress, f"{v} seed {s}", chosen.train.max_epochs
                    ),
                )
    table = Table(
        "claim",
        "verdict",
        title=f"{out / 'results.md'} ({results['timing']['total_seconds']:.0f} s)",
    )
    for key, claim in results["claims"].items():
        table.add_row(f"{key}. {claim['claim']}", claim["verdict"])
    Console().print(table)


@app.command()
def export(
    variant: Annotated[str | None, typer.Option(help="Variant to export (or --all).")] = None,
    all_variants: Annotated[bool, typer.Option("--all", help="Export every variant.")] = False,
    run: Annotated[
        Path | None, typer.Option(help="Run folder (default: RUNS/<variant>/0).")
    ] = None,
    quantize: Annotated[bool, typer.Option(help="Also write model.int8.onnx.")] = False,
    runs_dir: RunsOption = Path("artifacts/runs"),
    models_dir: Annotated[Path, typer.Option(help="Bundles go to MODELS/<variant>/.")] = Path(
        "artifacts/models"
    ),
    register: Annotated[bool, typer.Option(help="Register in the BentoML model store.")] = True,
) -> None:
    """Export trained runs to ONNX model bundles (parity-checked) and register them."""
    from exports.bundle_export import export_bundle
    from exports.config import ExportConfig
    from exports.store import register_bundle
    from shiftwatch.bundle import BundleError
    from training.model import VARIANTS

    if all_variants == (variant is not None) or (all_variants and run is not None):
        console.print(
            "[red]error:[/red] give exactly one of --variant or --all (--run only with --variant)"
        )
        raise typer.Exit(2)
    variants = list(VARIANTS) if all_variants else [variant]
    config = ExportConfig(quantize=quantize)
    table = Table(
        "variant", "bundle", "parity max |Δlogit|", "BentoML tag", title="exported bundles"
    )
    with user_errors():
        for name in variants:
            run_dir = run or runs_dir / name / "0"
            with console.status(f"{name}: starting") as status:
                try:
                    bundle = export_bundle(
                        run_dir,
                        models_dir,
                        config,
                        on_step=lambda s, n=name: status.update(f"{n}: {s}"),
                    )
                except BundleError as exc:
                    raise ValueError(str(exc)) from exc
                tag = register_bundle(bundle) if register else "(not registered)"
            table.add_row(
                name, str(bundle.path), f"{bundle.meta.parity['max_abs_logit_diff']:.2e}", tag
            )
            print(tag)
    Console().print(table)


@app.command()
def monitor(
    port: Annotated[
        int | None, typer.Option(help="HTTP port (default SHIFTWATCH_MONITOR_PORT or 3002).")
    ] = None,
) -> None:
    """Run the monitoring sidecar (settings from SHIFTWATCH_MONITOR_* variables)."""
    from monitoring.app import serve
    from monitoring.settings import MonitorSettings

    settings = MonitorSettings(**({"port": port} if port else {}))
    console.print(
        f"monitor: event log {settings.event_log_dir}, state {settings.state_path}, "
        f"http://{settings.host}:{settings.port}/status"
    )
    serve(settings)


def _count_progress() -> Progress:
    """A bar of sequences sent, under the task's description."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _replay_table(rows: list[dict], title: str) -> Table:
    from shiftwatch.replay.summary import COLUMNS, fmt

    table = Table(*(name for _, name, _ in COLUMNS), title=title)
    for row in rows:
        table.add_row(*(fmt(row[key], kind) for key, _, kind in COLUMNS))
    return table


@app.command()
def replay(
    scenario: Annotated[
        str,
        typer.Option(
            help="in_domain, new_domain, length_shift, vocab_shift, label_shift, gradual."
        ),
    ],
    url: Annotated[str, typer.Option(help="The service, e.g. http://127.0.0.1:3000.")],
    monitor_url: Annotated[
        str | None, typer.Option(help="The monitor, e.g. http://127.0.0.1:3002.")
    ] = None,
    rate: Annotated[float, typer.Option(help="Requests per second.")] = 50.0,
    events: Annotated[int, typer.Option(help="Sequences to send.")] = 600,
    label_delay: Annotated[
        float, typer.Option(help="Seconds before a prediction's label is sent.")
    ] = 2.0,
    label_coverage: Annotated[
        float, typer.Option(help="Share of predictions that get a label.")
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Traffic seed.")] = 0,
    out: Annotated[Path, typer.Option(help="Folder for timeline.json and timeline.png.")] = Path(
        "artifacts/replay"
    ),
) -> None:
    """Replay a shift scenario through the live service, labels later; record what the monitor saw."""
    import json

    from shiftwatch.replay.driver import ReplayConfig, ReplayError, run_replay
    from shiftwatch.replay.plot import plot_timeline
    from shiftwatch.replay.summary import summarize

    try:
        config = ReplayConfig(
            scenario, url, monitor_url, rate, events, 1, label_delay, label_coverage, seed
        )
        with _count_progress() as progress:
            task = progress.add_task(f"replay {scenario}", total=events)
            timeline = run_replay(config, lambda sent, _: progress.update(task, completed=sent))
    except ReplayError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    folder = out / scenario
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "timeline.json").write_text(json.dumps(timeline, indent=2))
    if monitor_url:
        plot_timeline(timeline, folder / "timeline.png")
        Console().print(_replay_table(summarize(timeline), f"{scenario}: {folder}"))
    else:
        console.print(
            f"sent {timeline['sent']} sequences and {timeline['labels_sent']} labels; no monitor given"
        )


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option(help="Where timelines, reports and deployment.md go.")
    ] = Path("artifacts/demo"),
    models_dir: Annotated[
        Path, typer.Option(help="Bundles the monitor reads references from.")
    ] = Path("artifacts/models"),
    events: Annotated[int, typer.Option(help="Sequences per scenario.")] = 800,
    rate: Annotated[float, typer.Option(help="Requests per second.")] = 80.0,
    window: Annotated[int, typer.Option(help="Monitor window (predictions per model).")] = 200,
    label_delay: Annotated[float, typer.Option(help="Seconds before labels are sent.")] = 1.0,
    docs: Annotated[
        Path | None, typer.Option(help="Also write deployment.md and figures here.")
    ] = None,
    scenario: Annotated[
        list[str] | None, typer.Option(help="Scenarios to run (default: all).")
    ] = None,
) -> None:
    """Start service and monitor on loopback, replay every scenario, print the degradation table."""
    from shiftwatch.replay.demo import run_demo
    from shiftwatch.replay.driver import ReplayConfig, ReplayError
    from shiftwatch.replay.findings import findings
    from shiftwatch.replay.traffic import SCENARIOS

    chosen = scenario or list(SCENARIOS)
    try:
        base = ReplayConfig(
            chosen[0], "http://unset", None, rate, events, 1, label_delay, 1.0, 0, 0.5, 1.0
        )
        with _count_progress() as progress:
            task = progress.add_task("demo", total=events)

            def step(text: str) -> None:
                progress.update(task, description=text, completed=0)

            rows = run_demo(
                out,
                models_dir,
                base,
                chosen,
                window,
                docs,
                step,
                lambda sent, _: progress.update(task, completed=sent),
            )
    except (ReplayError, RuntimeError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    Console().print(_replay_table(rows, f"deployment-time degradation ({out / 'deployment.md'})"))
    for finding in findings(rows):
        Console().print(
            f"- {finding['claim']} [bold]{finding['verdict']}[/bold]: {finding['numbers']}"
        )
