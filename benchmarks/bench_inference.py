"""Inference benchmark: torch eager vs onnxruntime fp32 vs onnxruntime int8, side by side.

One run, one machine, one thread count. The trained run is exported afresh (fp32,
then dynamic int8) into a temporary folder, so no bundle is needed and the export's
positional limit is the run's own. Each (batch, seq) cell of the grid is timed on
the three engines in interleaved rounds, so a change in machine load hits all alike.
The table goes to stdout and to this benchmark's section of docs/benchmarks.md.

    python -m benchmarks.bench_inference [--quick] [--threads 2] [--variant baseline]
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated

import numpy as np
import onnxruntime as ort
import torch
import typer
from rich.console import Console

from benchmarks.machine import CpuSnapshot, Environment, other_load_cores
from benchmarks.ort_profile import OpProfile, profile_ops
from benchmarks.render.inference import render
from benchmarks.render.markdown import describe_load, project_path, write_section
from benchmarks.results import FP32, INT8, TARGET_CELL, TORCH, InferenceRun
from benchmarks.timing import RepetitionBudget, Timing, gemm_peak_gflops, time_interleaved
from exports.config import ExportConfig
from exports.onnx_export import export_onnx
from exports.quantize import quantize_int8
from shiftwatch.bundle import BundleError, read_bundle
from shiftwatch.inference import OnnxClassifier, open_session
from training.checkpoint import load_run
from training.model import ModelConfig

ROOT = Path(__file__).resolve().parents[1]
SECTION = "bench_inference"
BATCHES = (1, 8, 32)
LENGTHS = (32, 128, 512)
# Full: small cells stop at max_reps, large ones at the time budget; 27 cells stay
# within ~5 minutes on 2 cores. Quick: a ~30 s smoke run.
FULL = RepetitionBudget(warmup=5, min_reps=5, max_reps=300, seconds=6.0)
QUICK = RepetitionBudget(warmup=1, min_reps=3, max_reps=20, seconds=0.25)
ROUNDS = 5  # each cell's engines alternate this many times (benchmarks.timing.time_interleaved)
console = Console(stderr=True)

Engine = Callable[[np.ndarray, np.ndarray], object]


def build_engines(
    model_dir: Path, run_dir: Path, variant: str, threads: int
) -> tuple[ModelConfig, dict[str, Engine]]:
    """The run's model as torch eager, plus fresh fp32 and int8 ONNX exports in `model_dir`."""
    trained = load_run(run_dir)
    if trained.config.get("variant", variant) != variant:
        raise typer.BadParameter(f"{run_dir} is a {trained.config['variant']} run, not {variant}")
    model = trained.model.eval()
    fp32_path, int8_path = model_dir / "model.onnx", model_dir / "model.int8.onnx"
    export_onnx(model, fp32_path, ExportConfig().opset)
    quantize_int8(fp32_path, int8_path)
    engines: dict[str, Engine] = {
        TORCH: lambda ids, mask: model(torch.from_numpy(ids), torch.from_numpy(mask))
    }
    for name, path in ((FP32, fp32_path), (INT8, int8_path)):
        session = open_session(path, threads, inter_op_threads=1, prefer_gpu=False)
        engines[name] = OnnxClassifier(session, model.config.max_positions).run
    return model.config, engines


def measure_grid(
    config: ModelConfig, engines: dict[str, Engine], budget: RepetitionBudget
) -> dict[tuple[int, int, str], Timing]:
    """Latencies of every engine on every cell that fits the model; random ids, no padding."""
    rng = np.random.default_rng(0)
    timings = {}
    with torch.inference_mode():
        for seq in (s for s in LENGTHS if s <= config.max_positions):
            for batch in BATCHES:
                ids = rng.integers(2, config.vocab_size, size=(batch, seq), dtype=np.int64)
                mask = np.ones_like(ids)
                calls = {name: partial(engine, ids, mask) for name, engine in engines.items()}
                for name, timing in time_interleaved(calls, budget, ROUNDS).items():
                    timings[batch, seq, name] = timing
                medians = ", ".join(f"{n} {timings[batch, seq, n].median_ms:.2f}" for n in engines)
                console.print(f"batch {batch:>2} seq {seq:>3}: median ms {medians}")
    return timings


