"""The `shiftwatch` command: one subcommand per stage, each a thin layer over a library call.

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
    """Train every variant x seed of a profile on each dataset; write the study's figures,
    results per dataset and the claims side by side."""
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


@app.command()
def export(
    variant: Annotated[
        str | None,
        typer.Option(help="Export RUNS/embedded/<variant>/0 (or give --run, or --all)."),
    ] = None,
    all_variants: Annotated[
        bool,
        typer.Option("--all", help="Export every variant's seed-0 run on the embedded dataset."),
    ] = False,
    run: Annotated[Path | None, typer.Option(help="A run folder to export.")] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="The bundle's name: its folder, store tag and metric label (default: the "
            "variant). Lowercase letters, digits, '.', '_', '-'; at most 63 characters."
        ),
    ] = None,
    quantize: Annotated[bool, typer.Option(help="Also write model.int8.onnx.")] = False,
    runs_dir: RunsOption = Path("artifacts/runs"),
    models_dir: Annotated[Path, typer.Option(help="Bundles go to MODELS/<name>/.")] = Path(
        "artifacts/models"
    ),
    register: Annotated[bool, typer.Option(help="Register in the BentoML model store.")] = True,
) -> None:
    """Export trained runs to ONNX model bundles (parity-checked) and register them."""
    from exports.bundle_export import export_bundle
    from exports.config import ExportConfig
    from exports.store import register_bundle
    from shiftwatch.bundle import BundleError
    from shiftwatch.names import validate_model_name
    from training.model import VARIANTS

    if sum([variant is not None, all_variants, run is not None]) != 1 or (all_variants and name):
        console.print(
            "[red]error:[/red] give exactly one of --variant, --run or --all "
            "(--name only with --variant or --run)"
        )
        raise typer.Exit(2)
    if all_variants:
        jobs = [(runs_dir / "embedded" / v / "0", v) for v in VARIANTS]
    else:
        jobs = [(run or runs_dir / "embedded" / str(variant) / "0", name)]
    config = ExportConfig(quantize=quantize)
    table = Table("bundle", "parity max |Δlogit|", "BentoML tag", title="exported bundles")
    with user_errors():
        if name is not None:
            validate_model_name(name)
        for run_dir, bundle_name in jobs:
            label = bundle_name or run_dir.parent.name
            with console.status(f"{label}: starting") as status:
                try:
                    bundle = export_bundle(
                        run_dir,
                        models_dir,
                        config,
                        name=bundle_name,
                        on_step=lambda s, n=label: status.update(f"{n}: {s}"),
                    )
                except BundleError as exc:
                    raise ValueError(str(exc)) from exc
                tag = register_bundle(bundle) if register else "(not registered)"
            table.add_row(str(bundle.path), f"{bundle.meta.parity['max_abs_logit_diff']:.2e}", tag)
            print(tag)
    Console().print(table)


@app.command("import")
def import_model(
    onnx: Annotated[
        Path,
        typer.Option(
            help="The ONNX classifier (input_ids, attention_mask[, token_type_ids] -> logits)."
        ),
    ],
    tokenizer: Annotated[Path, typer.Option(help="Its Hugging Face tokenizer.json.")],
    labels: Annotated[
        str,
        typer.Option(help="Class names in logit order, comma-separated, or @FILE (one a line)."),
    ],
    reference: Annotated[
        Path,
        typer.Option(
            help="Labeled in-domain rows (JSONL/CSV/Parquet: text or tokens, label, domain): "
            "the monitor's reference window and the label-free estimate's calibration set."
        ),
    ],
    name: Annotated[str, typer.Option(help="The bundle's name (folder, store tag, metric label).")],
    reference_rows: Annotated[
        str | None,
        typer.Option(help="Use only these reference rows, COLUMN=VALUE (e.g. split=val)."),
    ] = None,
    max_length: Annotated[
        int | None,
        typer.Option(help="The model's positional limit in ids (default: the tokenizer's own)."),
    ] = None,
    embedding_output: Annotated[
        str | None,
        typer.Option(help="An ONNX output with a pooled vector, for embedding drift (optional)."),
    ] = None,
    models_dir: Annotated[Path, typer.Option(help="The bundle goes to MODELS/<name>/.")] = Path(
        "artifacts/models"
    ),
    register: Annotated[bool, typer.Option(help="Register in the BentoML model store.")] = True,
) -> None:
    """Wrap an ONNX text classifier trained elsewhere into a bundle, served and monitored like
    one trained here."""
    from exports.import_model import import_bundle
    from exports.store import register_bundle

    with user_errors():
        names = (
            Path(labels[1:]).read_text().splitlines()
            if labels.startswith("@")
            else labels.split(",")
        )
        names = [n.strip() for n in names if n.strip()]
        with console.status("importing") as status:
            bundle = import_bundle(
                onnx,
                tokenizer,
                names,
                reference,
                models_dir,
                name,
                max_length=max_length,
                embedding_output=embedding_output,
                reference_rows=reference_rows,
                on_step=lambda text: status.update(text),
            )
            tag = register_bundle(bundle) if register else "(not registered)"
    embedding = bundle.meta.embedding_output or "none (no embedding drift)"
    console.print(
        f"{bundle.path}: {len(bundle.meta.labels)} labels, reference accuracy "
        f"{bundle.meta.reference['accuracy']:.3f} on {bundle.meta.reference['rows']} rows, "
        f"embedding output {embedding}"
    )
    print(tag)


@app.command()
def serve(
    primary: Annotated[
        str | None,
        typer.Option(help="The primary model: a bundle name in the store (or name:version)."),
    ] = None,
    shadows: Annotated[
        str | None, typer.Option(help='Shadow models, comma-separated ("" for none).')
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 3000,
) -> None:
    """Serve models from the BentoML store (`bentoml serve service.service:Shiftwatch` with the
    project's store and settings; other settings from SHIFTWATCH_* variables)."""
    import sys

    from shiftwatch.settings import ServiceSettings

    if primary is not None:
        os.environ["SHIFTWATCH_PRIMARY_MODEL"] = primary
    if shadows is not None:
        os.environ["SHIFTWATCH_SHADOW_MODELS"] = shadows
    with user_errors():
        settings = ServiceSettings()  # names checked here, with one clear line
    console.print(
        f"serving {', '.join(settings.models)} from {os.environ['BENTOML_HOME']} "
        f"on http://{host}:{port}"
    )
    args = ["bentoml", "serve", "service.service:Shiftwatch", "--host", host, "--port", str(port)]
    os.execv(sys.executable, [sys.executable, "-m", *args])


@app.command()
def monitor(
    port: Annotated[
        int | None, typer.Option(help="HTTP port (default SHIFTWATCH_MONITOR_PORT or 3002).")
    ] = None,
) -> None:
    """Run the monitoring sidecar (settings from SHIFTWATCH_MONITOR_* variables)."""
    from monitoring.app import serve
    from monitoring.settings import MonitorSettings

    with user_errors():
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


def print_replay_table(rows: list[dict], title: str) -> None:
    """The degradation table, readable in 80 columns and when piped: short headers, names
    folded (never cut), a legend under it."""
    from rich import box

    from shiftwatch.replay.summary import COLUMNS, LEGEND, fmt

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for key, _, short, kind in COLUMNS:
        if kind == "str" and key in ("scenario", "model"):
            table.add_column(short, overflow="fold")
        else:
            table.add_column(short, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(*(fmt(row[key], kind) for key, _, _, kind in COLUMNS))
    out = Console()
    out.print(table)
    out.print(LEGEND, style="dim")


@app.command()
def replay(
    url: Annotated[str, typer.Option(help="The service, e.g. http://127.0.0.1:3000.")],
    scenario: Annotated[
        str | None,
        typer.Option(
            help="A built-in scenario: in_domain, new_domain, length_shift, vocab_shift, "
            "label_shift, gradual. Or give --data."
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Replay a labeled file instead (JSONL/CSV/Parquet with text or tokens, label, "
            "domain; or a dataset folder)."
        ),
    ] = None,
    before: Annotated[
        str, typer.Option(help="--data: the rows before the onset, COLUMN=VALUE.")
    ] = "split=test",
    after: Annotated[
        str | None,
        typer.Option(
            help="--data: the rows after the onset, COLUMN=VALUE (e.g. split=ood). "
            "Without it, the before rows throughout (a control)."
        ),
    ] = None,
    gradual: Annotated[
        bool, typer.Option(help="--data: ramp the after rows in from 0 to 100%.")
    ] = False,
    name: Annotated[
        str | None,
        typer.Option(help="--data: the replay's name in the summary (default: the after value)."),
    ] = None,
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
    """Replay a shift through the live service, labels later; record what the monitor saw."""
    import json

    from shiftwatch.replay.driver import ReplayConfig, ReplayError, run_replay
    from shiftwatch.replay.plot import plot_timeline
    from shiftwatch.replay.summary import summarize

    if (scenario is None) == (data is None):
        console.print("[red]error:[/red] give exactly one of --scenario or --data")
        raise typer.Exit(2)
    if data is not None and name is None:
        name = "gradual" if gradual else (after or "in_domain").partition("=")[2] or "in_domain"
    try:
        config = ReplayConfig(
            scenario=scenario or str(name),
            url=url,
            monitor_url=monitor_url,
            rate=rate,
            events=events,
            label_delay=label_delay,
            label_coverage=label_coverage,
            seed=seed,
            data=None if data is None else str(data),
            before=before,
            after=after,
            gradual=gradual,
        )
        with _count_progress() as progress:
            task = progress.add_task(f"replay {config.scenario}", total=events)
            timeline = run_replay(config, lambda sent, _: progress.update(task, completed=sent))
    except ReplayError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    folder = out / config.scenario
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "timeline.json").write_text(json.dumps(timeline, indent=2))
    if monitor_url:
        plot_timeline(timeline, folder / "timeline.png")
        print_replay_table(summarize(timeline), f"{config.scenario}: {folder}")
    else:
        console.print(
            f"sent {timeline['sent']} sequences and {timeline['labels_sent']} labels; no monitor given"
        )


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option(help="Where timelines, reports and deployment.md go.")
    ] = Path("artifacts/demo"),
    data: Annotated[
        Path | None,
        typer.Option(
            help="Your labeled data (a JSONL/CSV/Parquet file or dataset folder with train, val "
            "and test splits): train the quick profile on it (or reuse finished runs), export, "
            "serve and replay its shift. Default: the embedded dataset and its scenarios."
        ),
    ] = None,
    before: Annotated[
        str, typer.Option(help="--data: the in-domain rows, COLUMN=VALUE.")
    ] = "split=test",
    after: Annotated[
        str, typer.Option(help="--data: the shifted rows, COLUMN=VALUE.")
    ] = "split=ood",
    models_dir: Annotated[
        Path, typer.Option(help="Bundles the monitor reads references from.")
    ] = Path("artifacts/models"),
    runs_dir: RunsOption = Path("artifacts/runs"),
    events: Annotated[int, typer.Option(help="Sequences per scenario.")] = 800,
    rate: Annotated[float, typer.Option(help="Requests per second.")] = 80.0,
    window: Annotated[int, typer.Option(help="Monitor window (predictions per model).")] = 200,
    label_delay: Annotated[float, typer.Option(help="Seconds before labels are sent.")] = 1.0,
    docs: Annotated[
        Path | None, typer.Option(help="Also write deployment.md and figures here.")
    ] = None,
    scenario: Annotated[
        list[str] | None, typer.Option(help="Built-in scenarios to run (default: all).")
    ] = None,
) -> None:
    """Start service and monitor on loopback, replay the shifts, print the degradation table."""
    from shiftwatch.replay.demo import embedded_plan, file_plan, run_demo
    from shiftwatch.replay.driver import ReplayConfig, ReplayError
    from shiftwatch.replay.findings import findings
    from shiftwatch.replay.traffic import SCENARIOS

    base = ReplayConfig(
        "in_domain", "http://unset", rate=rate, events=events, label_delay=label_delay, seed=0
    )
    try:
        with user_errors():
            if data is None:
                plan = embedded_plan(
                    base, scenario or list(SCENARIOS), "baseline", ("research", "no_pe")
                )
            else:
                if scenario:
                    raise ValueError(
                        "--scenario is for the embedded dataset; with --data the "
                        "replays are the control, the shift and its ramp"
                    )
                plan = file_plan(
                    base,
                    str(data),
                    before,
                    after,
                    *_prepare_data_models(data, before, after, runs_dir, models_dir),
                )
        with _count_progress() as progress:
            task = progress.add_task("demo", total=events)

            def step(text: str) -> None:
                progress.update(task, description=text, completed=0)

            rows = run_demo(
                out,
                models_dir,
                plan,
                window,
                docs,
                step,
                lambda sent, _: progress.update(task, completed=sent),
            )
    except (ReplayError, RuntimeError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    print_replay_table(rows, f"deployment-time degradation ({out / 'deployment.md'})")
    for finding in findings(rows):
        Console().print(
            f"- {finding['claim']} [bold]{finding['verdict']}[/bold]: {finding['numbers']}"
        )


def _prepare_data_models(
    data: Path, before: str, after: str, runs_dir: Path, models_dir: Path
) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """Train (or reuse) and export the three variants on the user's data, named
    <dataset>-<variant>; returns the primary, the shadows and the shifted rows' domains."""
    from exports.config import ExportConfig
    from exports.prepare import prepare_bundles
    from shiftwatch.data import load_dataset
    from shiftwatch.data.loader import Selection, read_labeled_rows
    from shiftwatch.names import validate_model_name
    from training.config import profile
    from training.model import VARIANTS

    dataset = load_dataset(data)
    rows, _ = read_labeled_rows(data)
    for selection in (before, after):  # before any training: a selection that matches nothing
        Selection.parse(selection).rows(rows, str(data))
    shifted = Selection.parse(after).rows(rows, str(data))
    names = {v: validate_model_name(f"{dataset.slug}-{v}") for v in VARIANTS}
    chosen = profile("quick")
    with _progress() as progress:
        prepared = prepare_bundles(
            dataset,
            chosen,
            runs_dir,
            models_dir,
            names,
            ExportConfig(),
            on_step=lambda text: console.print(text),
            on_run=lambda v, s: _epoch_progress(progress, f"{v} seed {s}", chosen.train.max_epochs),
        )
    primary, *shadows = (prepared[v][0].name for v in VARIANTS)
    return primary, tuple(shadows), tuple(sorted(set(shifted["domain"])))
