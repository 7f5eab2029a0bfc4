"""The monitor's results, typed: one model's window, and a snapshot of everything the
monitor knows at one moment. The exporter (/metrics), /status and /report read these; only
`to_dict` turns them into JSON-ready data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from monitoring.accuracy import LiveAccuracy
from monitoring.bounds import AccuracyBound
from monitoring.calibration import HEADLINE, Estimate
from monitoring.counters import CounterKey, counter_tree
from monitoring.drift import DriftResult
from monitoring.failures import Failure
from monitoring.label_shift import LabelShiftVerdict


@dataclass
class ModelWindow:
    """The latest computation for one model: what /status, /metrics and /report show."""

    rows: int
    drift: DriftResult | None
    live: LiveAccuracy
    estimates: dict[str, Estimate]  # by estimator
    label_shift: LabelShiftVerdict | None
    bound: AccuracyBound | None  # None under the minimum of rows
    reference_accuracy: float
    frame: pd.DataFrame  # the window itself, for /report
    notes: list[str]  # what was not computed, and why

    @property
    def headline(self) -> Estimate | None:
        """The headline estimator's result (see monitoring.calibration)."""
        return self.estimates.get(HEADLINE)

    @property
    def estimated_accuracy(self) -> float:
        """The headline estimate; NaN when not computed."""
        value = None if self.headline is None else self.headline.estimate
        return float("nan") if value is None else value

    @property
    def estimation_error(self) -> float | None:
        return None if self.headline is None else self.headline.error

    @property
    def deployment_gap(self) -> float | None:
        """Reference minus live accuracy; None without labels."""
        live = self.live.accuracy
        return None if np.isnan(live) else self.reference_accuracy - live

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "notes": self.notes,
            "drift": None if self.drift is None else self.drift.to_dict(),
            "live": self.live.to_dict(),
            "estimated_accuracy": self.estimated_accuracy,
            "headline_estimator": HEADLINE,
            "estimates": {name: e.to_dict() for name, e in self.estimates.items()},
            "label_shift": None if self.label_shift is None else self.label_shift.to_dict(),
            "accuracy_bound": None if self.bound is None else self.bound.to_dict(),
            "reference_accuracy": self.reference_accuracy,
            "deployment_gap": self.deployment_gap,
            "estimation_error": self.estimation_error,
        }


@dataclass(frozen=True)
class Snapshot:
    """Everything the monitor knows at one moment, copied under its lock."""

    window_size: int
    window_seconds: float
    last_computation: float  # unix time; 0 before the first computation
    computed_events: int  # events the last computation had seen
    ingest_lag_seconds: float
    transport: str
    streams: dict[str, dict[str, int]]  # Redis: per stream, `lag` and `pending` entries
    transport_errors: dict[str, int]  # Redis: failed reads by reason
    counters: dict[CounterKey, int]  # monitoring/counters.py
    pending_labels: int
    reference_errors: dict[str, str]  # models without a usable reference, and why
    errors: dict[str, int]  # `<stage>_<reason>` -> failures since start
    failing: dict[str, Failure]  # by stage, while it keeps failing
    state_bytes: int
    models: dict[str, ModelWindow]

    def to_dict(self) -> dict:
        return {
            "window_size": self.window_size,
            "window_seconds": self.window_seconds,
            "last_computation": self.last_computation,
            "computed_events": self.computed_events,
            "ingest_lag_seconds": self.ingest_lag_seconds,
            "transport": self.transport,
            "streams": self.streams,
            "transport_errors": self.transport_errors,
            "counters": counter_tree(self.counters),
            "pending_labels": self.pending_labels,
            "reference_errors": self.reference_errors,
            "errors": self.errors,
            "failing": {stage: failure.to_dict() for stage, failure in self.failing.items()},
            "state_bytes": self.state_bytes,
            "models": {name: window.to_dict() for name, window in self.models.items()},
        }
