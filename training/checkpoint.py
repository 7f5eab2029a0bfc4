"""Rebuild a trained model from its run folder (config.json + checkpoint.pt)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from shiftwatch.vocab import Vocabulary
from training.model import ModelConfig, SequenceClassifier

RUN_FILES = ("checkpoint.pt", "config.json", "vocab.json", "metrics.json")


@dataclass(frozen=True)
class TrainedRun:
    run_dir: Path
    model: SequenceClassifier  # in eval mode
    config: dict  # config.json
    vocab: Vocabulary
    metrics: dict  # metrics.json: eval set -> classification report


def load_run(run_dir: Path) -> TrainedRun:
    """Load a finished run; the checkpoint is a plain state dict (weights_only)."""
    missing = [f for f in RUN_FILES if not (run_dir / f).exists()]
    if missing:
        raise FileNotFoundError(f"run folder {run_dir} is missing {', '.join(missing)}")
    config = json.loads((run_dir / "config.json").read_text())
    vocab = Vocabulary.load(run_dir / "vocab.json", expected_sha256=config["vocab_sha256"])
    model = SequenceClassifier(ModelConfig(**config["model"]))
    model.load_state_dict(torch.load(run_dir / "checkpoint.pt", weights_only=True))
    model.eval()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return TrainedRun(run_dir, model, config, vocab, metrics)
