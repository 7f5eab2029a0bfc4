"""Prediction events the tiny bundles could have sent: what a validating monitor takes."""

from __future__ import annotations

from shiftwatch.bundle import BundleMeta
from shiftwatch.events import ModelOutput, PredictionEvent
from shiftwatch.features import FEATURE_NAMES


def served_output(meta: BundleMeta, predicted: int = 0) -> ModelOutput:
    """`meta`'s model answering its label number `predicted` with probability 0.9."""
    rest = 0.1 / (len(meta.labels) - 1)
    return ModelOutput(
        model=meta.name,
        model_version=f"{meta.name}:v1",
        predicted_label=meta.labels[predicted],
        confidence=0.9,
        entropy=0.5,
        probabilities={
            label: 0.9 if i == predicted else rest for i, label in enumerate(meta.labels)
        },
        embedding=[0.1 * i for i in range(meta.embedding_dims)],
    )


def served_prediction(
    primary: BundleMeta,
    request_id: str,
    ts: float,
    shadows: tuple[BundleMeta, ...] = (),
    predicted: int = 0,
    domain: str | None = "news",
) -> PredictionEvent:
    """A prediction of `primary` with the outputs of `shadows`, every value as served."""
    return PredictionEvent(
        **served_output(primary, predicted).model_dump(),
        request_id=request_id,
        timestamp=ts,
        domain=domain,
        features={name: 1.0 for name in FEATURE_NAMES},
        shadows=[served_output(meta, predicted) for meta in shadows],
    )
