"""Live accuracy from joined labels (label-free estimates: monitoring.calibration)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from shiftwatch.classification import expected_calibration_error


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
