"""Label-free accuracy estimators: small functions of the reference and the current window.

- ATC, Average Thresholded Confidence (Garg et al., ICLR 2022): on the reference, the score
  threshold t above which the share of rows equals the reference accuracy; on the window,
  the share of rows scoring above t. Two scores: the max class probability and the
  negative entropy, each after temperature scaling fit on the reference.
- DoC, Difference of Confidences (Guillory et al., ICCV 2021): the reference accuracy minus
  the fall of the mean (calibrated) confidence from the reference to the window.
- Agreement (after Jiang et al., ICLR 2022, "disagreement ≈ test error"): how much more the
  models disagree on the window than on the reference rows they share, split among them.
- BBSE, Black Box Shift Estimation (Lipton et al., ICML 2018): the window's class priors
  from its predicted-class shares and the reference confusion matrix, and the accuracy
  they imply when only the class priors moved.

Every estimator assumes something about the shift; the docstrings say what, and the
monitor exports them side by side so their disagreement is visible.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from scipy.optimize import minimize_scalar, nnls

_FLOOR = 1e-12  # probabilities are clipped here before the log (float32 softmax underflows)


def log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probabilities, dtype=np.float64), _FLOOR, 1.0))


def scale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature-scaled probabilities: softmax(log p / T) (log p is the logits up to a
    per-row constant, so this is softmax(logits / T))."""
    z = log_probabilities(probabilities) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] minimising the negative log-likelihood of `labels` (class indices)
    under `scale(probabilities, T)` (Guo et al., ICML 2017)."""
    logp = log_probabilities(probabilities)
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        z = logp / np.exp(log_t)
        z -= z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[rows, labels]))

    fit = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(fit.x))


def max_confidence(probabilities: np.ndarray) -> np.ndarray:
    return probabilities.max(axis=1)


def negative_entropy(probabilities: np.ndarray) -> np.ndarray:
    p = np.clip(probabilities, _FLOOR, 1.0)
    return (p * np.log(p)).sum(axis=1)


def atc_threshold(score: np.ndarray, correct: np.ndarray) -> float:
    """t with mean(score > t) == mean(correct) (up to ties) on the reference."""
    accuracy = float(np.mean(correct))
    return float(np.quantile(score, 1.0 - accuracy, method="lower"))


def atc(threshold: float | np.ndarray, score: np.ndarray) -> float | np.ndarray:
    """Share of `score` above `threshold`; an array of thresholds gives one share each."""
    thresholds = np.atleast_1d(threshold)
    shares = (np.asarray(score)[None, :] > thresholds[:, None]).mean(axis=1)
    return shares if np.ndim(threshold) else float(shares[0])


def doc(reference_accuracy: float, reference_confidence: float, confidence: np.ndarray) -> float:
    """DoC: assumes accuracy falls by as much as the mean confidence does."""
    return float(np.clip(reference_accuracy - (reference_confidence - confidence.mean()), 0, 1))


def agreement(
    reference_accuracy: dict[str, float],
    disagreement: dict[tuple[str, str], tuple[float, float]],
) -> dict[str, float]:
    """Accuracy of each model from pairwise disagreement rates.

    Args:
        reference_accuracy: each model's accuracy on the reference.
        disagreement: (model a, model b) -> (disagreement on the reference rows both have,
            disagreement on the window's requests both answered).

    When two models rarely err on the same rows, their disagreement is about the sum of
    their error rates, so the rise of each pair's disagreement is the sum of the rises of
    the two models' errors: one equation per pair, solved by least squares (minimum norm:
    with one pair the rise is split evenly). With three or more models each model's own
    fall is identified. It fails when models err together (they agree on wrong answers,
    so the fall is missed) and when errors are frequent (binary tasks far from the
    reference: coincident errors are common); Baek et al. (NeurIPS 2022) show agreement
    tracks accuracy only where models' accuracies move together along one line.
    """
    models = sorted({m for pair in disagreement for m in pair})
    if not models:
        return {}
    index = {m: i for i, m in enumerate(models)}
    system = np.zeros((len(disagreement), len(models)))
    rise = np.zeros(len(disagreement))
    for row, ((a, b), (on_reference, on_window)) in enumerate(disagreement.items()):
        system[row, [index[a], index[b]]] = 1.0
        rise[row] = on_window - on_reference
    error_rise = np.linalg.lstsq(system, rise, rcond=None)[0]
    return {m: float(np.clip(reference_accuracy[m] - error_rise[index[m]], 0, 1)) for m in models}


def disagreement(a: dict, b: dict) -> tuple[float, int]:
    """Share of keys both mappings hold on which their predicted labels differ (0 when none),
    and how many keys they share."""
    shared = a.keys() & b.keys()
    rate = sum(a[k] != b[k] for k in shared) / len(shared) if shared else 0.0
    return rate, len(shared)


def disagreement_rate(a: dict, b: dict, min_rows: int) -> float | None:
    """`disagreement`'s share; None under `min_rows` shared keys."""
    rate, shared = disagreement(a, b)
    return None if shared < min_rows else rate


def pairs(models: list[str]) -> list[tuple[str, str]]:
    return list(combinations(sorted(models), 2))


@dataclass(frozen=True)
class LabelShiftEstimate:
    """BBSE on one window."""

    priors: np.ndarray  # estimated class priors of the window, in label order
    reference_priors: np.ndarray
    weights: np.ndarray  # priors / reference priors (0 where a class has no reference rows)
    implied_accuracy: float  # the accuracy if only the class priors moved
    distance: float  # total variation between priors and reference priors
    residual: float  # |C w - q|_1: how far the window's predictions are from any pure label shift


def confusion(predicted: np.ndarray, true: np.ndarray, classes: int) -> np.ndarray:
    """Joint distribution C[i, j] = P(predicted i, true j) of class indices."""
    joint = np.zeros((classes, classes))
    np.add.at(joint, (predicted, true), 1.0)
    return joint / max(1, len(predicted))


def bbse(joint: np.ndarray, predicted_share: np.ndarray) -> LabelShiftEstimate:
    """Solve C w = q for importance weights w >= 0 (non-negative least squares).

    Args:
        joint: the reference confusion matrix (see `confusion`).
        predicted_share: the window's predicted-class shares q, in label order.
    """
    reference_priors = joint.sum(axis=0)
    weights, _ = nnls(joint, predicted_share)
    mass = float(weights @ reference_priors)
    if mass > 0:
        weights = weights / mass  # the priors sum to one
    priors = weights * reference_priors
    return LabelShiftEstimate(
        priors=priors,
        reference_priors=reference_priors,
        weights=weights,
        implied_accuracy=float(np.clip(np.trace(joint * weights[None, :]), 0, 1)),
        distance=float(0.5 * np.abs(priors - reference_priors).sum()),
        residual=float(np.abs(joint @ weights - predicted_share).sum()),
    )
