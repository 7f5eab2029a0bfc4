"""Checkpoint -> model bundle: export, parity, reference window, optional int8, bundle.json.

The bundle is built in a staging folder and moved into place only after it reads
back as valid, so a failed export never leaves a half-written bundle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from exports.config import ExportConfig
from exports.onnx_export import check_parity, export_onnx
from exports.quantize import accuracy_deltas, quantize_int8
from exports.reference import build_reference
from exports.staging import created_at, git_commit, publish_bundle, staging_folder
from shiftwatch.bundle import QUANTIZED_FILE, BundleMeta, ModelBundle
from shiftwatch.data import DataError, Dataset, load_dataset
from shiftwatch.inference import GRAPH_OPTIMIZATION, INPUT_NAMES, OnnxClassifier, open_session
from shiftwatch.manifest import file_sha256
from training.checkpoint import TrainedRun, load_run

log = logging.getLogger(__name__)


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
    name: str | None = None,
    dataset: Dataset | None = None,
    on_step: Callable[[str], None] | None = None,
) -> ModelBundle:
    """Turn a trained run into `models_dir/<name>/`.

    Args:
        name: the bundle's deployable name (default: the run's variant).

    Raises:
        ParityError: onnxruntime disagrees with torch beyond tolerance.
        BundleError: the written bundle fails its own validation.
        ValueError: `name` breaks the naming rules.
    """
    step = on_step or (lambda _: None)
    torch.set_num_threads(config.threads)
    run = load_run(run_dir)
    variant, labels = run.config["variant"], run.config["data"]["labels"]
    name = name or variant
    max_trained_length = run.config["data"]["max_trained_length"]
    max_positions = run.model.config.max_positions
    tokenizer = run.tokenizer
    with staging_folder(models_dir, name) as staging:
        dataset = dataset or dataset_of(run)
        step("exporting to ONNX")
        export_onnx(run.model, staging / "model.onnx", config.opset)
        classifier = OnnxClassifier(
            open_session(staging / "model.onnx", config.threads, prefer_gpu=False), max_positions
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
        tokenizer.save(staging / "tokenizer.json")
        reference, reduction = build_reference(
            classifier,
            dataset.split("val"),
            tokenizer,
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
                max_positions,
            )
            index = {label: i for i, label in enumerate(labels)}
            eval_sets = {
                set_name: (
                    tokenizer.encode(list(frame["text"])).ids,
                    np.asarray([index[label] for label in frame["label"]]),
                )
                for set_name in dataset.eval_sets
                for frame in [dataset.split(set_name)]
            }
            quantization = {
                "method": "onnxruntime dynamic quantisation, int8 weights (MatMul, Gemm)",
                "accuracy": accuracy_deltas(classifier, int8, eval_sets),
            }
        meta = BundleMeta(
            name=name,
            architecture=variant,
            labels=labels,
            max_trained_length=max_trained_length,
            max_positions=max_positions,
            tokenizer_sha256=tokenizer.sha256,
            vocab_size=tokenizer.vocab_size,
            inputs=list(INPUT_NAMES),
            embedding_output="pooled",
            opset=config.opset,
            graph_optimization=GRAPH_OPTIMIZATION,
            training_metrics={
                set_name: {k: report[k] for k in ("accuracy", "macro_f1", "ece")}
                for set_name, report in run.metrics.items()
            },
            parity=parity,
            quantization=quantization,
            embedding_reduction=reduction,
            reference={
                "rows": len(reference),
                "accuracy": float((reference["predicted_label"] == reference["label"]).mean()),
                "split": "val",
            },
            created_at=created_at(),
            git_commit=git_commit(),
            source={
                "kind": "run",
                "path": str(run_dir),
                "checkpoint_sha256": file_sha256(run_dir / "checkpoint.pt"),
                "seed": run.config["train"]["seed"],
                "dataset": run.config["data"]["source"],
                "model": run.config["model"],
            },
        )
        bundle = publish_bundle(staging, meta, models_dir)
    log.info("bundle written to %s", bundle.path)
    return bundle
