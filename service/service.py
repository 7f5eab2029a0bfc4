"""The BentoML service: model references, sessions opened at start-up, two typed APIs.

Settings are read when this module is imported: BentoML's decorators need the
batching numbers and the limits then. Everything else is in `Predictor`.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import OrderedDict

import bentoml
from bentoml.models import BentoModel
from pydantic_core import PydanticCustomError, ValidationError

from service import metrics
from service.event_log import EventLog
from service.limits import RequestLimits
from service.predictor import Predictor, StartupError
from service.rejections import reject
from service.schemas import FeedbackItems, FeedbackReceipt, Instances, Predictions
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


def stored_bundles(service_class: type) -> dict[str, tuple[ModelBundle, str]]:
    """Every configured model's bundle, from the class-level store references."""
    return {name: load_stored_bundle(getattr(service_class, name)) for name in SETTINGS.models}


def unknown_label_error(index: int, label: str, known: set[str]) -> ValidationError:
    """A 400 like every other validation error: BentoML renders an `InvalidArgument` as a
    one-element JSON list instead of the {"error", "detail"} object the other 4xx carry."""
    message = str(
        reject(
            "unknown_label",
            f"labels[{index}].label: {label!r} is not one of the model's labels {sorted(known)}",
        )
    )
    error = PydanticCustomError("unknown_label", "{message}", {"message": message})
    return ValidationError.from_exception_data(
        "FeedbackItems", [{"type": error, "loc": ("labels", index, "label"), "input": label}]
    )


@bentoml.service(
    name="shiftwatch",
    workers=1,
    traffic={"timeout": 30, "max_concurrency": SETTINGS.max_concurrency},
)
class Shiftwatch:
    baseline = BentoModel("shiftwatch-baseline:latest")
    research = BentoModel("shiftwatch-research:latest")
    no_pe = BentoModel("shiftwatch-no_pe:latest")

    @bentoml.on_deployment
    def check_models() -> None:
        """Load every model once in `bentoml serve`'s own process, before any worker starts.

        A worker that fails in `__init__` is respawned forever outside a container (BentoML's
        circus watcher respawns unless BENTOML_CONTAINERIZED is set), so a bad bundle would
        never stop start-up; failing here exits non-zero with one line.
        """
        # CPU sessions: the same graph checks without a CUDA context kept by this process.
        settings = SETTINGS.model_copy(update={"prefer_gpu": False})
        try:
            Predictor(stored_bundles(Shiftwatch.inner), settings).warm_up()
        except Exception as exc:  # bundle contract, onnxruntime or settings: all stop start-up
            reason = exc if isinstance(exc, StartupError) else f"{type(exc).__name__}: {exc}"
            raise SystemExit(f"shiftwatch cannot start: {reason}") from None

    def __init__(self) -> None:
        self.ready = False
        try:
            self.predictor = Predictor(stored_bundles(type(self)), SETTINGS)
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
        self._drain_on_sigterm()
        self.ready = True
        log.info(
            "shiftwatch ready: primary %s, shadows %s", SETTINGS.primary_model, SETTINGS.models[1:]
        )

    def __is_ready__(self) -> bool:
        return self.ready

    def _drain_on_sigterm(self) -> None:
        """SIGTERM: not ready at once, still serving for SHIFTWATCH_SHUTDOWN_DRAIN_SECONDS, then
        uvicorn's own graceful shutdown (in-flight requests finish, the process exits).

        uvicorn has installed its handlers before the service starts; ours wraps its SIGTERM
        handler. A second SIGTERM skips the wait.
        """
        previous = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is not threading.main_thread() or not callable(previous):
            return  # not inside a server (e.g. constructed by a test): nothing to wrap

        def on_sigterm(signum: int, frame) -> None:
            if not self.ready:
                previous(signum, frame)
                return
            self.ready = False
            log.info("SIGTERM: /readyz 503, draining for %.1f s", SETTINGS.shutdown_drain_seconds)
            drain = threading.Timer(SETTINGS.shutdown_drain_seconds, previous, (signum, frame))
            drain.daemon = True
            drain.start()

        signal.signal(signal.SIGTERM, on_sigterm)

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
    def predict(self, instances: Instances) -> Predictions:
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
                raise unknown_label_error(i, item.label, self.labels)
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
