"""Each label-free estimator on constructed cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring import estimators as est
from monitoring.calibration import Calibration
from monitoring.drift import ColumnTest, DriftConfig, compute_drift
from monitoring.label_shift import label_shift_verdict
from shiftwatch.bundle import probability_columns
from shiftwatch.encoding import entropy, softmax

pytestmark = pytest.mark.unit

LABELS = ["neg", "neu", "pos"]


def calibrated_rows(n: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels drawn from those probabilities: a calibrated model."""
    rng = np.random.default_rng(seed)
    probs = softmax(rng.normal(0, spread, size=(n, len(LABELS))))
    labels = (rng.random(n)[:, None] > probs.cumsum(axis=1)).sum(axis=1)
    return probs, labels


def frame(probs: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """Rows shaped like reference.parquet (and a window: probabilities in sorted order)."""
    names = np.asarray(LABELS)
    out = pd.DataFrame(
        {
            "predicted_label": names[probs.argmax(1)],
            "label": names[labels],
            "confidence": probs.max(1),
            "entropy": entropy(probs),
            "probabilities": list(probs[:, np.argsort(LABELS)].astype(np.float32)),
        }
    )
    for column, values in zip(probability_columns(len(LABELS)), probs.T, strict=True):
        out[column] = values
    return out


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(20_000, 3))
    labels = (rng.random(20_000)[:, None] > softmax(logits / 2.0).cumsum(axis=1)).sum(axis=1)
    # The model reports softmax(logits): twice as sharp as the truth.
    assert est.fit_temperature(softmax(logits), labels) == pytest.approx(2.0, abs=0.1)


def test_atc_threshold_leaves_the_reference_accuracy_above_it() -> None:
    score = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    correct = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1])  # 70% right
    threshold = est.atc_threshold(score, correct)
    assert threshold == pytest.approx(0.3)  # 7 of 10 scores are above 0.3
    assert est.atc(threshold, score) == pytest.approx(0.7)
    assert est.atc(threshold, np.array([0.2, 0.35, 0.9, 0.1])) == pytest.approx(0.5)
    assert est.atc(np.array([0.0, 0.5]), score).tolist() == pytest.approx([1.0, 0.5])


def test_confidence_estimators_follow_a_calibrated_model_under_covariate_shift() -> None:
    """Reference confident (90%-ish), window much less so; the model stays calibrated, so its
    realised window accuracy is known and every confidence-based estimator must find it."""
    ref_probs, ref_labels = calibrated_rows(5000, 3.0, seed=1)
    win_probs, win_labels = calibrated_rows(20_000, 1.0, seed=2)
    calibration = Calibration.fit(frame(ref_probs, ref_labels), LABELS)
    assert calibration.temperature == pytest.approx(1.0, abs=0.1)  # already calibrated
    realised = float((win_probs.argmax(1) == win_labels).mean())
    reference_accuracy = float((ref_probs.argmax(1) == ref_labels).mean())
    assert reference_accuracy - realised > 0.2  # a real fall to estimate
    estimates = calibration.estimates(calibration.scores(frame(win_probs, win_labels)))
    # DoC is unbiased for a calibrated model: noise only (~1 point at these sizes).
    assert estimates["doc"] == pytest.approx(realised, abs=0.02)
    # ATC is not: its threshold sits low (a 90% share of rows lies above it), and when the
    # whole confidence distribution slides down, far fewer rows clear it than are right.
    assert estimates["atc_max_confidence"] < realised - 0.1


def test_atc_is_exact_when_its_score_separates_right_from_wrong() -> None:
    """Easy rows (confident, always right) and hard rows (unsure, always wrong): a shift
    that changes their mix moves accuracy and ATC's share above the threshold together."""
    rng = np.random.default_rng(11)

    def mix(easy_share: float, n: int) -> pd.DataFrame:
        easy = rng.random(n) < easy_share
        top = np.where(easy, rng.uniform(0.9, 0.99, n), rng.uniform(0.4, 0.5, n))
        probs = np.column_stack([top, (1 - top) / 2, (1 - top) / 2])
        labels = np.where(easy, 0, 1)  # the model always answers class 0
        return frame(probs, labels)

    calibration = Calibration.fit(mix(0.9, 2000), LABELS)
    window = mix(0.6, 2000)
    realised = float((window["label"] == window["predicted_label"]).mean())
    for name in ("atc_max_confidence", "atc_negative_entropy"):
        assert calibration.estimates(calibration.scores(window))[name] == pytest.approx(
            realised, abs=1e-9
        )


