"""Evaluate a model on one encoded split: the report and per-example predictions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from shiftwatch.classification import classification_report
from shiftwatch.encoding import softmax
from training.batches import EncodedSplit, predict


def evaluate_split(
    model: torch.nn.Module, split: EncodedSplit, labels: Sequence[str], batch_size: int = 256
) -> tuple[dict, pd.DataFrame]:
    """Classification report (accuracy, macro-F1, recalls, per-domain, confusion, ECE).

    Returns:
        The report and a frame with one row per example: `row`, `label`, `pred`,
        `confidence`, `domain` (label and pred as class indices).
    """
    logits, _ = predict(model, split.ids, batch_size)
    probs = softmax(logits)
    pred = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    report = classification_report(split.labels, pred, confidence, labels, split.domains)
    frame = pd.DataFrame(
        {
            "row": np.arange(len(split)),
            "label": split.labels,
            "pred": pred,
            "confidence": confidence,
            "domain": split.domains,
        }
    )
    return report, frame
