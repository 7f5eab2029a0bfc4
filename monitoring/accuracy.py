"""Live accuracy from joined labels, and label-free estimated accuracy (ATC).

ATC — Average Thresholded Confidence (Garg et al., ICLR 2022): on the reference
(held-out in-domain validation set) pick the confidence threshold t such that the
share of examples with confidence above t equals the reference accuracy. On live
traffic the estimated accuracy is the share of predictions with confidence above
t. It needs no labels, and it tracks accuracy under shifts where the model's
confidence falls with its accuracy; it cannot see shifts the model is confidently
wrong about, which is why realised accuracy is exported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from shiftwatch.metrics import expected_calibration_error


@dataclass(frozen=True)
class AtcEstimator:
    threshold: float
    reference_accuracy: float

    @classmethod
    def fit(cls, confidence: np.ndarray, correct: np.ndarray) -> AtcEstimator:
        """Threshold t with mean(confidence > t) == mean(correct) on the reference."""
        accuracy = float(np.mean(correct))
        # The (1 - accuracy) quantile leaves a share `accuracy` of confidences above it.
        threshold = float(np.quantile(confidence, 1.0 - accuracy, method="lower"))
        return cls(threshold, accuracy)

    def estimate(self, confidence: np.ndarray) -> float:
        return (
            float(np.mean(np.asarray(confidence) > self.threshold))
            if len(confidence)
            else float("nan")
        )


@dataclass(frozen=True)
class LiveAccuracy:
    labeled: int
    accuracy: float  # NaN without labels
    by_domain: dict[str, float]
    class_recall: dict[str, float]  # by true class, classes with labels only
    ece: float

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def live_accuracy(labeled: pd.DataFrame) -> LiveAccuracy:
    """Accuracy, per-domain accuracy, class recall and ECE on a window's labeled rows.

    Args:
        labeled: rows with `label`, `predicted_label`, `confidence`, `domain`.
    """
    if labeled.empty:
        return LiveAccuracy(0, float("nan"), {}, {}, float("nan"))
    correct = (labeled["label"] == labeled["predicted_label"]).to_numpy()
    domains = labeled["domain"].fillna("unknown").to_numpy()
    return LiveAccuracy(
        labeled=len(labeled),
        accuracy=float(correct.mean()),
        by_domain={str(d): float(correct[domains == d].mean()) for d in sorted(set(domains))},
        class_recall={
            str(c): float(correct[(labeled["label"] == c).to_numpy()].mean())
            for c in sorted(set(labeled["label"]))
        },
        ece=expected_calibration_error(labeled["confidence"].to_numpy(), correct),
    )
