"""What each model's label-free estimates need from its reference, and their values on a window.

The reference is both the fit and the check, so everything fitted on it is also
cross-fitted: `Calibration.fit` fits the temperature and the ATC thresholds on all rows
(what the monitor uses), reports each estimator's error on held-out folds of the
reference (what it is worth in-domain), and bootstraps the ATC thresholds (how sure
they are: a 98%-accurate model's threshold rests on its few reference errors).

The headline estimate, exported as `shiftwatch_estimated_accuracy_ratio`, is chosen by a
rule fixed before any result was measured: ATC with the negative-entropy score after
temperature scaling, for every model. Why: it is the most accurate variant in Garg et
al.'s comparison; it needs only the model's own outputs, so it is defined for every model
with or without shadows; agreement assumes peers that fail together or independently
along one line (Jiang et al.; Baek et al.), which is exactly what this project's variants
are built to break, and BBSE assumes only the class priors moved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from monitoring import estimators as est
from shiftwatch.bundle import probability_columns

HEADLINE = "atc_negative_entropy"
SCORES = {"atc_max_confidence": est.max_confidence, "atc_negative_entropy": est.negative_entropy}
CONFIDENCE_ESTIMATORS = (*SCORES, "doc")


@dataclass(frozen=True)
class Calibration:
    labels: list[str]
    temperature: float  # 1.0 when the reference has no probabilities (uncalibrated)
    calibrated: bool
    reference_accuracy: float
    reference_confidence: float  # mean calibrated max probability (DoC)
    thresholds: dict[str, float]  # ATC, per score
    bootstrap_thresholds: dict[str, np.ndarray]  # ATC, per score: one per resample
    crossfit_error: dict[str, float]  # mean |estimate - accuracy| over held-out folds
    joint: np.ndarray  # reference confusion matrix, for BBSE

    @classmethod
    def fit(cls, reference: pd.DataFrame, labels: list[str], folds: int = 5, seed: int = 0):
        """Fit on `reference` (reference.parquet); `labels` in the bundle's order."""
        index = {label: i for i, label in enumerate(labels)}
        true = reference["label"].map(index).to_numpy()
        predicted = reference["predicted_label"].map(index).to_numpy()
        correct = true == predicted
        columns = probability_columns(len(labels))
        probabilities = (
            reference[columns].to_numpy(dtype=np.float64)
            if set(columns) <= set(reference.columns)
            else None
        )
        temperature = 1.0 if probabilities is None else est.fit_temperature(probabilities, true)
        scores = window_scores(reference, probabilities, temperature)
        thresholds = {name: est.atc_threshold(scores[name], correct) for name in SCORES}
        rng = np.random.default_rng(seed)
        resamples = rng.integers(0, len(reference), size=(200, len(reference)))
        return cls(
            labels=list(labels),
            temperature=temperature,
            calibrated=probabilities is not None,
            reference_accuracy=float(correct.mean()),
            reference_confidence=float(scores["confidence"].mean()),
            thresholds=thresholds,
            bootstrap_thresholds={
                name: np.array([est.atc_threshold(scores[name][r], correct[r]) for r in resamples])
                for name in SCORES
            },
            crossfit_error=_crossfit(reference, probabilities, true, correct, folds, rng),
            joint=est.confusion(predicted, true, len(labels)),
        )

    def usable(self, window: pd.DataFrame) -> pd.DataFrame:
        """The rows the estimates can use: when calibrated, those with probabilities (rows
        a state file kept from before they were stored have none, and their uncalibrated
        scores do not compare with calibrated thresholds)."""
        if not self.calibrated or not len(window):
            return window
        return window[~np.isnan(window_probabilities(window, self.labels)).any(axis=1)]

    def scores(self, window: pd.DataFrame) -> dict[str, np.ndarray]:
        """The calibrated scores of `window` rows (columns of `MonitorState.window`), computed
        once for `estimates` and `interval`."""
        return window_scores(window, window_probabilities(window, self.labels), self.temperature)

    def estimates(self, scores: dict[str, np.ndarray]) -> dict[str, float]:
        """ATC (both scores) and DoC from a window's `scores`."""
        out = {name: est.atc(self.thresholds[name], scores[name]) for name in SCORES}
        out["doc"] = est.doc(
            self.reference_accuracy, self.reference_confidence, scores["confidence"]
        )
        return out

    def interval(self, name: str, scores: dict[str, np.ndarray]) -> tuple[float, float]:
        """5-95% of the ATC estimate over the bootstrapped thresholds, from a window's `scores`."""
        shares = est.atc(self.bootstrap_thresholds[name], scores[name])
        return float(np.quantile(shares, 0.05)), float(np.quantile(shares, 0.95))

    def label_shift(self, window: pd.DataFrame) -> est.LabelShiftEstimate:
        index = {label: i for i, label in enumerate(self.labels)}
        predicted = window["predicted_label"].map(index).dropna().astype(int).to_numpy()
        share = np.bincount(predicted, minlength=len(self.labels)) / max(1, len(predicted))
        return est.bbse(self.joint, share)

    def to_dict(self) -> dict:
        return {
            "temperature": self.temperature,
            "calibrated": self.calibrated,
            "thresholds": self.thresholds,
            "threshold_intervals": {
                name: [float(np.quantile(t, 0.05)), float(np.quantile(t, 0.95))]
                for name, t in self.bootstrap_thresholds.items()
            },
            "crossfit_error": self.crossfit_error,
        }


