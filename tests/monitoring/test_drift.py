"""compute_drift: exact values on tiny frames, a known shift found, few false alarms."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import ColumnTest, DriftConfig, compute_drift

pytestmark = pytest.mark.unit

TWO_COLUMNS = DriftConfig(
    columns={
        "length": ColumnTest("wasserstein", 0.1),
        "domain": ColumnTest("jensenshannon", 0.1, "cat"),
    }
)


def test_exact_values_on_tiny_frames() -> None:
    reference = pd.DataFrame(
        {"length": [1.0, 2, 3, 4], "domain": list("aabb"), "predicted_label": list("xyxy")}
    )
    current = pd.DataFrame(
        {"length": [2.0, 3, 4, 5], "domain": list("aaaa"), "predicted_label": list("xyxy")}
    )
    result = compute_drift(reference, current, TWO_COLUMNS)
    # Wasserstein-1 between the two is 1 (a shift by one); Evidently normalises by the
    # reference's population std, sqrt(1.25) = 1.1180...: 1 / 1.1180 = 0.8944.
    assert result.columns["length"].score == pytest.approx(1 / math.sqrt(1.25))
    assert result.columns["length"].drifted
    # Jensen-Shannon distance (natural log) of [1/2, 1/2] vs [1, 0]:
    # sqrt((0.5*ln(0.5/0.75) + 0.5*ln(0.5/0.25) + 1*ln(1/0.75)) / 2) = 0.4645.
    js = math.sqrt(
        (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25) + math.log(1 / 0.75)) / 2
    )
    assert result.columns["domain"].score == pytest.approx(js)
    assert result.drift_share == 1.0 and result.dataset_drift
    assert result.prediction is not None and result.prediction.score == pytest.approx(0.0)
    assert not result.prediction.drifted


def test_identical_frames_do_not_drift_and_missing_columns_are_skipped() -> None:
    reference = pd.DataFrame({"length": [1.0, 2, 3, 4], "domain": list("aabb")})
    current = reference.assign(domain=None)  # clients sent no domain
    result = compute_drift(reference, current, TWO_COLUMNS)
    assert set(result.columns) == {"length"}
    assert result.columns["length"].score == pytest.approx(0.0)
    assert result.drift_share == 0.0 and not result.dataset_drift


def synthetic_window(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    """Columns like a real window; `shift` moves every continuous column by that many stds."""
    frame = pd.DataFrame(
        {
            "length": rng.normal(35 + 10 * shift, 10, n),
            "oov_share": np.clip(rng.exponential(0.01, n) + 0.1 * shift, 0, 1),
            "over_max_length": (rng.random(n) < 0.5 * shift).astype(float),
            "distinct_share": rng.normal(0.7 + 0.1 * shift, 0.1, n),
            "mean_log_rank": rng.normal(0.4 + 0.1 * shift, 0.1, n),
            "confidence": rng.normal(0.9 - 0.05 * shift, 0.05, n),
            "entropy": rng.normal(0.3 + 0.1 * shift, 0.1, n),
            "predicted_label": rng.choice(list("abcdef"), n),
        }
    )
    for i in range(4):
        frame[f"embedding_{i}"] = rng.normal(shift, 1.0, n)
    return frame


def test_a_one_std_shift_is_detected() -> None:
    rng = np.random.default_rng(0)
    reference, current = synthetic_window(rng, 1000), synthetic_window(rng, 500, shift=1.0)
    result = compute_drift(reference, current, DriftConfig(), [f"embedding_{i}" for i in range(4)])
    assert result.dataset_drift and result.drift_share >= 0.8
    assert result.embedding is not None and result.embedding.drifted


def test_false_alarm_rate_on_reference_draws_is_at_most_5_percent() -> None:
    rng = np.random.default_rng(1)
    reference = synthetic_window(rng, 1000)
    alarms = sum(
        compute_drift(reference, synthetic_window(rng, 500), DriftConfig()).dataset_drift
        for _ in range(100)
    )
    assert alarms <= 5
