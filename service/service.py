"""The BentoML service: model references, sessions opened at start-up, two typed APIs.

Settings are read when this module is imported: BentoML's decorators need the
batching numbers and the limits then, and the model references too, since the
models are the user's (`SHIFTWATCH_PRIMARY_MODEL`, `SHIFTWATCH_SHADOW_MODELS`: names of
bundles in the BentoML model store). Everything else is in `Predictor`.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import OrderedDict

import attrs
import bentoml
from bentoml.exceptions import BentoMLException
from bentoml.models import BentoModel
from pydantic_core import PydanticCustomError, ValidationError
from starlette.responses import JSONResponse

from service import prometheus
from service.batcher import Batcher
from service.event_log import open_event_log
from service.limits import RequestLimits
from service.paths import PathBoundService
from service.predictor import Predictor, StartupError
from service.rejections import reject
from service.routes import ApiRoutes
from service.schemas import (
    FeedbackItem,
    FeedbackItems,
    FeedbackReceipt,
    Instance,
    Instances,
    Prediction,
    Predictions,
)
from service.shadow_process import ShadowProcess
from service.shadows import ShadowWorker
from shiftwatch.bundle import BundleError, ModelBundle
from shiftwatch.events import LabelEvent
from shiftwatch.model_store import missing_model_message, read_stored_bundle
from shiftwatch.settings import FeedbackAccessError, service_settings

log = logging.getLogger("shiftwatch.service")
SETTINGS = service_settings()


def feedback_token() -> str | None:
    """The bearer token /feedback requires (None: explicitly open, SHIFTWATCH_FEEDBACK_OPEN).

    A missing or empty token without the open setting raises FeedbackAccessError; start-up
    (`check_models`, before any worker) turns it into one line and a non-zero exit. Read at
    import for the middleware, which then refuses every label (REFUSE_ALL) rather than open
    the endpoint, should a worker ever get that far.
    """
    return SETTINGS.feedback_access()


try:
    FEEDBACK_TOKEN: str | None = feedback_token()
except FeedbackAccessError:
    FEEDBACK_TOKEN = RequestLimits.REFUSE_ALL


# BentoML finds a service's models among its class attributes (they are what `bentoml build`
# packs). The names come from the settings, so the references are made here and set on the
# class below, one attribute per configured model.
MODEL_REFERENCES = {name: BentoModel(tag) for name, tag in SETTINGS.model_refs.items()}


def load_stored_bundle(name: str, reference: BentoModel) -> tuple[ModelBundle, str]:
    """The bundle behind a model-store reference, validated; never fetched from a remote."""
    stored = reference.stored
    if stored is None:
        raise StartupError(missing_model_message(name, str(reference.tag)))
    try:
        return read_stored_bundle(stored), str(stored.tag)
    except BundleError as exc:
        raise StartupError(f"model {stored.tag}: {exc}") from exc


def stored_bundles() -> dict[str, tuple[ModelBundle, str]]:
    """Every configured model's bundle, from the class-level store references."""
    return {name: load_stored_bundle(name, ref) for name, ref in MODEL_REFERENCES.items()}


