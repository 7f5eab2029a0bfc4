"""Request encoding, length-grouped inference, shadows and post-processing: no server needed."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from service import prometheus
from service.schemas import Instance, Prediction
from service.shadows import ShadowWork
from shiftwatch.bundle import ModelBundle
from shiftwatch.encoding import entropy, softmax
from shiftwatch.events import ModelOutput, PredictionEvent
from shiftwatch.features import drift_features
from shiftwatch.inference import OnnxClassifier
from shiftwatch.settings import ServiceSettings
from shiftwatch.tokenizer import Encoded

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
        self,
        bundles: dict[str, tuple[ModelBundle, str]],
        settings: ServiceSettings,
        shadows_only: bool = False,
    ) -> None:
        """`shadows_only`: load the shadow models alone, to run `run_shadows` (the shadow
        process: service/shadow_process.py); `predict` then cannot run."""
        self.settings = settings
        self.models: dict[str, LoadedModel] = {}
        names = settings.models[1:] if shadows_only else settings.models
        for name in names:
            if name not in bundles:
                raise StartupError(f"model {name!r} is configured but no bundle was given for it")
            bundle, version = bundles[name]
            if bundle.name != name:
                raise StartupError(
                    f"model {name!r}: its bundle is named {bundle.name!r}; export or import it "
                    f"under the name it is served by"
                )
            classifier = OnnxClassifier.from_bundle(
                bundle,
                settings.intra_op_threads,
                settings.inter_op_threads,
                settings.prefer_gpu,
            )
            self.models[name] = LoadedModel(name, version, bundle, classifier)
        self.primary = self.models.get(settings.primary_name)
        self.shadows = [m for n, m in self.models.items() if n != settings.primary_name]

    def warm_up(self) -> None:
        """One inference per model, so the first request pays no lazy initialisation."""
        for model in self.models.values():
            model.classifier.predict(model.bundle.tokenizer.encode(["warm up"]).ids)

    def _run(
        self, model: LoadedModel, texts: list[str], encodings: dict[tuple, Encoded]
    ) -> tuple[Encoded, np.ndarray, np.ndarray | None]:
        """One model on `texts`. `encodings` holds these texts' encodings by tokenizer, so
        models that share one (a primary and its shadows, usually) encode them once."""
        tokenizer = model.bundle.tokenizer
        key = (tokenizer.sha256, tokenizer.max_length)
        if key not in encodings:
            encodings[key] = tokenizer.encode(texts)
        encoded = encodings[key]
        prometheus.input_truncated.labels(model=model.name).inc(sum(encoded.truncated))
        histogram = prometheus.inference_seconds.labels(model=model.name)
        logits, pooled = model.classifier.predict(
            encoded.ids,
            self.settings.inference_batch,
            observe=lambda seconds, _: histogram.observe(seconds),
        )
        reduction = model.bundle.meta.embedding_reduction
        embedding = None if pooled is None or reduction is None else reduction.apply(pooled)
        return encoded, softmax(logits), embedding

    @staticmethod
    def _outputs(
        model: LoadedModel, probs: np.ndarray, embedding: np.ndarray | None
    ) -> list[ModelOutput]:
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
                    embedding=[] if embedding is None else embedding[row].astype(float).tolist(),
                )
            )
            prometheus.predictions.labels(model=model.name, predicted_class=labels[best]).inc()
            prometheus.confidence.labels(model=model.name).observe(float(probs[row, best]))
        return outputs

    def predict(
        self, instances: list[Instance]
    ) -> tuple[list[Prediction], list[PredictionEvent], ShadowWork | None]:
        """Answer every instance: the answers, the prediction events complete now, and the
        primary's sequences waiting for the shadow models (None without shadows), whose events
        `run_shadows` completes.

        Instances are grouped by the model that answers them; within a model,
        sequences are batched by length (see `OnnxClassifier.predict`).
        """
        now = time.time()
        prometheus.batch_size.observe(len(instances))
        answers: list[Prediction | None] = [None] * len(instances)
        events: list[PredictionEvent] = []
        work = None
        groups: dict[str, list[int]] = {}
        for i, instance in enumerate(instances):
            groups.setdefault(instance.model or self.primary.name, []).append(i)
        texts = [instance.sequence for instance in instances]
        for name, rows in groups.items():
            model = self.models[name]
            tokens = [texts[i] for i in rows]
            encodings: dict[tuple, Encoded] = {}
            encoded, probs, embedding = self._run(model, tokens, encodings)
            prometheus.input_long_words.inc(sum(encoded.clipped_words))  # once per instance
            outputs = self._outputs(model, probs, embedding)
            group_events = []
            for k, i in enumerate(rows):
                features = drift_features(
                    encoded.ids[k], model.bundle.tokenizer, model.bundle.meta.max_trained_length
                )
                prometheus.input_length.observe(features["length"])
                prometheus.input_oov_share.observe(features["oov_share"])
                out = outputs[k]
                answers[i] = Prediction(
                    request_id=instances[i].request_id,
                    label=out.predicted_label,
                    confidence=out.confidence,
                    probabilities=out.probabilities,
                    model=out.model,
                    model_version=out.model_version,
                )
                group_events.append(
                    PredictionEvent(
                        **out.model_dump(),
                        request_id=instances[i].request_id,
                        timestamp=now,
                        domain=instances[i].domain,
                        features=features,
                    )
                )
            if model is self.primary and self.shadows:
                shadow_names = [shadow.name for shadow in self.shadows]
                work = ShadowWork(tokens, encodings, group_events, shadow_names)
            else:
                events += group_events
        return answers, events, work  # type: ignore[return-value]

    def run_shadows(self, work: ShadowWork) -> list[PredictionEvent]:
        """Every shadow model on the primary's answered sequences; their events, completed."""
        for shadow in self.shadows:
            _, probs, embedding = self._run(shadow, work.texts, work.encodings)
            for event, output in zip(
                work.events, self._outputs(shadow, probs, embedding), strict=True
            ):
                event.shadows.append(output)
        return work.events
