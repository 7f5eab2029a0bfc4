"""Rebuild a trained model from its run folder (config.json + checkpoint.pt)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from shiftwatch.tokenizer import TextTokenizer
from training.model import ModelConfig, SequenceClassifier

RUN_FILES = ("checkpoint.pt", "config.json", "tokenizer.json", "metrics.json")


@dataclass(frozen=True)
class TrainedRun:
    run_dir: Path
    model: SequenceClassifier  # in eval mode
    config: dict  # config.json
    tokenizer: TextTokenizer  # truncating at the model's positional limit
    metrics: dict  # metrics.json: eval set -> classification report


def load_run(run_dir: Path) -> TrainedRun:
    """Load a finished run; the checkpoint is a plain state dict (weights_only)."""
    missing = [f for f in RUN_FILES if not (run_dir / f).exists()]
    if missing:
        raise FileNotFoundError(f"run folder {run_dir} is missing {', '.join(missing)}")
    config = json.loads((run_dir / "config.json").read_text())
    model_config = ModelConfig(**config["model"])
    tokenizer = TextTokenizer.load(
        run_dir / "tokenizer.json", config["tokenizer_sha256"], model_config.max_positions
    )
    model = SequenceClassifier(model_config)
    model.load_state_dict(torch.load(run_dir / "checkpoint.pt", weights_only=True))
    model.eval()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return TrainedRun(run_dir, model, config, tokenizer, metrics)
