"""The BentoML service: model references, sessions opened at start-up, two typed APIs.

Settings are read when this module is imported: BentoML's decorators need the
batching numbers and the limits then. Everything else is in `Predictor`.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import bentoml
from bentoml.exceptions import InvalidArgument
from bentoml.models import BentoModel

from service import metrics
from service.event_log import EventLog
from service.limits import RequestLimits
from service.predictor import Predictor, StartupError
from service.rejections import reject
from service.schemas import FeedbackItems, FeedbackReceipt, Instances, Prediction
from shiftwatch.bundle import BundleError, ModelBundle, read_bundle
from shiftwatch.events import LabelEvent
from shiftwatch.settings import service_settings

log = logging.getLogger("shiftwatch.service")
SETTINGS = service_settings()


def load_stored_bundle(reference: BentoModel) -> tuple[ModelBundle, str]:
    """The bundle behind a model-store reference, validated; never fetched from a remote."""
    stored = reference.stored
    if stored is None:
        raise StartupError(
            f"model {reference.tag} is not in the BentoML model store (BENTOML_HOME); "
            "run `shiftwatch export --all` first"
        )
    try:
        return read_bundle(stored.path), str(stored.tag)
    except BundleError as exc:
        raise StartupError(f"model {stored.tag}: {exc}") from exc


@bentoml.service(name="shiftwatch", workers=1, traffic={"timeout": 30})
class Shiftwatch:
    baseline = BentoModel("shiftwatch-baseline:latest")
    research = BentoModel("shiftwatch-research:latest")
    no_pe = BentoModel("shiftwatch-no_pe:latest")

    def __init__(self) -> None:
        self.ready = False
        try:
            bundles = {
                name: load_stored_bundle(getattr(type(self), name)) for name in SETTINGS.models
            }
            self.predictor = Predictor(bundles, SETTINGS)
        except StartupError as exc:
            log.error("shiftwatch cannot start: %s", exc)
            raise
        self.predictor.warm_up()
        self.labels = set(self.predictor.primary.labels)
        self.event_log = (
            EventLog(
                SETTINGS.event_log_dir,
                SETTINGS.event_log_segment_bytes,
                SETTINGS.event_log_max_bytes,
                SETTINGS.event_log_queue,
            ).start()
            if SETTINGS.event_log_enabled
            else None
        )
        self.labelled: OrderedDict[str, None] = OrderedDict()  # recent request ids with a label
        self.ready = True
        log.info(
            "shiftwatch ready: primary %s, shadows %s", SETTINGS.primary_model, SETTINGS.models[1:]
        )

    def __is_ready__(self) -> bool:
        return self.ready

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self.ready = False
        if self.event_log is not None:
            self.event_log.close()

    @bentoml.api(
        route="/predict",
        batchable=SETTINGS.batching,
        max_batch_size=SETTINGS.max_batch_size,
        max_latency_ms=SETTINGS.max_latency_ms,
    )
    def predict(self, instances: Instances) -> list[Prediction]:
        """Classify 1..N sequences (`tokens` or `text`) with the primary or a named model."""
        predictions, events = self.predictor.predict(instances)
        if self.event_log is not None:
            self.event_log.append(events)
        return predictions

    @bentoml.api(route="/feedback")
    def feedback(self, labels: FeedbackItems) -> FeedbackReceipt:
        """True labels for served request ids; the first label for an id wins."""
        for i, item in enumerate(labels):
            if item.label not in self.labels:
                raise InvalidArgument(
                    str(
                        reject(
                            "unknown_label",
                            f"labels[{i}].label: {item.label!r} is not one of "
                            f"the model's labels {sorted(self.labels)}",
                        )
                    )
                )
        events, duplicates = [], 0
        for item in labels:
            if item.request_id in self.labelled:
                duplicates += 1
                continue
            self.labelled[item.request_id] = None
            if len(self.labelled) > SETTINGS.feedback_dedup_window:
                self.labelled.popitem(last=False)
            events.append(
                LabelEvent(request_id=item.request_id, label=item.label, timestamp=time.time())
            )
        metrics.feedback_labels.labels(result="accepted").inc(len(events))
        metrics.feedback_labels.labels(result="duplicate").inc(duplicates)
        if self.event_log is not None:
            self.event_log.append(events)
        return FeedbackReceipt(accepted=len(events), duplicates=duplicates)


Shiftwatch.add_asgi_middleware(
    RequestLimits,
    max_body_bytes=SETTINGS.max_body_bytes,
    feedback_token=SETTINGS.feedback_token.get_secret_value() if SETTINGS.feedback_token else None,
)
