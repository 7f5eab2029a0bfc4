"""The monitor's results as Prometheus series (names per DESIGN.md, bounded labels).

A collector builds every series at scrape time from the monitor's snapshot, so
the counters carry the totals persisted in SQLite: they survive restarts and are
never counted twice.
"""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from monitoring.calibration import HEADLINE
from monitoring.counters import CounterKey
from monitoring.monitor import Monitor
from monitoring.results import ModelWindow, Snapshot
from monitoring.validation import REJECTION_REASONS

COMPUTE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def _finite(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


# The per-window series: key -> (name, help, labels).
WINDOW_SERIES = {
    "rows": ("shiftwatch_window_predictions", "Predictions in the current window.", ["model"]),
    "labeled": (
        "shiftwatch_window_labeled",
        "Labeled predictions in the current window.",
        ["model"],
    ),
    "coverage": (
        "shiftwatch_label_coverage_ratio",
        "Labeled share of the current window.",
        ["model"],
    ),
    "share": ("shiftwatch_drift_share", "Share of tested columns that drifted.", ["model"]),
    "dataset": ("shiftwatch_dataset_drift", "1 when the window shows dataset drift.", ["model"]),
    "fscore": ("shiftwatch_feature_drift_score", "Drift score per column.", ["model", "feature"]),
    "fdrift": (
        "shiftwatch_feature_drift_detected",
        "1 when the column drifted.",
        ["model", "feature"],
    ),
    "escore": ("shiftwatch_embedding_drift_score", "Embedding drift score.", ["model"]),
    "edrift": ("shiftwatch_embedding_drift_detected", "1 when embeddings drifted.", ["model"]),
    "pscore": ("shiftwatch_prediction_drift_score", "Predicted-label drift score.", ["model"]),
    "pdrift": ("shiftwatch_prediction_drift_detected", "1 when predictions drifted.", ["model"]),
    "live": (
        "shiftwatch_live_accuracy_ratio",
        "Accuracy on the window's labeled predictions.",
        ["model"],
    ),
    "domain": (
        "shiftwatch_live_accuracy_by_domain_ratio",
        "Window accuracy per client domain.",
        ["model", "domain"],
    ),
    "recall": (
        "shiftwatch_class_recall_ratio",
        "Window recall per true class.",
        ["model", "class"],
    ),
    "ece": ("shiftwatch_expected_calibration_error_ratio", "ECE on the labeled window.", ["model"]),
    "est": (
        "shiftwatch_estimated_accuracy_ratio",
        "Headline label-free accuracy estimate (see headline_estimator_info).",
        ["model"],
    ),
    "headline": (
        "shiftwatch_headline_estimator_info",
        "1 for the estimator behind estimated_accuracy.",
        ["model", "estimator"],
    ),
    "by_estimator": (
        "shiftwatch_estimator_accuracy_ratio",
        "Label-free accuracy estimate of each estimator on the whole window.",
        ["model", "estimator"],
    ),
    "estimator_error": (
        "shiftwatch_estimator_error_ratio",
        "Estimate minus live accuracy, both on the window's labeled rows.",
        ["model", "estimator"],
    ),
    "ls": (
        "shiftwatch_label_shift_detected",
        "1 when the window shows label shift (predicted classes and BBSE priors moved, inputs explained by the new priors).",
        ["model"],
    ),
    "ls_distance": (
        "shiftwatch_label_shift_distance_ratio",
        "Total variation between BBSE's class priors and the reference's.",
        ["model"],
    ),
    "prior": (
        "shiftwatch_class_prior_ratio",
        "BBSE's estimate of the window's class priors.",
        ["model", "class"],
    ),
    "bound": (
        "shiftwatch_accuracy_lower_bound_ratio",
        "Lower bound on the window's accuracy: the corrected one once enough rows are labeled, "
        "else the label-free one (see accuracy_bound_basis_info).",
        ["model"],
    ),
    "basis": (
        "shiftwatch_accuracy_bound_basis_info",
        "1 for what the lower bound rests on: label_free or labels.",
        ["model", "basis"],
    ),
    "label_free_bound": (
        "shiftwatch_label_free_lower_bound_ratio",
        "Label-free lower bound: the lower of the confidence and the peer terms.",
        ["model"],
    ),
    "corrected": (
        "shiftwatch_corrected_accuracy_ratio",
        "The headline estimate corrected by its error on the window's labeled rows.",
        ["model"],
    ),
    "ref": ("shiftwatch_reference_accuracy_ratio", "Accuracy on the reference window.", ["model"]),
    "gap": ("shiftwatch_deployment_gap_ratio", "Reference minus live accuracy.", ["model"]),
    "err": (
        "shiftwatch_estimation_error_ratio",
        "Headline estimate minus live accuracy, both on the window's labeled rows.",
        ["model"],
    ),
}


class MonitorCollector(Collector):
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self):
        snapshot = self.monitor.snapshot()
        counters = snapshot.counters
        yield from self._counters(counters)
        yield from self._windows(snapshot.models)
        lag = _gauge(
            "shiftwatch_monitor_ingest_lag_seconds", "Age of the oldest unread event-log data.", []
        )
        lag.add_metric([], snapshot.ingest_lag_seconds)
        yield lag
        yield from self._streams(snapshot)
        last = _gauge(
            "shiftwatch_monitor_last_computation_timestamp_seconds",
            "Unix time of the last window computation.",
            [],
        )
        last.add_metric([], snapshot.last_computation)
        yield last
        pending = _gauge(
            "shiftwatch_monitor_pending_labels", "Predictions waiting for a label.", []
        )
        pending.add_metric([], snapshot.pending_labels)
        yield pending
        errors = CounterMetricFamily(
            "shiftwatch_monitor_errors",
            "Monitor problems by kind: bad_line, reference, and <stage>_<reason> for failed "
            "ingest and compute passes (e.g. ingest_state_locked, ingest_disk_full, "
            "compute_unexpected).",
            labels=["kind"],
        )
        errors.add_metric(["bad_line"], counters.get("bad_lines", 0))
        for kind, value in snapshot.errors.items():
            errors.add_metric([kind], value)
        errors.add_metric(["reference"], len(snapshot.reference_errors))
        yield errors
        failing = _gauge(
            "shiftwatch_monitor_failing",
            "1 while a stage of the monitor's loop keeps failing (it retries with backoff).",
            ["stage"],
        )
        for stage in ("ingest", "compute"):
            failing.add_metric([stage], int(stage in snapshot.failing))
        yield failing
        if self.monitor.settings.accuracy_slo is not None:
            slo = _gauge(
                "shiftwatch_accuracy_slo_ratio",
                "The accuracy the team promises (SHIFTWATCH_MONITOR_ACCURACY_SLO).",
                [],
            )
            slo.add_metric([], self.monitor.settings.accuracy_slo)
            yield slo
        state = _gauge(
            "shiftwatch_monitor_state_bytes", "Size of the monitor's SQLite state on disk.", []
        )
        state.add_metric([], snapshot.state_bytes)
        yield state

    @staticmethod
    def _streams(snapshot: Snapshot):
        """The Redis transport's backlog per stream, and failed reads (0 under `file`)."""
        lag = _gauge(
            "shiftwatch_monitor_stream_lag_events",
            "Stream entries not yet delivered to this monitor's consumer group.",
            ["stream"],
        )
        pending = _gauge(
            "shiftwatch_monitor_stream_pending_events",
            "Stream entries delivered to this monitor but not yet acknowledged.",
            ["stream"],
        )
        for stream, backlog in snapshot.streams.items():
            lag.add_metric([stream], backlog["lag"])
            pending.add_metric([stream], backlog["pending"])
        yield lag
        yield pending
        errors = CounterMetricFamily(
            "shiftwatch_monitor_transport_errors",
            "Failed reads of the event transport, by reason (connection, response).",
            labels=["reason"],
        )
        for reason in ("connection", "response"):
            errors.add_metric([reason], snapshot.transport_errors.get(reason, 0))
        yield errors

    @staticmethod
    def _counters(counters: dict[CounterKey, int]):
        events = CounterMetricFamily(
            "shiftwatch_monitor_events_ingested", "Events ingested, by type.", labels=["type"]
        )
        events.add_metric(["prediction"], counters.get("events_prediction", 0))
        events.add_metric(["label"], counters.get("events_label", 0))
        yield events
        labels = CounterMetricFamily(
            "shiftwatch_monitor_labels",
            "Label events by outcome of the join: matched, duplicate (its prediction already "
            "had a label), unmatched (no prediction within the retention), before_prediction "
            "(stamped before its prediction was served, beyond the allowed clock skew: dropped).",
            labels=["result"],
        )
        for result in ("matched", "duplicate", "unmatched", "before_prediction"):
            labels.add_metric([result], counters.get(f"labels_{result}", 0))
        yield labels
        rejected = CounterMetricFamily(
            "shiftwatch_monitor_events_rejected",
            "Events, or shadow outputs in them, dropped because no monitored model could have "
            "sent them, by reason (monitoring/validation.py).",
            labels=["reason"],
        )
        for reason in REJECTION_REASONS:
            rejected.add_metric([reason], counters.get(("rejected", reason), 0))
        yield rejected
        expired = CounterMetricFamily(
            "shiftwatch_monitor_predictions_expired",
            "Predictions whose label never came within the retention.",
            labels=[],
        )
        expired.add_metric([], counters.get("predictions_expired", 0))
        yield expired
        evicted = CounterMetricFamily(
            "shiftwatch_monitor_evicted",
            "Rows evicted to keep the state within its bounds: predictions still unlabeled "
            "(oldest first), and labels still waiting for their prediction (first arrived "
            "first, under their own bound, and before any prediction over the byte bound).",
            labels=["kind"],
        )
        evicted.add_metric(["prediction"], counters.get("predictions_evicted", 0))
        evicted.add_metric(["label"], counters.get("labels_evicted", 0))
        yield evicted
        lost = CounterMetricFamily(
            "shiftwatch_monitor_events_lost",
            "Events the monitor will never read, by reason: segment_gap (segments removed by "
            "the writer's disk budget before they were read), unread_tail (a segment gone without "
            "a count of its events: estimated from its unread bytes), torn_line (a last line "
            "left unfinished by its writer), trimmed (Redis stream entries trimmed unread).",
            labels=["reason"],
        )
        for reason in ("segment_gap", "unread_tail", "torn_line", "trimmed"):
            lost.add_metric([reason], counters.get(("lost", reason), 0))
        yield lost
        clamped = CounterMetricFamily(
            "shiftwatch_monitor_events_clamped",
            "Events stamped further ahead of the monitor's clock than the allowed skew, "
            "clamped to it.",
            labels=[],
        )
        clamped.add_metric([], counters.get("future_timestamps", 0))
        yield clamped
        reused = CounterMetricFamily(
            "shiftwatch_monitor_request_ids_reused",
            "Predictions under a request id whose earlier request was already labeled.",
            labels=[],
        )
        reused.add_metric([], counters.get("request_ids_reused", 0))
        yield reused
        labeled = CounterMetricFamily(
            "shiftwatch_predictions_labeled",
            "Predictions joined with a true label.",
            labels=["model", "domain"],
        )
        correct = CounterMetricFamily(
            "shiftwatch_predictions_correct",
            "Labeled predictions that were right.",
            labels=["model", "domain"],
        )
        for key, value in counters.items():
            if isinstance(key, tuple) and len(key) == 3 and key[0] in ("labeled", "correct"):
                kind, model, domain = key
                (labeled if kind == "labeled" else correct).add_metric([model, domain], value)
        yield labeled
        yield correct

    @staticmethod
    def _windows(models: dict[str, ModelWindow]):
        g = {key: _gauge(*spec) for key, spec in WINDOW_SERIES.items()}
        for model, w in models.items():
            g["rows"].add_metric([model], w.rows)
            g["labeled"].add_metric([model], w.live.labeled)
            if w.rows:
                g["coverage"].add_metric([model], w.live.labeled / w.rows)
            g["ref"].add_metric([model], w.reference_accuracy)
            if _finite(w.estimated_accuracy):
                g["est"].add_metric([model], w.estimated_accuracy)
            g["headline"].add_metric([model, HEADLINE], 1.0)
            for estimator, estimate in w.estimates.items():
                if estimate.estimate is not None:
                    g["by_estimator"].add_metric([model, estimator], estimate.estimate)
                if estimate.error is not None:
                    g["estimator_error"].add_metric([model, estimator], estimate.error)
            if w.bound is not None:
                g["bound"].add_metric([model], w.bound.value)
                g["basis"].add_metric([model, w.bound.basis], 1.0)
                g["label_free_bound"].add_metric([model], w.bound.label_free)
                if w.bound.corrected is not None:
                    g["corrected"].add_metric([model], w.bound.corrected.estimate)
            if w.label_shift is not None:
                g["ls"].add_metric([model], float(w.label_shift.detected))
                g["ls_distance"].add_metric([model], w.label_shift.distance)
                for cls, value in w.label_shift.priors.items():
                    g["prior"].add_metric([model, cls], value)
            if w.drift is not None:
                g["share"].add_metric([model], w.drift.drift_share)
                g["dataset"].add_metric([model], float(w.drift.dataset_drift))
                for feature, column in w.drift.columns.items():
                    g["fscore"].add_metric([model, feature], column.score)
                    g["fdrift"].add_metric([model, feature], float(column.drifted))
                for key, part in (("e", w.drift.embedding), ("p", w.drift.prediction)):
                    if part is not None:
                        g[f"{key}score"].add_metric([model], part.score)
                        g[f"{key}drift"].add_metric([model], float(part.drifted))
            if _finite(w.live.accuracy):  # whatever the labeled rows' count, as live accuracy
                g["live"].add_metric([model], w.live.accuracy)
                g["ece"].add_metric([model], w.live.ece)
                g["gap"].add_metric([model], w.deployment_gap)
                for domain, value in w.live.by_domain.items():
                    g["domain"].add_metric([model, domain], value)
                for cls, value in w.live.class_recall.items():
                    g["recall"].add_metric([model, cls], value)
            if w.estimation_error is not None:
                g["err"].add_metric([model], w.estimation_error)
        yield from g.values()


def build_registry(monitor: Monitor) -> tuple[CollectorRegistry, Histogram]:
    """A registry with the monitor's collector and its drift-computation histogram."""
    registry = CollectorRegistry()
    registry.register(MonitorCollector(monitor))
    histogram = Histogram(
        "shiftwatch_monitor_drift_computation_seconds",
        "Seconds per drift computation of one model's window.",
        buckets=COMPUTE_BUCKETS,
        registry=registry,
    )
    return registry, histogram
