"""Bundles and serving: `shiftwatch export`, `import`, `serve`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from orchestration.cli import (
    RunsOption,
    app,
    console,
    user_errors,
)

# Addresses only this machine reaches: `shiftwatch serve` there may run /feedback open.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


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
    from exports.register import register_bundle
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
    """Wrap an ONNX classifier trained elsewhere into a bundle, served and monitored like ours."""
    from exports.import_model import import_bundle
    from exports.register import register_bundle

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
    """Serve bundles from the model store: `bentoml serve` with the project's settings.

    Other settings come from SHIFTWATCH_* variables (README: the service). On loopback with no
    /feedback token configured, /feedback is served open (SHIFTWATCH_FEEDBACK_OPEN=true); on
    any other address a token (SHIFTWATCH_FEEDBACK_TOKEN or _FILE) or that setting is needed.
    """
    import sys

    from shiftwatch.settings import ServiceSettings

    if primary is not None:
        os.environ["SHIFTWATCH_PRIMARY_MODEL"] = primary
    if shadows is not None:
        os.environ["SHIFTWATCH_SHADOW_MODELS"] = shadows
    from shiftwatch.model_store import missing_model_message

    token_given = any(
        name in os.environ
        for name in ("SHIFTWATCH_FEEDBACK_TOKEN", "SHIFTWATCH_FEEDBACK_TOKEN_FILE")
    )
    if host in LOOPBACK_HOSTS and not token_given:
        os.environ.setdefault("SHIFTWATCH_FEEDBACK_OPEN", "true")
    with user_errors():
        settings = ServiceSettings()  # names checked here, with one clear line
        settings.feedback_access()  # a token, or explicitly open
        for name, tag in settings.model_refs.items():  # and found in the store
            problem = missing_model_message(name, tag)
            if problem is not None:
                raise ValueError(problem)
    console.print(
        f"serving {', '.join(settings.models)} from {os.environ['BENTOML_HOME']} "
        f"on http://{host}:{port}"
    )
    args = ["bentoml", "serve", "service.service:Shiftwatch", "--host", host, "--port", str(port)]
    os.execv(sys.executable, [sys.executable, "-m", *args])
