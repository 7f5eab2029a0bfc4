"""Input, embedding and prediction drift with Evidently's statistical tests.

The hot path calls Evidently's registered stat tests (`get_registered_stattest`)
directly, column by column, with the method and threshold stated here rather
than picked by Evidently's sample-size heuristics, and renders nothing. The
full Evidently Report (with HTML) is built only on demand, for /report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from evidently.legacy.calculations.stattests.registry import get_registered_stattest
from evidently.legacy.core import ColumnType
from evidently.legacy.metrics.data_drift.embedding_drift_methods import DistanceDriftMethod


@dataclass(frozen=True)
class ColumnTest:
    """How one column is tested: Evidently stat test name, threshold, column type."""

    method: str
    threshold: float
    kind: str = "num"  # "num" or "cat"


# Two-sample Kolmogorov-Smirnov (drift when p < 0.05) for continuous columns: windows
# and the reference hold up to ~1000 rows, the range where Evidently itself picks K-S,
# and its false-alarm rate per column is the stated 5% whatever the window size
# (distance thresholds such as normalised Wasserstein > 0.1 fire far more often on
# windows of a few hundred). PSI (> 0.2) for the OOV share, which sits mostly at 0;
# Jensen-Shannon distance (> 0.1) for categories.
DEFAULT_COLUMNS: dict[str, ColumnTest] = {
    "length": ColumnTest("ks", 0.05),
    "oov_share": ColumnTest("psi", 0.2),
    "over_max_length": ColumnTest("jensenshannon", 0.1, "cat"),
    "distinct_share": ColumnTest("ks", 0.05),
    "mean_log_rank": ColumnTest("ks", 0.05),
    "confidence": ColumnTest("ks", 0.05),
    "entropy": ColumnTest("ks", 0.05),
    "domain": ColumnTest("jensenshannon", 0.1, "cat"),  # only when clients send a domain
}


@dataclass(frozen=True)
class DriftConfig:
    """Which columns are tested and how, and when the dataset as a whole counts as drifted."""

    columns: dict[str, ColumnTest] = field(default_factory=lambda: dict(DEFAULT_COLUMNS))
    dataset_drift_share: float = 0.5  # dataset drift when at least this share of columns drift
    prediction: ColumnTest = ColumnTest("jensenshannon", 0.1, "cat")  # predicted-label distribution
    embedding_quantile: float = 0.95  # bootstrap quantile of the reference's own distance
    min_window: int = 30  # fewer current rows: no verdict

    def __post_init__(self) -> None:
        if not 0 < self.dataset_drift_share <= 1:
            raise ValueError("dataset_drift_share must be in (0, 1]")


@dataclass(frozen=True)
class ColumnDrift:
    score: float
    drifted: bool
    method: str
    threshold: float


@dataclass(frozen=True)
class DriftResult:
    columns: dict[str, ColumnDrift]  # per tested column
    drift_share: float  # drifted columns / tested columns
    dataset_drift: bool
    prediction: ColumnDrift | None
    embedding: ColumnDrift | None
    rows: int  # current window size
    seconds: float  # computation time

    def to_dict(self) -> dict:
        as_dict = lambda d: None if d is None else d.__dict__  # noqa: E731
        return {
            "columns": {k: as_dict(v) for k, v in self.columns.items()},
            "drift_share": self.drift_share,
            "dataset_drift": self.dataset_drift,
            "prediction": as_dict(self.prediction),
            "embedding": as_dict(self.embedding),
            "rows": self.rows,
            "seconds": self.seconds,
        }


def column_drift(reference: pd.Series, current: pd.Series, test: ColumnTest) -> ColumnDrift:
    """One Evidently stat test on one column."""
    kind = ColumnType.Numerical if test.kind == "num" else ColumnType.Categorical
    stattest = get_registered_stattest(test.method, kind)
    result = stattest(reference, current, kind, test.threshold)
    return ColumnDrift(float(result.drift_score), bool(result.drifted), test.method, test.threshold)


def embedding_drift(reference: np.ndarray, current: np.ndarray, quantile: float) -> ColumnDrift:
    """Evidently's distance method: euclidean distance of mean embeddings, against the
    bootstrap `quantile` of the same distance between reference resamples."""
    method = DistanceDriftMethod(dist="euclidean", bootstrap=True, quantile_probability=quantile)
    score, drifted, _ = method(pd.DataFrame(current), pd.DataFrame(reference))
    return ColumnDrift(float(score), bool(drifted), "euclidean distance (bootstrap)", quantile)


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    config: DriftConfig,
    embedding_columns: list[str] | None = None,
) -> DriftResult:
    """Drift of `current` against `reference`, per column, for predictions and embeddings.

    Columns of `config.columns` missing from either frame (or all-missing in the
    current one, like `domain` when clients send none) are skipped.
    """
    started = time.perf_counter()
    columns = {}
    for name, test in config.columns.items():
        if name in reference and name in current and current[name].notna().any():
            ref, cur = reference[name].dropna(), current[name].dropna()
            if test.kind == "cat":
                ref, cur = ref.astype(str), cur.astype(str)
            columns[name] = column_drift(ref, cur, test)
    drifted = sum(c.drifted for c in columns.values())
    share = drifted / len(columns) if columns else 0.0
    prediction = None
    if "predicted_label" in reference and "predicted_label" in current:
        prediction = column_drift(
            reference["predicted_label"].astype(str),
            current["predicted_label"].astype(str),
            config.prediction,
        )
    embedding = None
    if embedding_columns:
        embedding = embedding_drift(
            reference[embedding_columns].to_numpy(),
            current[embedding_columns].to_numpy(),
            config.embedding_quantile,
        )
    return DriftResult(
        columns=columns,
        drift_share=share,
        dataset_drift=bool(columns) and share >= config.dataset_drift_share,
        prediction=prediction,
        embedding=embedding,
        rows=len(current),
        seconds=time.perf_counter() - started,
    )
