"""The monitor: references, the ingest/compute loop, and the latest window's results."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import pandas as pd

from monitoring.accuracy import live_accuracy
from monitoring.calibration import (
    Calibration,
    agreement_estimates,
    peer_disagreements,
    window_bound,
    window_estimates,
)
from monitoring.counters import CounterKey
from monitoring.drift import DriftConfig, compute_drift
from monitoring.failures import Failures
from monitoring.label_shift import label_shift_verdict
from monitoring.results import ModelWindow, Snapshot
from monitoring.state import MonitorState
from monitoring.validation import EventValidator, ModelContract
from shiftwatch.bundle import ModelBundle, read_bundle
from shiftwatch.model_store import read_stored_bundle
from shiftwatch.names import split_model_ref
from shiftwatch.reference import load_reference
from shiftwatch.settings import MonitorSettings
from shiftwatch.transport import TransportError
from shiftwatch.transport.redis_streams import (
    StreamReader,
    connect,
    label_stream,
    prediction_stream,
)
from shiftwatch.transport.segments import SegmentReader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelReference:
    """One model's reference window (its bundle's reference.parquet) and what is fitted on it."""

    name: str
    bundle: ModelBundle
    frame: pd.DataFrame
    calibration: Calibration
    embedding_columns: list[str]
    predictions: dict[str, str]  # sequence_id -> predicted label (for agreement), if known

    @property
    def notes(self) -> list[str]:
        notes = []
        if not self.embedding_columns:
            notes.append("embedding drift not computed: the model has no embedding output")
        if not self.calibration.calibrated:
            notes.append(
                "label-free estimates uncalibrated: reference.parquet has no class "
                "probabilities (a bundle from before them; export or import it again)"
            )
        return notes

    @classmethod
    def from_bundle(cls, name: str, bundle: ModelBundle) -> ModelReference:
        frame = load_reference(bundle)
        predictions = (
            dict(zip(frame["sequence_id"], frame["predicted_label"], strict=True))
            if "sequence_id" in frame
            else {}
        )
        return cls(
            name=name,
            bundle=bundle,
            frame=frame,
            calibration=Calibration.fit(frame, bundle.meta.labels),
            embedding_columns=[c for c in frame.columns if c.startswith("embedding_")],
            predictions=predictions,
        )


def load_bundle(settings: MonitorSettings, ref: str) -> ModelBundle:
    """The bundle of `ref`: from the models folder when one is set (its files checked against
    its manifest), else from the model store (the manifest checked against the store's
    record too)."""
    name, version = split_model_ref(ref)
    if settings.models_dir is not None:
        return read_bundle(settings.models_dir / name)
    import bentoml  # the serving image has it; only needed when reading the store

    return read_stored_bundle(bentoml.models.get(f"{name}:{version}"))


def load_references(settings: MonitorSettings) -> tuple[dict[str, ModelReference], dict[str, str]]:
    """References of every configured model; a bad one is reported, not fatal."""
    references, errors = {}, {}
    for ref in settings.models:
        name = split_model_ref(ref)[0]
        try:
            references[name] = ModelReference.from_bundle(name, load_bundle(settings, ref))
            for note in references[name].notes:
                log.warning("model %s: %s", name, note)
        except Exception as exc:  # missing, invalid or unreadable: report it, monitor the rest
            errors[name] = f"{type(exc).__name__}: {exc}"
            log.error("no reference for model %s, it is not monitored: %s", name, errors[name])
    return references, errors


def open_reader(settings: MonitorSettings, state: MonitorState) -> SegmentReader | StreamReader:
    """The reader of the settings' transport: segment files, or the fleet's Redis streams."""
    if settings.event_transport == "file":
        return SegmentReader(settings.event_log_dir, state, settings.label_retention_seconds)
    names = [split_model_ref(ref)[0] for ref in settings.models]
    prefix = settings.redis_stream_prefix
    return StreamReader(
        connect(settings.redis_url),
        state,
        [prediction_stream(prefix, name) for name in names] + [label_stream(prefix)],
        settings.redis_group,
        settings.label_retention_seconds,
        settings.redis_read_count,
    )


class Monitor:
    def __init__(self, settings: MonitorSettings, drift_config: DriftConfig | None = None) -> None:
        self.settings = settings
        self.drift_config = drift_config or DriftConfig()
        self.references, self.reference_errors = load_references(settings)
        domains = {d for ref in self.references.values() for d in ref.frame["domain"].unique()}
        self.state = MonitorState(
            settings.state_path,
            domains | set(settings.extra_domains),
            max_requests=settings.state_max_requests,
            max_bytes=settings.state_max_bytes,
            max_clock_skew=settings.max_clock_skew_seconds,
            label_join_skew=settings.label_join_skew_seconds,
            max_orphan_labels=settings.state_max_orphan_labels,
            validator=EventValidator(
                {name: ModelContract.of(ref.bundle.meta) for name, ref in self.references.items()}
            ),
        )
        self.reader = open_reader(settings, self.state)
        self.lock = threading.Lock()  # guards the snapshot below, read by the HTTP thread
        self.windows: dict[str, ModelWindow] = {}
        self.counters: dict[CounterKey, int] = self.state.counters()
        self.lag_seconds = 0.0
        self.streams: dict[str, dict[str, int]] = {}  # Redis: lag and pending per stream
        self.transport_errors: dict[str, int] = {}  # Redis: failed reads by reason
        self.pending_labels = self.state.pending_labels()
        self.last_computation = 0.0
        self.computed_events = 0
        self.computation_seconds: list[float] = []  # drained by the exporter's histogram
        self.failures = Failures()
        self.state_bytes = self.state.file_bytes()
        self._since_compute = 0
        self._last_compute_time = 0.0

    def ingest(self) -> int:
        """One pass over the event transport; returns events ingested. Raises what fails
        (`step` counts it and backs off)."""
        try:
            result = self.reader.run_once()
        except TransportError as exc:  # also counted per reason for the transport's own metric
            with self.lock:
                self.transport_errors[exc.reason] = self.transport_errors.get(exc.reason, 0) + 1
            raise
        self.state.reclaim()
        with self.lock:
            self.counters = self.state.counters()
            self.lag_seconds = result.lag_seconds
            self.streams = result.streams
            self.pending_labels = self.state.pending_labels()
            self.state_bytes = self.state.file_bytes()
        self._since_compute += result.events
        return result.events

    def due(self) -> bool:
        if self.last_computation == 0.0:  # first pass after start: show what the state holds
            return True
        elapsed = time.monotonic() - self._last_compute_time
        return self._since_compute >= self.settings.recompute_events or (
            self._since_compute > 0 and elapsed >= self.settings.recompute_seconds
        )

    def _bounded_domain(self, domain: str | None) -> str | None:
        return domain if domain is None or domain in self.state.known_domains else "other"

    def compute(self) -> dict[str, ModelWindow]:
        """Drift, live accuracy, label-free estimates and the label-shift verdict on every
        model's current window."""
        frames = {}
        for name in self.references:
            frame = self.state.window(name, self.settings.window_size, self.settings.window_seconds)
            if len(frame):  # client domains outside the known set become "other" (bounded labels)
                frame["domain"] = frame["domain"].map(self._bounded_domain)
            frames[name] = frame
        agreed = agreement_estimates(
            {n: r.predictions for n, r in self.references.items()},
            {n: r.calibration.reference_accuracy for n, r in self.references.items()},
            frames,
            self.settings.min_estimate_rows,
        )
        peers = peer_disagreements(
            {n: r.predictions for n, r in self.references.items()},
            frames,
            self.settings.min_estimate_rows,
        )
        windows = {}
        for name, reference in self.references.items():
            frame = frames[name]
            drift = None
            if len(frame) >= self.drift_config.min_window:
                started = time.perf_counter()
                drift = compute_drift(
                    reference.frame, frame, self.drift_config, reference.embedding_columns
                )
                with self.lock:
                    self.computation_seconds.append(time.perf_counter() - started)
            labeled = frame[frame["label"].notna()] if len(frame) else frame
            live = live_accuracy(labeled.assign(domain=labeled["domain"].fillna("unknown")))
            enough = len(frame) >= self.settings.min_estimate_rows
            scored = reference.calibration.scored(frame)
            windows[name] = ModelWindow(
                rows=len(frame),
                drift=drift,
                live=live,
                estimates=window_estimates(
                    reference.calibration,
                    scored,
                    live.accuracy,
                    agreed[name],
                    self.settings.min_estimate_rows,
                ),
                label_shift=label_shift_verdict(
                    reference.calibration,
                    reference.frame,
                    frame,
                    drift,
                    self.drift_config,
                    reference.embedding_columns,
                )
                if enough and drift is not None
                else None,
                bound=window_bound(
                    reference.calibration,
                    scored,
                    peers[name],
                    self.settings.min_estimate_rows,
                    self.settings.min_correction_labels,
                ),
                reference_accuracy=reference.calibration.reference_accuracy,
                frame=frame,
                notes=reference.notes,
            )
        with self.lock:
            self.windows = windows
            self.last_computation = time.time()
            # What this computation has seen: a client can wait for it to cover its events.
            self.computed_events = self.counters.get("events_prediction", 0) + self.counters.get(
                "events_label", 0
            )
        self._since_compute = 0
        self._last_compute_time = time.monotonic()
        return windows

    def step(self) -> None:
        """One ingest pass, then a computation when due; no error escapes (see failures.py)."""
        self._guarded("ingest", self.ingest)
        if self.due():
            self._guarded("compute", self.compute)

    def _guarded(self, stage: str, work) -> None:
        if not self.failures.ready(stage):
            return
        try:
            work()
        except Exception as exc:
            with self.lock:
                self.failures.failed(stage, exc)
        else:
            with self.lock:
                self.failures.succeeded(stage)

    def snapshot(self) -> Snapshot:
        """The results and the loop's own state at this moment, copied under the lock."""
        with self.lock:
            return Snapshot(
                window_size=self.settings.window_size,
                window_seconds=self.settings.window_seconds,
                last_computation=self.last_computation,
                computed_events=self.computed_events,
                ingest_lag_seconds=self.lag_seconds,
                transport=self.settings.event_transport,
                streams={name: dict(backlog) for name, backlog in self.streams.items()},
                transport_errors=dict(self.transport_errors),
                counters=dict(self.counters),
                pending_labels=self.pending_labels,
                reference_errors=dict(self.reference_errors),
                errors=dict(self.failures.counts),
                failing=dict(self.failures.current),
                state_bytes=self.state_bytes,
                models=dict(self.windows),
            )

    def status(self) -> dict:
        """`/status`: the snapshot as JSON-ready data."""
        return self.snapshot().to_dict()