class ModelCatalog:
    """ASGI middleware answering GET /models: the loaded models, their versions, roles and
    labels (the primary first). BentoML's own APIs take POST only; a mounted app would
    answer /models with a redirect to /models/."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == "/models" and scope["method"] == "GET":
            try:
                answer = JSONResponse(bentoml.get_current_service().model_catalog())
            except (BentoMLException, AttributeError):  # no service, or not loaded yet
                answer = JSONResponse({"error": "models are not loaded yet"}, status_code=503)
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)


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


class Shiftwatch:
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
            feedback_token()  # an open /feedback must be asked for, never the default
            Predictor(stored_bundles(), settings).warm_up()
        except Exception as exc:  # bundle contract, onnxruntime or settings: all stop start-up
            known = (StartupError, FeedbackAccessError)
            reason = exc if isinstance(exc, known) else f"{type(exc).__name__}: {exc}"
            raise SystemExit(f"shiftwatch cannot start: {reason}") from None

    def __init__(self) -> None:
        self.ready = False
        try:
            feedback_token()
        except FeedbackAccessError as exc:
            log.error("shiftwatch cannot start: %s", exc)
            raise
        try:
            self.predictor = Predictor(stored_bundles(), SETTINGS)
        except StartupError as exc:
            log.error("shiftwatch cannot start: %s", exc)
            raise
        self.predictor.warm_up()
        # A label must be one that some loaded model can predict.
        self.labels = set().union(*(m.labels for m in self.predictor.models.values()))
        self.event_log = open_event_log(SETTINGS)
        # The shadows run in a process of their own (service/shadow_process.py); this one
        # keeps their sessions too, for requests that name a shadow model.
        shadows = {m.name: (str(m.bundle.path), m.version) for m in self.predictor.shadows}
        self.shadow_process = ShadowProcess(shadows).start() if shadows else None
        run_shadows = self.shadow_process.run_shadows if shadows else self.predictor.run_shadows
        self.shadow_worker = ShadowWorker(run_shadows, self.record, SETTINGS.shadow_queue).start()
        # /predict's instances, batched across requests (service/routes.py submits them).
        self.batcher = Batcher(
            self.answer_instances,
            SETTINGS.max_batch_size,
            SETTINGS.max_latency_ms,
            SETTINGS.batching,
        )
        # Recent (request id, label) pairs: the same label sent again is counted, not logged.
        self.labelled: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.last_request = time.monotonic()  # of /predict or /feedback: the drain's clock
        self._drain_on_sigterm()
        self.ready = True
        log.info(
            "shiftwatch ready: primary %s, shadows %s", SETTINGS.primary_name, SETTINGS.models[1:]
        )

    def __is_ready__(self) -> bool:
        return self.ready

    def model_catalog(self) -> dict:
        """What GET /models answers."""
        return {
            "primary": self.predictor.primary.name,
            "models": [
                {
                    "name": m.name,
                    "version": m.version,
                    "role": "primary" if m is self.predictor.primary else "shadow",
                    "architecture": m.bundle.meta.architecture,
                    "labels": m.labels,
                    "max_positions": m.bundle.meta.max_positions,
                    "embedding": m.bundle.meta.embedding_output is not None,
                }
                for m in self.predictor.models.values()
            ],
        }

    def _drain_on_sigterm(self) -> None:
        """SIGTERM: not ready at once, still serving until requests stop arriving (none for
        SHIFTWATCH_SHUTDOWN_QUIET_SECONDS) or SHIFTWATCH_SHUTDOWN_DRAIN_SECONDS have passed,
        then uvicorn's own graceful shutdown (in-flight requests finish, the process exits).

        uvicorn has installed its handlers before the service starts; ours wraps its SIGTERM
        handler. A second SIGTERM skips the wait.
        """
        previous = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is not threading.main_thread() or not callable(previous):
            return  # not inside a server (e.g. constructed by a test): nothing to wrap

        def drain(signum: int, frame) -> None:
            deadline = time.monotonic() + SETTINGS.shutdown_drain_seconds
            while (now := time.monotonic()) < deadline:
                if now - self.last_request >= SETTINGS.shutdown_quiet_seconds:
                    break
                time.sleep(0.05)
            log.info("SIGTERM: drained, stopping")
            previous(signum, frame)

        def on_sigterm(signum: int, frame) -> None:
            if not self.ready:
                previous(signum, frame)
                return
            self.ready = False
            log.info(
                "SIGTERM: /readyz 503, draining until %.1f s without requests (at most %.1f s)",
                SETTINGS.shutdown_quiet_seconds,
                SETTINGS.shutdown_drain_seconds,
            )
            threading.Thread(target=drain, args=(signum, frame), daemon=True).start()

        signal.signal(signal.SIGTERM, on_sigterm)

    def record(self, events: list) -> None:
        """Hand events to the event log (when it is on)."""
        if self.event_log is not None:
            self.event_log.append(events)

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self.ready = False
        self.batcher.close()  # the batch running finishes; its events reach the log below
        self.shadow_worker.close()  # its events go to the event log, closed after it
        if self.shadow_process is not None:
            self.shadow_process.stop()
        if self.event_log is not None:
            self.event_log.close()

    def answer_instances(self, instances: list[Instance]) -> list[Prediction]:
        """Classify a batch of instances (those of one or more requests: service/batcher.py);
        their events go to the event log, the shadows' part after the answer."""
        self.last_request = time.monotonic()
        predictions, events, shadow_work = self.predictor.predict(instances)
        self.record(events)
        if shadow_work is not None:  # the answer goes out now; the shadows run after it
            self.shadow_worker.submit(shadow_work)
        return predictions

    def take_labels(self, labels: list[FeedbackItem]) -> FeedbackReceipt:
        """True labels for served request ids. Each distinct (id, label) is logged once; the
        monitor joins a label only to a prediction served before it, so a label posted
        for an id before its request was served (a guess, a forgery) cannot take the place
        of the true one (docs/security.md)."""
        self.last_request = time.monotonic()
        for i, item in enumerate(labels):
            if item.label not in self.labels:
                raise unknown_label_error(i, item.label, self.labels)
        events, duplicates = [], 0
        for item in labels:
            key = (item.request_id, item.label)
            if key in self.labelled:
                duplicates += 1
                continue
            self.labelled[key] = None
            if len(self.labelled) > SETTINGS.feedback_dedup_window:
                self.labelled.popitem(last=False)
            events.append(
                LabelEvent(request_id=item.request_id, label=item.label, timestamp=time.time())
            )
        prometheus.feedback_labels.labels(result="accepted").inc(len(events))
        prometheus.feedback_labels.labels(result="duplicate").inc(duplicates)
        self.record(events)
        return FeedbackReceipt(accepted=len(events), duplicates=duplicates)

    # The HTTP API as BentoML declares it: its OpenAPI schema, docs page and clients. Requests
    # to these paths are served by service/routes.py, which calls the same two methods.
    @bentoml.api(route="/predict")
    def predict(self, instances: Instances) -> Predictions:
        """Classify 1..N sequences (`tokens` or `text`) with the primary or a named model."""
        return self.answer_instances(instances)

    @bentoml.api(route="/feedback")
    def feedback(self, labels: FeedbackItems) -> FeedbackReceipt:
        """True labels for served request ids (see `take_labels`)."""
        return self.take_labels(labels)


