"""Label shift as its own verdict: predicted classes moved, BBSE says the class priors moved,
and the inputs are what the reference would look like under the new priors.

A pure label shift changes which classes arrive, not what each class looks like, so the
reference resampled with BBSE's class weights should match the window's inputs. That is
what tells it from a covariate shift, which also moves predicted classes (a model that
fails on long inputs may answer one class for all of them) but leaves input drift that no
reweighting of the classes explains.

"Match" means every tested column and the embeddings, not most columns: each is a function
of the input, so under a pure label shift none of them moves once the classes are
reweighted. The monitor's dataset-drift rule (half the columns) let a shift of the
vocabulary alone (two of seven columns) pass as explained, and a ramp whose shifted rows
were still a minority of the window moved too few columns to count. The embeddings' mean
sees a minority of unlike rows that no single column does. With k tests asked, the K-S
tests run at 0.05 / k and the embedding test at its 1 − 0.05 / k bootstrap quantile
(Bonferroni), so the p-value tests together refuse a true label shift for a false alarm at
most 5% of the time; the distance-threshold columns (PSI, Jensen-Shannon) keep their
thresholds, which have no false-alarm rate to divide.

What the verdict assumes: each class's inputs look as they did in the reference (the
definition of label shift), the reference confusion matrix still holds (BBSE), and the
window has enough rows for the tests (min_estimate_rows).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    embedding_columns: list[str] | None = None,
    seed: int = 0,
) -> LabelShiftVerdict:
    """Detected when the predicted-label drift test fires, the priors moved by at least
    MIN_DISTANCE, and neither a column nor the embeddings of the window drift against the
    reweighted reference."""
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
        tests = len(config.columns) + bool(embedding_columns)
        reweighted = compute_drift(
            reference.iloc[rows], window, bonferroni(config, tests), embedding_columns
        )
        drifted = [column.drifted for column in reweighted.columns.values()]
        if reweighted.embedding is not None:
            drifted.append(reweighted.embedding.drifted)
        explained = not any(drifted)
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


def bonferroni(config: DriftConfig, tests: int) -> DriftConfig:
    """`config` with each K-S test at its p-value threshold / `tests`, and the embedding test
    at the 1 − (1 − quantile) / `tests` bootstrap quantile."""
    columns = {
        name: replace(test, threshold=test.threshold / tests) if test.method == "ks" else test
        for name, test in config.columns.items()
    }
    quantile = 1 - (1 - config.embedding_quantile) / tests
    return replace(config, columns=columns, embedding_quantile=quantile)
