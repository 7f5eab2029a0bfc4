"""Classification metrics on plain arrays (numpy only): shared by training and the monitor."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def per_class_recall(matrix: np.ndarray) -> np.ndarray:
    """Recall per true class; NaN for a class with no examples."""
    support = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(matrix) / support, np.nan)


def macro_f1(matrix: np.ndarray) -> float:
    """Mean F1 over the classes present in truth or predictions."""
    tp = np.diag(matrix).astype(float)
    fp = matrix.sum(axis=0) - tp
    fn = matrix.sum(axis=1) - tp
    present = (tp + fp + fn) > 0
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=present)
    return float(f1[present].mean()) if present.any() else float("nan")


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 15
) -> float:
    """ECE with equal-width confidence bins: sum_b |acc_b - conf_b| * n_b / n."""
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=float)
    if confidence.size == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += abs(correct[in_bin].mean() - confidence[in_bin].mean()) * in_bin.mean()
    return float(ece)


def classification_report(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    confidence: np.ndarray,
    labels: Sequence[str],
    domains: Sequence[str] | None = None,
) -> dict:
    """Accuracy, macro-F1, per-class recall, per-domain accuracy, confusion matrix, ECE."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    matrix = confusion_matrix(y_true, y_pred, len(labels))
    correct = y_true == y_pred
    report = {
        "n": int(y_true.size),
        "accuracy": float(correct.mean()) if y_true.size else float("nan"),
        "macro_f1": macro_f1(matrix),
        "ece": expected_calibration_error(confidence, correct),
        "per_class_recall": {
            label: (None if np.isnan(r) else float(r))
            for label, r in zip(labels, per_class_recall(matrix), strict=True)
        },
        "confusion_matrix": matrix.tolist(),
    }
    if domains is not None:
        domains = np.asarray(domains)
        report["per_domain_accuracy"] = {
            str(d): float(correct[domains == d].mean()) for d in dict.fromkeys(domains)
        }
    return report