@dataclass(frozen=True)
class Estimate:
    """One estimator on one window."""

    estimate: float | None  # on every window row; None under the minimum of rows
    paired: float | None  # on the labeled rows only
    error: float | None  # paired − live accuracy on those same rows
    interval: tuple[float, float] | None = None  # ATC's 5–95% interval, on every row

    def to_dict(self) -> dict:
        out = {"estimate": self.estimate, "paired": self.paired, "error": self.error}
        if self.interval is not None:
            out["interval"] = list(self.interval)
        return out


def window_estimates(
    calibration: Calibration,
    frame: pd.DataFrame,
    labeled: pd.DataFrame,
    live: float,
    agreed: tuple[float | None, float | None],
    minimum: int,
) -> dict[str, Estimate]:
    """Every estimator on all window rows (`estimate`) and on the labeled rows (`paired`),
    with `error` = paired − `live` (accuracy on those same rows); none from fewer than
    `minimum` rows. `agreed`: the agreement estimate on all and on labeled rows."""
    frame, labeled = calibration.usable(frame), calibration.usable(labeled)
    on_all, on_labeled, intervals = {}, {}, {}
    for rows, out, agreement, with_intervals in (
        (frame, on_all, agreed[0], True),
        (labeled, on_labeled, agreed[1], False),
    ):
        if len(rows) >= minimum:
            scores = calibration.scores(rows)
            out.update(calibration.estimates(scores))
            out["bbse"] = calibration.label_shift(rows).implied_accuracy
            if with_intervals:  # the exported estimate's uncertainty (all rows)
                intervals = {name: tuple(calibration.interval(name, scores)) for name in SCORES}
        if agreement is not None:
            out["agreement"] = agreement
    estimates = {}
    for name in sorted(on_all.keys() | on_labeled.keys()):
        paired = on_labeled.get(name)
        error = None if paired is None else paired - live
        estimates[name] = Estimate(on_all.get(name), paired, error, intervals.get(name))
    return estimates


