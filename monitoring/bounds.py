"""Accuracy a team can act on: a lower bound on each model's accuracy in the window, without
labels, and a corrected estimate once some of the window's rows are labeled.

The rule, fixed before any benchmark ran (README, "Label-free accuracy"):

- **Confidence term** (every model): the ATC share at the 5% quantile of the bootstrapped
  thresholds, minus the *subpopulation margin*: the largest amount by which ATC over-states
  accuracy on the reference's own subpopulations (each domain, and the quarter of rows at
  either end of each input feature), 0 when it never does. Assumes the window's rows are
  no more often confidently wrong than the worst of those subpopulations.
- **Peer term** (a model with peers on the same requests, e.g. shadows), after Rosenfeld &
  Garg's disagreement discrepancy (Dis², 2023) with the peers as critics: reference
  accuracy minus the largest rise, over peers, of the disagreement with the model from the
  reference rows they share to the window's requests they both answered (0 when none
  rose), minus a one-sided 95% sampling margin. Assumes the true labels move away from the
  model's answers no faster than at least one peer's answers do, i.e. some peer does not
  share the model's new errors.
- **Label-free bound** = the lower of the two: it holds when either assumption holds.
- **Corrected estimate** once `min_labels` rows of the window are labeled: the
  prediction-powered estimate (Angelopoulos et al., Science 2023) on this finite window.
  ATC's per-row verdict (score above its threshold) stands in for the unlabeled rows, its
  mean error on the labeled rows corrects it, and the labeled rows count as they are:
  accuracy = (Σ_labeled correct + Σ_unlabeled verdict + u · mean_labeled(correct − verdict)) / N
  with u unlabeled rows of N. Its error is u/N times the gap between the labeled and the
  unlabeled rows' mean residual, whose variance for n rows drawn without replacement is
  about (N/u)·sd²/n: the lower bound subtracts Z · √(u/N) · sd(correct − verdict) / √n.
  It assumes the labeled rows are a random sample of the window's rows (labels that arrive
  late for a shifting stream are not). With every row labeled it is live accuracy.
- **The bound** exported as `shiftwatch_accuracy_lower_bound_ratio{model}`: the corrected
  lower bound once the window has `min_labels` labeled rows, else the label-free bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Z = 1.6448536269514722  # one-sided 95% normal quantile
SUBPOPULATION_SHARE = 0.25  # each end of each feature
MIN_SUBPOPULATION_ROWS = 50


@dataclass(frozen=True)
class Corrected:
    """The prediction-powered estimate of the window's accuracy from its labeled rows."""

    estimate: float
    lower: float
    labeled: int
    rows: int

    def to_dict(self) -> dict:
        return self.__dict__.copy()


@dataclass(frozen=True)
class PeerTerm:
    value: float
    peer: str  # whose disagreement rise set it
    rise: float  # that rise, window minus reference disagreement (0 when it fell)


@dataclass(frozen=True)
class AccuracyBound:
    """One model's bounds on one window."""

    confidence_term: float
    peer_term: PeerTerm | None
    corrected: Corrected | None  # None under the minimum of labeled rows

    @property
    def label_free(self) -> float:
        if self.peer_term is None:
            return self.confidence_term
        return min(self.confidence_term, self.peer_term.value)

    @property
    def basis(self) -> str:
        return "label_free" if self.corrected is None else "labels"

    @property
    def value(self) -> float:
        """The bound the monitor exports and alerts on."""
        return self.label_free if self.corrected is None else self.corrected.lower

    def to_dict(self) -> dict:
        return {
            "value": self.value,
            "basis": self.basis,
            "label_free": self.label_free,
            "confidence_term": self.confidence_term,
            "peer_term": None if self.peer_term is None else self.peer_term.__dict__.copy(),
            "corrected": None if self.corrected is None else self.corrected.to_dict(),
        }


def subpopulation_margin(
    verdict: np.ndarray,
    correct: np.ndarray,
    groups: dict[str, np.ndarray],
    features: dict[str, np.ndarray],
) -> float:
    """The largest over-statement of ATC (share of `verdict` minus accuracy) on the reference's
    subpopulations: each group (a domain) of at least MIN_SUBPOPULATION_ROWS rows, and the
    quarter of rows with the lowest and with the highest value of each feature; 0 when it
    never over-states.

    Args:
        verdict: per reference row, True when its score clears the ATC threshold.
        correct: per reference row, True when the model was right.
        groups: name -> boolean row mask.
        features: name -> per-row values.
    """
    masks = [mask for mask in groups.values() if mask.sum() >= MIN_SUBPOPULATION_ROWS]
    k = int(len(correct) * SUBPOPULATION_SHARE)
    if k >= MIN_SUBPOPULATION_ROWS:
        for values in features.values():
            order = np.argsort(values, kind="stable")
            for rows in (order[:k], order[-k:]):
                mask = np.zeros(len(correct), dtype=bool)
                mask[rows] = True
                masks.append(mask)
    over = [float(verdict[m].mean() - correct[m].mean()) for m in masks]
    return max([0.0, *over])


def confidence_term(shares: np.ndarray, margin: float) -> float:
    """ATC's share at the 5% quantile of its bootstrapped thresholds, minus `margin`."""
    return float(np.clip(np.quantile(shares, 0.05) - margin, 0.0, 1.0))


def peer_term(
    reference_accuracy: float,
    reference_rows: int,
    disagreements: dict[str, tuple[float, int, float, int]],
) -> PeerTerm | None:
    """The Dis² bound with the peers as critics; None without a peer.

    Args:
        reference_accuracy: the model's accuracy on its `reference_rows` reference rows.
        disagreements: peer -> (disagreement on the reference rows both answered, those
            rows, disagreement on the window's requests both answered, those requests).
    """
    terms = []
    for peer, (on_reference, shared_reference, on_window, shared_window) in disagreements.items():
        rise = max(0.0, on_window - on_reference)
        noise = (
            _variance(reference_accuracy, reference_rows)
            + _variance(on_reference, shared_reference)
            + _variance(on_window, shared_window)
        )
        value = float(np.clip(reference_accuracy - rise - Z * np.sqrt(noise), 0.0, 1.0))
        terms.append(PeerTerm(value, peer, rise))
    return min(terms, key=lambda t: t.value, default=None)


def corrected_estimate(verdict: np.ndarray, correct: np.ndarray, labeled: np.ndarray) -> Corrected:
    """The prediction-powered accuracy of a finite window (see the module docstring).

    Args:
        verdict: per window row, ATC's verdict (1.0 when the score clears the threshold).
        correct: per window row, 1.0 when right; read only where `labeled`.
        labeled: per window row, True when its label has arrived (at least 2 rows).
    """
    rows, n = len(verdict), int(labeled.sum())
    residual = correct[labeled] - verdict[labeled]
    unlabeled = rows - n
    total = correct[labeled].sum() + verdict[~labeled].sum() + unlabeled * residual.mean()
    estimate = float(np.clip(total / rows, 0.0, 1.0))
    spread = residual.std(ddof=1) if n > 1 else 1.0
    lower = estimate - Z * np.sqrt(unlabeled / rows) * spread / np.sqrt(n)
    return Corrected(estimate, float(np.clip(lower, 0.0, 1.0)), n, rows)


def _variance(rate: float, rows: int) -> float:
    """The sampling variance of a share measured on `rows` rows."""
    return rate * (1.0 - rate) / max(1, rows)
