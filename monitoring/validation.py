"""Which events the monitor takes: every value checked against the models it monitors.

Whoever can write the event files or the Redis streams can write any JSON the event schema
parses. A value becomes a metric label, a window row or a column of a drift test, so the
monitor takes only what one of its models could have sent; anything else is dropped and
counted by reason (`shiftwatch_monitor_events_rejected_total{reason}`), and logged at most
once a minute per reason.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from shiftwatch.bundle import BundleMeta
from shiftwatch.events import LabelEvent, ModelOutput, PredictionEvent
from shiftwatch.features import FEATURE_NAMES

log = logging.getLogger(__name__)

# Every reason an event or a part of it is dropped (a bounded metric label).
REJECTION_REASONS = (
    "unknown_model",  # an output of a model this monitor does not monitor
    "stream_model_mismatch",  # Redis: a prediction on another model's stream
    "duplicate_model",  # a second output of the same model in one event
    "unknown_label",  # a label or predicted label that is not one of the model's
    "probability_classes",  # class probabilities not exactly over the model's labels
    "embedding_size",  # an embedding of another size than the model's reduced embedding
    "feature_names",  # drift features other than shiftwatch.features.FEATURE_NAMES
    "non_finite",  # NaN or infinity in a timestamp, probability, embedding or feature
)
FEATURES = frozenset(FEATURE_NAMES)
LOG_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class ModelContract:
    """What one monitored model's outputs look like (from its bundle)."""

    labels: frozenset[str]
    embedding_size: int  # 0 for a model without an embedding output

    @classmethod
    def of(cls, meta: BundleMeta) -> ModelContract:
        return cls(frozenset(meta.labels), meta.embedding_dims)


def _finite(*values: float) -> bool:
    return math.isfinite(sum(values, 0.0))  # NaN and infinities survive a sum


class EventValidator:
    """Checks events against the monitored models' contracts.

    Without contracts (`models=None`: tests and benchmarks of the state alone) any model,
    label and size passes; one event's outputs must still be of distinct models and every
    number finite.
    """

    def __init__(self, models: Mapping[str, ModelContract] | None = None) -> None:
        self.models = dict(models) if models is not None else None
        self.labels = (
            frozenset().union(*(m.labels for m in self.models.values()))
            if self.models is not None
            else None
        )

    def prediction(self, event: PredictionEvent) -> tuple[PredictionEvent | None, list[str]]:
        """The event as the monitor takes it, and the reasons of what it dropped: no event when
        the answering model's output or the drift features are bad; else the event without
        its bad shadow outputs (a shadow cannot spoil its primary's row)."""
        if not _finite(event.timestamp, *event.features.values()):
            return None, ["non_finite"]
        if self.models is not None and event.features.keys() != FEATURES:
            return None, ["feature_names"]
        reason = self._output_problem(event, set())
        if reason is not None:
            return None, [reason]
        seen, kept, reasons = {event.model}, [], []
        for shadow in event.shadows:
            reason = self._output_problem(shadow, seen)
            if reason is None:
                kept.append(shadow)
                seen.add(shadow.model)
            else:
                reasons.append(reason)
        if reasons:
            event = event.model_copy(update={"shadows": kept})
        return event, reasons

    def label(self, event: LabelEvent) -> str | None:
        """Why the label event is dropped, or None. A label event names no model: its label
        must be one of any monitored model's labels."""
        if not _finite(event.timestamp):
            return "non_finite"
        if self.labels is not None and event.label not in self.labels:
            return "unknown_label"
        return None

    def _output_problem(self, output: ModelOutput, seen: set[str]) -> str | None:
        if output.model in seen:
            return "duplicate_model"
        probabilities = output.probabilities
        if not _finite(output.confidence, output.entropy, *probabilities.values()):
            return "non_finite"
        if not _finite(*output.embedding):
            return "non_finite"
        if self.models is None:
            return None
        contract = self.models.get(output.model)
        if contract is None:
            return "unknown_model"
        if output.predicted_label not in contract.labels:
            return "unknown_label"
        if probabilities.keys() != contract.labels:
            return "probability_classes"
        if len(output.embedding) != contract.embedding_size:
            return "embedding_size"
        return None


class RejectionLog:
    """One warning per reason per `every` seconds, saying how many went unlogged before it."""

    def __init__(self, every: float = LOG_EVERY_SECONDS) -> None:
        self.every = every
        self._next: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def warn(self, reason: str, detail: str) -> None:
        now = time.monotonic()
        if now < self._next.get(reason, 0.0):
            self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
            return
        self._next[reason] = now + self.every
        unlogged = self._unlogged.pop(reason, 0)
        log.warning(
            "event dropped (%s): %.200s%s",
            reason,
            detail,
            f" (and {unlogged} more since the last warning)" if unlogged else "",
        )