def recorded_int8_accuracy(bundle_dir: Path) -> tuple[dict | None, str]:
    """The bundle's recorded per-set int8 accuracy (not recomputed here), and its source
    (the bundle named relative to the project, as the generated doc names it)."""
    where = project_path(bundle_dir)
    if not (bundle_dir / "bundle.json").exists():
        return None, f"no bundle with int8 yet ({where} has no bundle.json)"
    try:
        bundle = read_bundle(bundle_dir)
    except BundleError as exc:
        return None, f"no bundle with int8 yet ({exc})"
    accuracy = (bundle.meta.quantization or {}).get("accuracy")
    if not accuracy:
        return None, f"no bundle with int8 yet ({where} is not quantised)"
    return accuracy, (
        f"recorded in {project_path(bundle_dir / 'bundle.json')} (exported {bundle.meta.created_at} "
        f"from run {bundle.meta.source.get('path', 'unknown')})"
    )


def profile_target_cell(
    model_dir: Path, config: ModelConfig, threads: int, quick: bool
) -> dict[str, OpProfile]:
    """ORT's kernel time by operator at DESIGN.md's target cell, fp32 and int8."""
    batch, seq = TARGET_CELL
    ids = np.random.default_rng(0).integers(2, config.vocab_size, size=(batch, seq))
    mask = np.ones_like(ids)
    runs = 20 if quick else 300
    console.print(f"profiling ORT operators at batch {batch} seq {seq} ({runs} runs each)")
    return {
        name: profile_ops(model_dir / file, threads, ids, mask, runs)
        for name, file in ((FP32, "model.onnx"), (INT8, "model.int8.onnx"))
    }


def main(
    variant: Annotated[str, typer.Option(help="baseline, research or no_pe.")] = "baseline",
    run: Annotated[
        Path | None, typer.Option(help="Run folder (default artifacts/runs/embedded/VARIANT/0).")
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(
            help="Bundle whose recorded int8 accuracy is reported "
            "(default artifacts/models/VARIANT)."
        ),
    ] = None,
    threads: Annotated[int, typer.Option(min=1, help="torch and onnxruntime threads.")] = 2,
    quick: Annotated[
        bool, typer.Option("--quick", help="~30 s smoke run: few repetitions.")
    ] = False,
    out: Annotated[Path, typer.Option(help="Report file.")] = ROOT / "docs" / "benchmarks.md",
) -> None:
    """Time torch eager, ORT fp32 and ORT int8 on a batch x seq grid and write the report."""
    started = CpuSnapshot.now()
    torch.set_num_threads(threads)
    run_dir = run or ROOT / "artifacts" / "runs" / "embedded" / variant / "0"
    budget = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as model_dir:
        console.print(f"exporting {run_dir} to fp32 and int8 ONNX")
        config, engines = build_engines(Path(model_dir), run_dir, variant, threads)
        skipped = [s for s in LENGTHS if s > config.max_positions]
        if skipped:
            console.print(f"note: seq {skipped} skipped: over max_positions {config.max_positions}")
        peak = gemm_peak_gflops(threads, budget)
        timings = measure_grid(config, engines, budget)
        op_profiles = profile_target_cell(Path(model_dir), config, threads, quick)
    ended = CpuSnapshot.now()
    accuracy, source = recorded_int8_accuracy(bundle or ROOT / "artifacts" / "models" / variant)
    measurement = InferenceRun(
        command=" ".join(["python -m benchmarks.bench_inference", *sys.argv[1:]]),
        variant=variant,
        run_dir=run_dir,
        config=config,
        threads=threads,
        budget=budget,
        rounds=ROUNDS,
        quick=quick,
        gemm_peak_gflops=peak,
        timings=timings,
        op_profiles=op_profiles,
        skipped_lengths=skipped,
        other_load_cores=other_load_cores(started, ended),
        wall_s=ended.wall_s - started.wall_s,
        environment=Environment.capture(torch=torch.__version__, onnxruntime=ort.__version__),
        int8_accuracy=accuracy,
        int8_source=source,
    )
    markdown = render(measurement)
    print(markdown)
    write_section(out, SECTION, markdown)
    console.print(f"wrote section '{SECTION}' of {out}")
    console.print(f"other load: {describe_load(measurement.other_load_cores)}")


if __name__ == "__main__":
    typer.run(main)
