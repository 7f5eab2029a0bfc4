"""The live stack: `shiftwatch monitor`, `replay`, `demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from orchestration.cli import (
    RunsOption,
    _count_progress,
    _epoch_progress,
    _progress,
    app,
    console,
    user_errors,
)


@app.command()
def monitor(
    port: Annotated[
        int | None, typer.Option(help="HTTP port (default SHIFTWATCH_MONITOR_PORT or 3002).")
    ] = None,
) -> None:
    """Run the monitoring sidecar (settings from SHIFTWATCH_MONITOR_* variables)."""
    from monitoring.app import serve
    from shiftwatch.settings import MonitorSettings

    with user_errors():
        settings = MonitorSettings(**({"port": port} if port else {}))
    if settings.event_transport == "redis":
        from shiftwatch.transport.redis_streams import safe_url

        source = f"redis streams {safe_url(settings.redis_url)} (group {settings.redis_group})"
    else:
        source = f"event log {settings.event_log_dir}"
    console.print(
        f"monitor: {source}, state {settings.state_path}, "
        f"http://{settings.host}:{settings.port}/status"
    )
    serve(settings)


def print_replay_table(rows: list[dict], title: str) -> None:
    """The degradation table, readable in 80 columns and when piped: short headers, names
    folded (never cut), a legend under it."""
    from rich import box

    from orchestration.replay.summary import COLUMNS, LEGEND, fmt

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", padding=(0, 1, 0, 0))
    for key, _, short, _ in COLUMNS:
        if key in ("scenario", "model"):  # as wide as the longest name, up to a limit
            widest = max((len(str(row[key])) for row in rows), default=len(short))
            table.add_column(
                short, overflow="fold", min_width=min(widest, 22 if key == "model" else 14)
            )
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

    from orchestration.replay.driver import ReplayConfig, ReplayError, run_replay
    from orchestration.replay.plot import plot_timeline
    from orchestration.replay.summary import summarize

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
    from orchestration.replay.demo import embedded_plan, file_plan, run_demo
    from orchestration.replay.driver import ReplayConfig, ReplayError
    from orchestration.replay.findings import findings
    from orchestration.replay.traffic import SCENARIOS

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
                primary, shadows, domains, slug = _prepare_data_models(
                    data, before, after, runs_dir, models_dir
                )
                plan = file_plan(
                    base, str(data), before, after, primary, shadows, domains, f"deployment-{slug}"
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
) -> tuple[str, tuple[str, ...], tuple[str, ...], str]:
    """Train (or reuse) and export the three variants on the user's data, named
    <dataset>-<variant>; returns the primary, the shadows, the shifted rows' domains and the
    dataset's short name."""
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
    return primary, tuple(shadows), tuple(sorted(set(shifted["domain"]))), dataset.slug
