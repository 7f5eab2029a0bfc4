"""Label shift as its own verdict: predicted classes moved, BBSE says the class priors moved,
and the inputs are what the reference would look like under the new priors.

A pure label shift changes which classes arrive, not what each class looks like, so the
reference resampled with BBSE's class weights should match the window's inputs. That is
what tells it from a covariate shift, which also moves predicted classes (a model that
fails on long inputs may answer one class for all of them) but leaves input drift that no
reweighting of the classes explains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from monitoring.calibration import Calibration
from monitoring.drift import DriftConfig, DriftResult, compute_drift

MIN_DISTANCE = 0.1  # total variation between estimated and reference class priors


@dataclass(frozen=True)
class LabelShiftVerdict:
    detected: bool
    distance: float  # total variation, estimated vs reference priors
    priors: dict[str, float]  # BBSE's estimate for the window
    reference_priors: dict[str, float]
    implied_accuracy: float  # if only the priors moved
    residual: float  # how far the predicted shares are from any pure label shift
    prediction_drift: bool
    input_drift_after_reweighting: bool

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def label_shift_verdict(
    calibration: Calibration,
    reference: pd.DataFrame,
    window: pd.DataFrame,
    drift: DriftResult,
    config: DriftConfig,
    seed: int = 0,
) -> LabelShiftVerdict:
    """Detected when the predicted-label drift test fires, the priors moved by at least
    MIN_DISTANCE, and the window shows no dataset drift against the reweighted reference."""
    shift = calibration.label_shift(window)
    moved = drift.prediction is not None and drift.prediction.drifted
    explained = False
    if moved and shift.distance >= MIN_DISTANCE:
        index = {label: i for i, label in enumerate(calibration.labels)}
        weight = shift.weights[reference["label"].map(index).to_numpy()]
        if weight.sum() <= 0:
            weight = np.ones(len(reference))
        rng = np.random.default_rng(seed)
        rows = rng.choice(len(reference), size=len(reference), p=weight / weight.sum())
        reweighted = compute_drift(reference.iloc[rows], window, config)
        explained = not reweighted.dataset_drift
    labels = calibration.labels
    return LabelShiftVerdict(
        detected=moved and shift.distance >= MIN_DISTANCE and explained,
        distance=shift.distance,
        priors=dict(zip(labels, shift.priors.astype(float).tolist(), strict=True)),
        reference_priors=dict(
            zip(labels, shift.reference_priors.astype(float).tolist(), strict=True)
        ),
        implied_accuracy=shift.implied_accuracy,
        residual=shift.residual,
        prediction_drift=moved,
        input_drift_after_reweighting=moved and shift.distance >= MIN_DISTANCE and not explained,
    )