def agreement_estimates(
    reference_predictions: dict[str, dict[str, str]],
    reference_accuracy: dict[str, float],
    frames: dict[str, pd.DataFrame],
    minimum: int,
) -> dict[str, tuple[float | None, float | None]]:
    """Each model's agreement estimate (see estimators.agreement) on all window rows and on
    the labeled ones, from the models' disagreement on the reference rows they share
    (`sequence_id` -> predicted label) and on the window's requests they all answered;
    (None, None) for a model without such a peer, or with fewer than `minimum` shared rows."""
    result: dict[str, list] = {name: [None, None] for name in frames}
    for position, labeled_only in ((0, False), (1, True)):
        answers = {}
        for name, frame in frames.items():
            rows = frame[frame["label"].notna()] if labeled_only and len(frame) else frame
            answers[name] = (
                dict(zip(rows["request_id"], rows["predicted_label"], strict=True))
                if len(rows)
                else {}
            )
        disagreement = {}
        for a, b in est.pairs(list(frames)):
            on_reference = est.disagreement_rate(
                reference_predictions[a], reference_predictions[b], minimum
            )
            on_window = est.disagreement_rate(answers[a], answers[b], minimum)
            if on_reference is not None and on_window is not None:
                disagreement[(a, b)] = (on_reference, on_window)
        for name, value in est.agreement(reference_accuracy, disagreement).items():
            result[name][position] = value
    return {name: (all_rows, labeled) for name, (all_rows, labeled) in result.items()}


def window_probabilities(window: pd.DataFrame, labels: list[str]) -> np.ndarray | None:
    """The window's class probabilities (rows x labels, in `labels` order; the state keeps
    them in sorted label order), NaN rows where an event had none or another label count."""
    if "probabilities" not in window or not len(window):
        return None
    rank = {label: i for i, label in enumerate(sorted(labels))}
    order = [rank[label] for label in labels]
    missing = np.full(len(labels), np.nan)
    return np.vstack(
        [
            missing if p is None or len(p) != len(labels) else p[order]
            for p in window["probabilities"]
        ]
    ).astype(np.float64)


def window_scores(
    frame: pd.DataFrame, probabilities: np.ndarray | None, temperature: float
) -> dict[str, np.ndarray]:
    """Calibrated scores per row: max probability (`confidence` and the ATC score) and
    negative entropy (uncalibrated for rows without probabilities: see `usable`)."""
    confidence = frame["confidence"].to_numpy(dtype=np.float64)
    negative_entropy = -frame["entropy"].to_numpy(dtype=np.float64)
    if probabilities is not None and temperature != 1.0:
        known = ~np.isnan(probabilities).any(axis=1)
        if known.any():
            scaled = est.scale(probabilities[known], temperature)
            confidence = confidence.copy()
            negative_entropy = negative_entropy.copy()
            confidence[known] = est.max_confidence(scaled)
            negative_entropy[known] = est.negative_entropy(scaled)
    return {
        "confidence": confidence,
        "atc_max_confidence": confidence,
        "atc_negative_entropy": negative_entropy,
    }


def _crossfit(reference, probabilities, true, correct, folds, rng) -> dict[str, float]:
    """Each confidence estimator fitted on k-1 folds, its |error| on the held-out one."""
    fold_of = rng.permutation(len(reference)) % folds
    errors: dict[str, list[float]] = {name: [] for name in CONFIDENCE_ESTIMATORS}
    for fold in range(folds):
        fit, held = fold_of != fold, fold_of == fold
        temperature = (
            1.0 if probabilities is None else est.fit_temperature(probabilities[fit], true[fit])
        )
        scores = window_scores(reference, probabilities, temperature)
        accuracy = float(correct[held].mean())
        for name in SCORES:
            threshold = est.atc_threshold(scores[name][fit], correct[fit])
            errors[name].append(abs(est.atc(threshold, scores[name][held]) - accuracy))
        estimate = est.doc(
            float(correct[fit].mean()),
            float(scores["confidence"][fit].mean()),
            scores["confidence"][held],
        )
        errors["doc"].append(abs(estimate - accuracy))
    return {name: float(np.mean(values)) for name, values in errors.items()}
