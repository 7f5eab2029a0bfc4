"""Request encoding, length-grouped inference, shadows and post-processing: no server needed."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from service import metrics
from service.schemas import Instance, Prediction
from shiftwatch.bundle import ModelBundle
from shiftwatch.encoding import entropy, softmax
from shiftwatch.events import ModelOutput, PredictionEvent
from shiftwatch.features import drift_features
from shiftwatch.inference import OnnxClassifier, open_session
from shiftwatch.settings import ServiceSettings

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The service cannot start: a model is missing, invalid or inconsistent with settings."""


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str  # BentoML store tag (or the bundle path outside the store)
    bundle: ModelBundle
    classifier: OnnxClassifier

    @property
    def labels(self) -> list[str]:
        return self.bundle.meta.labels


class Predictor:
    """Classifies instances with the primary (or a requested) model, shadows on the side."""

    def __init__(
        self, bundles: dict[str, tuple[ModelBundle, str]], settings: ServiceSettings
    ) -> None:
        self.settings = settings
        self.models: dict[str, LoadedModel] = {}
        for name in settings.models:
            if name not in bundles:
                raise StartupError(f"model {name!r} is configured but no bundle was given for it")
            bundle, version = bundles[name]
            if settings.max_tokens > bundle.meta.max_positions:
                raise StartupError(
                    f"SHIFTWATCH_MAX_TOKENS={settings.max_tokens} exceeds model {name!r}'s "
                    f"positional limit {bundle.meta.max_positions}"
                )
            session = open_session(
                bundle.model_path,
                settings.intra_op_threads,
                settings.inter_op_threads,
                settings.prefer_gpu,
            )
            self.models[name] = LoadedModel(
                name, version, bundle, OnnxClassifier(session, bundle.meta.max_positions)
            )
        self.primary = self.models[settings.primary_model]
        self.shadows = [self.models[n] for n in settings.models if n != settings.primary_model]

    def warm_up(self) -> None:
        """One inference per model, so the first request pays no lazy initialisation."""
        for model in self.models.values():
            model.classifier.predict([[2, 3, 4]])

    def _run(
        self, model: LoadedModel, tokens: list[list[str]]
    ) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
        ids = [model.bundle.vocab.encode(seq) for seq in tokens]
        histogram = metrics.inference_seconds.labels(model=model.name)
        logits, pooled = model.classifier.predict(
            ids,
            self.settings.inference_batch,
            observe=lambda seconds, _: histogram.observe(seconds),
        )
        return ids, softmax(logits), model.bundle.meta.embedding_reduction.apply(pooled)

    @staticmethod
    def _outputs(model: LoadedModel, probs: np.ndarray, embedding: np.ndarray) -> list[ModelOutput]:
        labels = model.labels
        ent = entropy(probs)
        outputs = []
        for row in range(len(probs)):
            best = int(probs[row].argmax())
            outputs.append(
                ModelOutput(
                    model=model.name,
                    model_version=model.version,
                    predicted_label=labels[best],
                    confidence=float(probs[row, best]),
                    entropy=float(ent[row]),
                    probabilities={
                        label: float(p) for label, p in zip(labels, probs[row], strict=True)
                    },
                    embedding=embedding[row].astype(float).tolist(),
                )
            )
            metrics.predictions.labels(model=model.name, predicted_class=labels[best]).inc()
            metrics.confidence.labels(model=model.name).observe(float(probs[row, best]))
        return outputs

    def predict(self, instances: list[Instance]) -> tuple[list[Prediction], list[PredictionEvent]]:
        """Answer every instance; also return one prediction event per instance.

        Instances are grouped by the model that answers them; within a model,
        sequences are batched by length (see `OnnxClassifier.predict`).
        """
        now = time.time()
        metrics.batch_size.observe(len(instances))
        answers: list[Prediction | None] = [None] * len(instances)
        events: list[PredictionEvent | None] = [None] * len(instances)
        groups: dict[str, list[int]] = {}
        for i, instance in enumerate(instances):
            groups.setdefault(instance.model or self.primary.name, []).append(i)
        for name, rows in groups.items():
            model = self.models[name]
            tokens = [instances[i].sequence for i in rows]
            ids, probs, embedding = self._run(model, tokens)
            outputs = self._outputs(model, probs, embedding)
            shadow_outputs = [[] for _ in rows]
            if model is self.primary:
                for shadow in self.shadows:
                    _, shadow_probs, shadow_embedding = self._run(shadow, tokens)
                    for k, output in enumerate(
                        self._outputs(shadow, shadow_probs, shadow_embedding)
                    ):
                        shadow_outputs[k].append(output)
            vocab_size = len(model.bundle.vocab)
            for k, i in enumerate(rows):
                features = drift_features(ids[k], vocab_size, model.bundle.meta.max_trained_length)
                metrics.input_length.observe(features["length"])
                metrics.input_oov_share.observe(features["oov_share"])
                out = outputs[k]
                answers[i] = Prediction(
                    request_id=instances[i].request_id,
                    label=out.predicted_label,
                    confidence=out.confidence,
                    probabilities=out.probabilities,
                    model=out.model,
                    model_version=out.model_version,
                )
                events[i] = PredictionEvent(
                    **out.model_dump(),
                    request_id=instances[i].request_id,
                    timestamp=now,
                    domain=instances[i].domain,
                    features=features,
                    shadows=shadow_outputs[k],
                )
        return answers, events  # type: ignore[return-value]
