"""Checkpoint -> model bundle: export, parity, reference window, optional int8, bundle.json.

The bundle is built in a staging folder and moved into place only after it reads
back as valid, so a failed export never leaves a half-written bundle.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from exports.config import ExportConfig
from exports.onnx_export import check_parity, export_onnx
from exports.quantize import accuracy_deltas, quantize_int8
from exports.reference import build_reference
from shiftwatch.bundle import QUANTIZED_FILE, BundleMeta, ModelBundle, read_bundle
from shiftwatch.data import DataError, Dataset, load_dataset
from shiftwatch.inference import GRAPH_OPTIMIZATION, OnnxClassifier, open_session
from training.checkpoint import TrainedRun, load_run

log = logging.getLogger(__name__)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def dataset_of(run: TrainedRun) -> Dataset:
    """The dataset the run was trained on, checked against its recorded content hash."""
    recorded = run.config["data"]
    dataset = load_dataset(None if recorded["source"] == "embedded" else recorded["source"])
    if dataset.content_sha256 != recorded["content_sha256"]:
        raise DataError(
            f"dataset {recorded['source']} has changed since run {run.run_dir} was trained "
            f"(content hash {dataset.content_sha256[:12]}… != {recorded['content_sha256'][:12]}…)"
        )
    return dataset


def export_bundle(
    run_dir: Path,
    models_dir: Path,
    config: ExportConfig,
    dataset: Dataset | None = None,
    on_step: Callable[[str], None] | None = None,
) -> ModelBundle:
    """Turn a trained run into `models_dir/<variant>/`.

    Raises:
        ParityError: onnxruntime disagrees with torch beyond tolerance.
        BundleError: the written bundle fails its own validation.
    """
    step = on_step or (lambda _: None)
    torch.set_num_threads(config.threads)
    run = load_run(run_dir)
    variant, labels = run.config["variant"], run.config["data"]["labels"]
    max_trained_length = run.config["data"]["max_trained_length"]
    dataset = dataset or dataset_of(run)
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=f".{variant}-") as tmp:
        staging = Path(tmp) / variant
        staging.mkdir()
        step("exporting to ONNX")
        export_onnx(run.model, staging / "model.onnx", config.opset)
        classifier = OnnxClassifier(
            open_session(staging / "model.onnx", config.threads, prefer_gpu=False),
            run.model.config.max_positions,
        )
        step(f"parity on {config.parity_sequences} sequences")
        parity = check_parity(
            run.model,
            classifier,
            config.parity_sequences,
            config.parity_max_batch,
            config.logit_tolerance,
            config.batch_independence_tolerance,
            config.seed,
        )
        step("building the reference window")
        run.vocab.save(staging / "vocab.json")
        reference, reduction = build_reference(
            classifier,
            dataset.split("val"),
            run.vocab,
            labels,
            max_trained_length,
            config.embedding_dims,
        )
        reference.to_parquet(staging / "reference.parquet", index=False)
        quantization = None
        if config.quantize:
            step("quantising to int8 and measuring accuracy")
            quantize_int8(staging / "model.onnx", staging / QUANTIZED_FILE)
            int8 = OnnxClassifier(
                open_session(staging / QUANTIZED_FILE, config.threads, prefer_gpu=False),
                run.model.config.max_positions,
            )
            index = {label: i for i, label in enumerate(labels)}
            eval_sets = {
                name: (
                    [run.vocab.encode(t) for t in frame["tokens"]],
                    np.asarray([index[label] for label in frame["label"]]),
                )
                for name in dataset.eval_sets
                for frame in [dataset.split(name)]
            }
            quantization = {
                "method": "onnxruntime dynamic quantisation, int8 weights (MatMul, Gemm)",
                "accuracy": accuracy_deltas(classifier, int8, eval_sets),
            }
        meta = BundleMeta(
            variant=variant,
            labels=labels,
            max_trained_length=max_trained_length,
            max_positions=run.model.config.max_positions,
            vocab_sha256=run.vocab.sha256,
            vocab_size=len(run.vocab),
            d_model=run.model.config.d_model,
            opset=config.opset,
            graph_optimization=GRAPH_OPTIMIZATION,
            training_metrics={
                name: {k: report[k] for k in ("accuracy", "macro_f1", "ece")}
                for name, report in run.metrics.items()
            },
            parity=parity,
            quantization=quantization,
            embedding_reduction=reduction,
            reference={
                "rows": len(reference),
                "accuracy": float((reference["predicted_label"] == reference["label"]).mean()),
                "split": "val",
            },
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            git_commit=git_commit(),
            run={
                "path": str(run_dir),
                "seed": run.config["train"]["seed"],
                "model": run.config["model"],
            },
        )
        (staging / "bundle.json").write_text(meta.model_dump_json(indent=2))
        read_bundle(staging)
        target = models_dir / variant
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    log.info("bundle written to %s", target)
    return read_bundle(target)
