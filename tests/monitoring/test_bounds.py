"""The accuracy bounds (monitoring/bounds.py) on constructed windows whose accuracy is known."""

from __future__ import annotations

import numpy as np
import pytest

from monitoring import bounds
from monitoring import estimators as est

pytestmark = pytest.mark.unit
Z = 1.6448536269514722


def test_subpopulation_margin_is_the_worst_over_statement() -> None:
    # 200 reference rows; ATC's verdict (score above threshold) right on all but the "forum"
    # domain, where 30 of its 100 rows clear the threshold but are wrong.
    verdict = np.ones(200, dtype=bool)
    correct = np.ones(200, dtype=bool)
    correct[100:130] = False
    domain = np.array(["news"] * 100 + ["forum"] * 100)
    groups = {d: domain == d for d in ("news", "forum")}
    assert bounds.subpopulation_margin(verdict, correct, groups, {}) == pytest.approx(0.3)
    # A feature whose highest quarter (rows 150..199) is all right adds no larger margin;
    # one whose lowest quarter is rows 100..149 finds 30 wrong of 50: 0.6.
    features = {"length": np.arange(200.0), "rank": np.r_[np.arange(100, 200), np.arange(100)]}
    assert bounds.subpopulation_margin(verdict, correct, groups, features) == pytest.approx(0.6)
    # Where ATC only under-states, no margin.
    assert bounds.subpopulation_margin(np.zeros(200, bool), correct, groups, features) == 0


def test_the_bound_holds_where_the_score_separates_right_from_wrong() -> None:
    # Reference: the score separates exactly (right iff above 0.5), 80% right.
    score = np.r_[np.linspace(0.6, 1.0, 800), np.linspace(0.0, 0.4, 200)]
    correct = score > 0.5
    threshold = est.atc_threshold(score, correct)
    # A window where the model got worse, its score falling with it: 55% above the threshold.
    window = np.r_[np.full(550, 0.9), np.full(450, 0.2)]
    accuracy = 0.55
    term = bounds.confidence_term(np.array([est.atc(threshold, window)]), margin=0.0)
    assert term == pytest.approx(0.55) and term <= accuracy


def test_a_peer_catches_what_the_score_cannot_see() -> None:
    """The model is confidently wrong on 300 of 1,000 window rows (its score says 100%); a
    peer that stays right disagrees with it exactly there. Reference: 95% right on 2,000
    rows, 5% disagreement with the peer."""
    accuracy = 0.70
    confidence = bounds.confidence_term(np.array([1.0]), margin=0.0)
    assert confidence == 1.0 > accuracy  # the score alone over-states by 30 points
    peer = bounds.peer_term(0.95, 2000, {"peer": (0.05, 2000, 0.30, 1000)})
    noise = np.sqrt(0.95 * 0.05 / 2000 + 0.05 * 0.95 / 2000 + 0.3 * 0.7 / 1000)
    assert peer.value == pytest.approx(0.95 - 0.25 - Z * noise)  # 0.6735
    assert (peer.peer, peer.rise) == ("peer", pytest.approx(0.25))
    bound = bounds.AccuracyBound(confidence, peer, corrected=None)
    assert bound.label_free == peer.value <= accuracy
    assert (bound.basis, bound.value) == ("label_free", peer.value)
    # The worst peer sets it; a peer that disagrees less often cannot raise it.
    two = bounds.peer_term(
        0.95, 2000, {"a": (0.05, 2000, 0.30, 1000), "b": (0.05, 2000, 0.0, 1000)}
    )
    assert two.peer == "a" and two.value == pytest.approx(peer.value)
    assert bounds.peer_term(0.95, 2000, {}) is None


def test_corrected_estimate_on_a_window_with_a_known_answer() -> None:
    verdict = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=float)
    correct = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0, 1], dtype=float)  # 70% right
    labeled = np.array([True] * 4 + [False] * 6)
    corrected = bounds.corrected_estimate(verdict, correct, labeled)
    # 3 right among the labeled; ATC says 4 of the 6 others; its error on the labeled rows
    # is -1/4 a row, applied to the 6 others: (3 + 4 - 1.5) / 10.
    assert corrected.estimate == pytest.approx(0.55)
    # sd of the labeled residuals (0, -1, 0, 0) is 0.5; 6 of 10 rows unlabeled; 4 labeled.
    assert corrected.lower == pytest.approx(0.55 - Z * np.sqrt(0.6) * 0.5 / 2)
    assert (corrected.labeled, corrected.rows) == (4, 10)
    # Every row labeled: the corrected estimate is live accuracy, with no margin.
    full = bounds.corrected_estimate(verdict, correct, np.ones(10, dtype=bool))
    assert (full.estimate, full.lower) == (pytest.approx(0.7), pytest.approx(0.7))


def test_corrected_lower_bound_covers_the_window_at_its_stated_rate() -> None:
    """2,000 random 20% labelings of one 1,000-row window, 72% right, where ATC's verdict
    over-states by 15 points: the estimate is unbiased and the lower bound holds about 95%
    of the time (a one-sided 95% interval)."""
    rng = np.random.default_rng(3)
    correct = (rng.random(1000) < 0.72).astype(float)
    verdict = np.where(rng.random(1000) < 0.85, 1.0, correct)  # wrong rows it vouches for
    accuracy = correct.mean()
    estimates, held = [], 0
    for _ in range(2000):
        labeled = np.zeros(1000, dtype=bool)
        labeled[rng.choice(1000, 200, replace=False)] = True
        corrected = bounds.corrected_estimate(verdict, correct, labeled)
        estimates.append(corrected.estimate)
        held += corrected.lower <= accuracy
    assert verdict.mean() - accuracy > 0.15
    assert np.mean(estimates) == pytest.approx(accuracy, abs=0.002)
    assert 0.93 <= held / 2000 <= 0.98