def test_calibration_is_cross_fitted_and_bootstrapped() -> None:
    probs, labels = calibrated_rows(1000, 3.0, seed=3)
    calibration = Calibration.fit(frame(probs, labels), LABELS)
    summary = calibration.to_dict()
    for name, (low, high) in summary["threshold_intervals"].items():
        assert low <= calibration.thresholds[name] <= high and low < high
    # Held-out folds of 200 rows: errors of a couple of points, never zero by construction.
    assert all(0 < error < 0.06 for error in summary["crossfit_error"].values())


def test_a_reference_without_probabilities_gives_uncalibrated_estimates() -> None:
    probs, labels = calibrated_rows(1000, 3.0, seed=4)
    reference = frame(probs, labels).drop(columns=probability_columns(len(LABELS)))
    calibration = Calibration.fit(reference, LABELS)
    assert not calibration.calibrated and calibration.temperature == 1.0
    assert calibration.estimates(calibration.scores(reference))[
        "atc_max_confidence"
    ] == pytest.approx(calibration.reference_accuracy, abs=0.01)


def pure_label_shift(priors: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True labels with `priors`; predictions from a fixed p(predicted | true)."""
    given_true = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
    rng = np.random.default_rng(seed)
    true = rng.choice(3, size=n, p=priors)
    predicted = (rng.random(n)[:, None] > given_true[true].cumsum(axis=1)).sum(axis=1)
    return predicted, true


def test_bbse_recovers_the_priors_of_a_pure_label_shift() -> None:
    ref_pred, ref_true = pure_label_shift(np.array([1 / 3, 1 / 3, 1 / 3]), 5000, seed=5)
    target = np.array([0.6, 0.3, 0.1])
    win_pred, win_true = pure_label_shift(target, 20_000, seed=6)
    shift = est.bbse(
        est.confusion(ref_pred, ref_true, 3), np.bincount(win_pred, minlength=3) / len(win_pred)
    )
    # Stated tolerance: 0.03 per class (reference confusion from 5000 rows, window of 20000).
    assert shift.priors == pytest.approx(target, abs=0.03)
    assert shift.distance == pytest.approx(0.5 * np.abs(target - 1 / 3).sum(), abs=0.03)
    assert shift.implied_accuracy == pytest.approx((win_pred == win_true).mean(), abs=0.02)
    assert shift.residual < 0.02


def test_shadows_that_agree_perfectly_leave_the_reference_accuracy() -> None:
    accuracy = {"a": 0.9, "b": 0.85}
    assert est.agreement(accuracy, {("a", "b"): (0.0, 0.0)}) == pytest.approx(accuracy)


def test_agreement_finds_which_model_fell() -> None:
    """Model a errs on 20% more rows, b and c do not, and errors do not coincide: the
    disagreement of (a, b) and (a, c) rises by 0.2 and (b, c) stays."""
    accuracy = {"a": 0.95, "b": 0.93, "c": 0.9}
    disagreement = {("a", "b"): (0.12, 0.32), ("a", "c"): (0.15, 0.35), ("b", "c"): (0.17, 0.17)}
    assert est.agreement(accuracy, disagreement) == pytest.approx({"a": 0.75, "b": 0.93, "c": 0.9})
    # One pair: the rise is split evenly between the two models.
    assert est.agreement(accuracy, {("a", "b"): (0.1, 0.3)}) == pytest.approx(
        {"a": 0.85, "b": 0.83}
    )


def test_disagreement_rate_needs_enough_shared_rows() -> None:
    a = {i: "x" for i in range(100)}
    b = {i: "x" if i % 4 else "y" for i in range(50, 150)}
    assert est.disagreement_rate(a, b, min_rows=50) == pytest.approx(12 / 50)  # 52, 56, .., 96
    assert est.disagreement_rate(a, b, min_rows=51) is None


def labeled_lengths(priors, n, seed, stretch=1.0):
    """Rows whose `length` depends on the class (class k around 10 * (k + 1)); a model that
    predicts the true class 90% of the time."""
    rng = np.random.default_rng(seed)
    true = rng.choice(3, size=n, p=priors)
    wrong = rng.random(n) < 0.1
    predicted = np.where(wrong, (true + 1) % 3, true)
    probs = np.full((n, 3), 0.05)
    probs[np.arange(n), predicted] = 0.9
    rows = frame(probs, true)
    rows["length"] = stretch * rng.normal(10 * (true + 1), 2.0)
    return rows


def test_label_shift_verdict_tells_label_shift_from_covariate_shift() -> None:
    config = DriftConfig(columns={"length": ColumnTest("ks", 0.05)})
    reference = labeled_lengths([1 / 3, 1 / 3, 1 / 3], 3000, seed=7)
    calibration = Calibration.fit(reference, LABELS)

    label_shift = labeled_lengths([0.7, 0.2, 0.1], 1000, seed=8)
    drift = compute_drift(reference, label_shift, config)
    assert drift.dataset_drift  # the plain reference sees the new class mix as input drift
    verdict = label_shift_verdict(calibration, reference, label_shift, drift, config)
    assert verdict.detected and not verdict.input_drift_after_reweighting
    assert verdict.priors["neg"] == pytest.approx(0.7, abs=0.05)

    covariate = labeled_lengths([0.7, 0.2, 0.1], 1000, seed=9, stretch=1.5)
    drift = compute_drift(reference, covariate, config)
    verdict = label_shift_verdict(calibration, reference, covariate, drift, config)
    assert verdict.prediction_drift and not verdict.detected
    assert verdict.input_drift_after_reweighting

    control = labeled_lengths([1 / 3, 1 / 3, 1 / 3], 1000, seed=10)
    drift = compute_drift(reference, control, config)
    assert not label_shift_verdict(calibration, reference, control, drift, config).detected


def test_label_shift_verdict_refuses_a_shift_that_moves_a_minority_of_columns() -> None:
    """A new class mix plus a vocabulary shift: after reweighting the classes, one column of
    five still drifts. Half the columns (the dataset-drift rule) would call it explained:
    the verdict's rule asks every column."""
    columns = {name: ColumnTest("ks", 0.05) for name in ("length", "a", "b", "c", "oov")}
    config = DriftConfig(columns=columns)

    def rows(priors, n, seed, oov):
        out = labeled_lengths(priors, n, seed)
        rng = np.random.default_rng(seed + 100)
        for name in ("a", "b", "c"):
            out[name] = rng.normal(0, 1, n)
        out["oov"] = rng.normal(oov, 1, n)
        return out

    reference = rows([1 / 3, 1 / 3, 1 / 3], 3000, seed=11, oov=0.0)
    calibration = Calibration.fit(reference, LABELS)
    vocabulary = rows([0.7, 0.2, 0.1], 1000, seed=12, oov=1.0)
    drift = compute_drift(reference, vocabulary, config)
    assert not drift.dataset_drift  # 2 of 5 columns: length (the class mix) and oov
    verdict = label_shift_verdict(calibration, reference, vocabulary, drift, config)
    assert verdict.prediction_drift and not verdict.detected
    assert verdict.input_drift_after_reweighting
    pure = rows([0.7, 0.2, 0.1], 1000, seed=13, oov=0.0)
    drift = compute_drift(reference, pure, config)
    assert label_shift_verdict(calibration, reference, pure, drift, config).detected


def test_label_shift_verdict_asks_the_embeddings_too() -> None:
    """A new class mix where a third of the rows are unlike any reference row in the model's
    embedding space but not in any tested column: not a label shift."""
    config = DriftConfig(columns={"length": ColumnTest("ks", 0.05)})
    dims = [f"embedding_{i}" for i in range(4)]

    def rows(priors, n, seed, unlike=0.0):
        out = labeled_lengths(priors, n, seed)
        rng = np.random.default_rng(seed + 200)
        true = out["label"].map({label: i for i, label in enumerate(LABELS)}).to_numpy()
        vectors = rng.normal(0, 1, (n, 4)) + true[:, None]
        vectors[: int(unlike * n), 0] += 3.0
        out[dims] = vectors
        return out

    reference = rows([1 / 3, 1 / 3, 1 / 3], 3000, seed=21)
    calibration = Calibration.fit(reference, LABELS)
    for window, expected in (
        (rows([0.7, 0.2, 0.1], 1000, seed=22, unlike=1 / 3), False),
        (rows([0.7, 0.2, 0.1], 1000, seed=23), True),
    ):
        drift = compute_drift(reference, window, config, dims)
        verdict = label_shift_verdict(calibration, reference, window, drift, config, dims)
        assert verdict.prediction_drift and verdict.detected is expected
        # The columns alone explain both.
        alone = label_shift_verdict(calibration, reference, window, drift, config)
        assert alone.detected
