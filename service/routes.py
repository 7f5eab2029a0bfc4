"""POST /predict and /feedback, served ahead of BentoML's API layer, in the same service.

Measured (docs/benchmarks.md, issue 24): BentoML's API path cost more than the whole model.
Its middlewares (tracing, metrics by path, access log, concurrency limit, timeout), its
request and response IO descriptors and its batch dispatcher came to ~2 ms per /predict on
a 2-core machine, against 0.14 ms for session.run. Here each request is read once, parsed
and validated in one pass from the bytes by pydantic-core (the same `Instances` and
`FeedbackItems` types the API methods declare), batched by the service's `Batcher`
(service/batcher.py), answered with
pydantic-core's JSON. The API methods stay declared on the service (service.py), so its
OpenAPI schema, docs page and `bentoml.SyncHTTPClient` are unchanged; they call the same
`Shiftwatch` methods as these routes.

Kept from BentoML's layer, with the same statuses: the concurrency limit (429 beyond
SHIFTWATCH_MAX_CONCURRENCY requests in flight), the request timeout (504 after
SHIFTWATCH_REQUEST_TIMEOUT_SECONDS), validation errors (400 with BentoML's JSON shape), 503
while the models load and when the batch queue is over SHIFTWATCH_MAX_LATENCY_MS; the
request metrics, as shiftwatch_http_* (same labels as bentoml_service_request_*). Not kept:
BentoML's access log line per request (the metrics count every request; 4xx are logged by
service/limits.py, 5xx with their traceback).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time

import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import TypeAdapter, ValidationError

from service import prometheus
from service.batcher import QueueTimeout
from service.limits import send_json
from service.rejections import reject
from service.schemas import FeedbackReceipt, FeedbackRequest, Prediction, PredictRequest
from shiftwatch.settings import ServiceSettings

log = logging.getLogger("shiftwatch.service")
PREDICTIONS = TypeAdapter(list[Prediction])
ROUTES = ("/predict", "/feedback")


class Answer(Exception):
    """A response other than the endpoint's answer, with its status and JSON body."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(body)
        self.status, self.body = status, body


def validation_answer(exc: ValidationError) -> Answer:
    """400 in BentoML's shape; a body that is not JSON at all says so first."""
    errors = exc.errors(include_context=False, include_input=False, include_url=False)
    if errors and errors[0]["type"] == "json_invalid":
        message = errors[0]["msg"].removeprefix("Invalid JSON: ")
        return Answer(
            400, {"error": str(reject("malformed_json", f"body: malformed JSON: {message}"))}
        )
    return Answer(
        400, {"error": f"{exc.error_count()} validation error for {exc.title}", "detail": errors}
    )


class ApiRoutes:
    """ASGI: the two endpoints; every other request goes on to `app` (BentoML's)."""

    def __init__(self, app, settings: ServiceSettings, service_name: str) -> None:
        self.app = app
        self.settings = settings
        self.service_name = service_name
        # Both outcomes exist at 0 from start-up: the error-ratio panel and alert read 0, not
        # nothing, until the first 5xx.
        for endpoint in ROUTES:
            for status in (200, 500):
                prometheus.http_requests.labels(service_name, endpoint, status)
        self.in_flight = 0
        # SHIFTWATCH_MAX_CONCURRENCY is the service's; each worker takes its share, as BentoML's.
        self.max_in_flight = math.ceil(settings.max_concurrency / settings.workers)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in ROUTES:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        endpoint = scope["path"]
        gauge = prometheus.http_in_progress.labels(self.service_name, endpoint)
        if self.in_flight >= self.max_in_flight:
            status, body = 429, {"error": "Too many requests (SHIFTWATCH_MAX_CONCURRENCY)"}
        else:
            self.in_flight += 1
            gauge.inc()
            try:
                status, body = 200, await self.answer(endpoint, await read_body(receive))
            except Answer as answer:
                status, body = answer.status, answer.body
            except Exception:
                log.exception("%s failed", endpoint)
                status, body = 500, {"error": "An unexpected error has occurred, see the log."}
            finally:
                self.in_flight -= 1
                gauge.dec()
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        await send_json(send, status, body)
        labels = (self.service_name, endpoint, status)
        prometheus.http_requests.labels(*labels).inc()
        prometheus.http_request_seconds.labels(*labels).observe(time.perf_counter() - started)

    def service(self):
        try:
            service = bentoml.get_current_service()
        except BentoMLException:
            service = None
        if service is None:  # set once the models are loaded; still set while draining
            raise Answer(503, {"error": "the service is not ready (models loading)"})
        return service

    async def answer(self, endpoint: str, body: bytes) -> bytes:
        service = self.service()
        if endpoint == "/feedback":
            try:
                labels = FeedbackRequest.model_validate_json(body).labels
                receipt: FeedbackReceipt = service.take_labels(labels)
            except ValidationError as exc:
                raise validation_answer(exc) from None
            return receipt.__pydantic_serializer__.to_json(receipt)
        try:
            instances = PredictRequest.model_validate_json(body).instances
        except ValidationError as exc:
            raise validation_answer(exc) from None
        try:
            answers = await asyncio.wait_for(
                service.batcher.submit(instances), self.settings.request_timeout_seconds
            )
        except QueueTimeout as exc:
            raise Answer(503, {"error": str(exc)}) from None
        except TimeoutError:
            seconds = self.settings.request_timeout_seconds
            raise Answer(
                504, {"error": f"no answer within {seconds} s (SHIFTWATCH_REQUEST_TIMEOUT_SECONDS)"}
            ) from None
        return PREDICTIONS.serializer.to_json(answers)


async def read_body(receive) -> bytes:
    """The whole body (its size is bounded ahead of here, by service/limits.py)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Answer(499, {"error": "client disconnected"})
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
