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

from monitoring import bounds
from monitoring import estimators as est
from shiftwatch.bundle import probability_columns

HEADLINE = "atc_negative_entropy"
# Input features whose ends make the subpopulations of the bound's margin (monitoring/bounds.py)
SUBPOPULATION_FEATURES = ("length", "oov_share", "distinct_share", "mean_log_rank")
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
    subpopulation_margin: float  # the headline's worst over-statement on reference subsets
    rows: int  # reference rows

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
        verdict = scores[HEADLINE] > thresholds[HEADLINE]
        domains = reference["domain"].fillna("unknown").to_numpy() if "domain" in reference else []
        margin = bounds.subpopulation_margin(
            verdict,
            correct,
            {str(d): domains == d for d in sorted(set(domains))},
            {
                f: reference[f].to_numpy(dtype=np.float64)
                for f in SUBPOPULATION_FEATURES
                if f in reference
            },
        )
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
            subpopulation_margin=margin,
            rows=len(reference),
        )

    def scored(self, window: pd.DataFrame) -> Scored:
        """The rows the estimates can use, with their calibrated scores, computed once: when
        calibrated, the rows with probabilities (rows a state file kept from before they were
        stored have none, and their uncalibrated scores do not compare with calibrated
        thresholds)."""
        probabilities = window_probabilities(window, self.labels)
        if self.calibrated and probabilities is not None:
            keep = ~np.isnan(probabilities).any(axis=1)
            window, probabilities = window[keep], probabilities[keep]
        return Scored(window, window_scores(window, probabilities, self.temperature))

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
            "subpopulation_margin": self.subpopulation_margin,
        }


@dataclass(frozen=True)
class Scored:
    """A window's usable rows and their calibrated scores (see `Calibration.scored`)."""

    frame: pd.DataFrame
    scores: dict[str, np.ndarray]

    def where(self, mask: np.ndarray) -> Scored:
        return Scored(self.frame[mask], {name: s[mask] for name, s in self.scores.items()})

    @property
    def labeled(self) -> Scored:
        return self.where(self.frame["label"].notna().to_numpy())


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
    window: Scored,
    live: float,
    agreed: tuple[float | None, float | None],
    minimum: int,
) -> dict[str, Estimate]:
    """Every estimator on all window rows (`estimate`) and on the labeled rows (`paired`),
    with `error` = paired − `live` (accuracy on those same rows); none from fewer than
    `minimum` rows. `agreed`: the agreement estimate on all and on labeled rows."""
    on_all, on_labeled, intervals = {}, {}, {}
    for rows, out, agreement, with_intervals in (
        (window, on_all, agreed[0], True),
        (window.labeled, on_labeled, agreed[1], False),
    ):
        if len(rows.frame) >= minimum:
            out.update(calibration.estimates(rows.scores))
            out["bbse"] = calibration.label_shift(rows.frame).implied_accuracy
            if with_intervals:  # the exported estimate's uncertainty (all rows)
                intervals = {
                    name: tuple(calibration.interval(name, rows.scores)) for name in SCORES
                }
        if agreement is not None:
            out["agreement"] = agreement
    estimates = {}
    for name in sorted(on_all.keys() | on_labeled.keys()):
        paired = on_labeled.get(name)
        error = None if paired is None else paired - live
        estimates[name] = Estimate(on_all.get(name), paired, error, intervals.get(name))
    return estimates


def window_bound(
    calibration: Calibration,
    window: Scored,
    peers: dict[str, tuple[float, int, float, int]],
    minimum: int,
    min_labels: int,
) -> bounds.AccuracyBound | None:
    """The model's accuracy bounds on its window (monitoring/bounds.py); None from fewer than
    `minimum` usable rows. `peers`: see `peer_disagreements`."""
    frame, scores = window.frame, window.scores[HEADLINE]
    if len(frame) < minimum:
        return None
    shares = est.atc(calibration.bootstrap_thresholds[HEADLINE], scores)
    labeled = frame["label"].notna().to_numpy()
    corrected = None
    if labeled.sum() >= min_labels:
        verdict = (scores > calibration.thresholds[HEADLINE]).astype(np.float64)
        correct = (frame["label"] == frame["predicted_label"]).to_numpy(dtype=np.float64)
        corrected = bounds.corrected_estimate(verdict, correct, labeled)
    return bounds.AccuracyBound(
        confidence_term=bounds.confidence_term(shares, calibration.subpopulation_margin),
        peer_term=bounds.peer_term(calibration.reference_accuracy, calibration.rows, peers),
        corrected=corrected,
    )


def peer_disagreements(
    reference_predictions: dict[str, dict[str, str]],
    frames: dict[str, pd.DataFrame],
    minimum: int,
) -> dict[str, dict[str, tuple[float, int, float, int]]]:
    """For each model, per peer: (disagreement on the reference rows both answered, those
    rows, disagreement on the window's requests both answered, those requests); peers with
    fewer than `minimum` shared rows on either side are left out."""
    answers = {
        name: dict(zip(frame["request_id"], frame["predicted_label"], strict=True))
        if len(frame)
        else {}
        for name, frame in frames.items()
    }
    result: dict[str, dict[str, tuple[float, int, float, int]]] = {name: {} for name in frames}
    for a, b in est.pairs(list(frames)):
        on_reference = est.disagreement(reference_predictions[a], reference_predictions[b])
        on_window = est.disagreement(answers[a], answers[b])
        if min(on_reference[1], on_window[1]) >= minimum:
            result[a][b] = (*on_reference, *on_window)
            result[b][a] = (*on_reference, *on_window)
    return result


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
    missing = np.full(len(labels), np.nan, dtype=np.float32)
    rows = [
        p if p is not None and len(p) == len(labels) else missing for p in window["probabilities"]
    ]
    return np.stack(rows).astype(np.float64)[:, order]


def window_scores(
    frame: pd.DataFrame, probabilities: np.ndarray | None, temperature: float
) -> dict[str, np.ndarray]:
    """Calibrated scores per row: max probability (`confidence` and the ATC score) and
    negative entropy (uncalibrated for rows without probabilities: see `Calibration.scored`)."""
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