for _index, _reference in enumerate(MODEL_REFERENCES.values()):
    setattr(Shiftwatch, f"model_reference_{_index}", _reference)
Shiftwatch = bentoml.service(
    name="shiftwatch",
    workers=SETTINGS.workers,
    traffic={
        "timeout": SETTINGS.request_timeout_seconds,
        "max_concurrency": SETTINGS.max_concurrency,
    },
    # A Bento packs the models configured when `bentoml build` ran; its image serves those
    # same models by default (the environment of the container can still override them).
    envs=[
        {"name": "SHIFTWATCH_PRIMARY_MODEL", "value": SETTINGS.primary_model},
        {"name": "SHIFTWATCH_SHADOW_MODELS", "value": ",".join(SETTINGS.shadow_models)},
    ],
)(Shiftwatch)


@attrs.define
class LeanService(PathBoundService):
    """The limits and the two API routes ahead of BentoML's app (service/routes.py)."""

    def front(self, app):
        routes = ApiRoutes(app, SETTINGS, self.name)
        return RequestLimits(routes, SETTINGS.max_body_bytes, FEEDBACK_TOKEN, self.name)


# Unknown paths are refused and the API served outside BentoML's own middlewares
# (service/paths.py, service/routes.py): BentoML offers no hook ahead of its metrics, so the
# service takes a subclass that wraps its app.
Shiftwatch.__class__ = LeanService
Shiftwatch.add_asgi_middleware(ModelCatalog)
