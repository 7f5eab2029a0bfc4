"""Prediction and label events: the contract between the service's event log and the monitor."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ModelOutput(BaseModel):
    """What one model said about one sequence."""

    model: str
    model_version: str  # BentoML store tag of the bundle
    predicted_label: str
    confidence: float  # max class probability
    entropy: float  # nats
    probabilities: dict[str, float]
    embedding: list[float]  # pooled vector reduced by the bundle's fixed PCA


class PredictionEvent(ModelOutput):
    """One served sequence: the answering model's output, its shadows', and the drift features."""

    type: Literal["prediction"] = "prediction"
    request_id: str
    timestamp: float  # unix seconds
    domain: str | None = None  # as supplied by the client
    features: dict[str, float]  # shiftwatch.features.drift_features of the encoded sequence
    shadows: list[ModelOutput] = Field(default_factory=list)
    # Configured shadow models that did not run on this sequence (the service's shadow worker
    # was saturated or stopping, or a shadow failed): empty when every shadow answered or
    # none is configured. Events written before this field existed parse with it empty.
    skipped_shadows: list[str] = Field(default_factory=list)


class LabelEvent(BaseModel):
    """The true label of a served sequence, arriving later through /feedback."""

    type: Literal["label"] = "label"
    request_id: str
    label: str
    timestamp: float


class SegmentStart(BaseModel):
    """The first line of every file-transport segment: how many events its writer had written
    before it. A reader that consumed fewer of that writer's events knows exactly how many it
    lost (segments deleted by the disk budget before it read them, unread tails of deleted
    ones, lines a failed write left out), whenever it gets here."""

    type: Literal["segment_start"] = "segment_start"
    writer: str
    seq: int
    events_before: int
