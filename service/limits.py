"""ASGI middleware in front of the API routes: a header sent twice (400), body size (413),
media type (415), bearer token (401), and the count and log line of every 4xx by reason
(service/rejections.py). The routes (service/routes.py) parse the body once, malformed JSON
included.

Only JSON is accepted: a request without a Content-Type is read as JSON.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable

from service import prometheus
from service.rejections import RejectionLog, start_request

Scope = dict
Message = dict
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
LIMITED_PATHS = ("/predict", "/feedback")
# Headers read once: sent twice, two readers could read different copies (a multipart
# Content-Type first and a JSON one last once gave BentoML's form parser a JSON body and a
# 500), so a second copy is a 400.
SINGLE_HEADERS = (b"content-type", b"content-length", b"authorization")


class RequestLimits:
    # A token no request can present (Authorization headers are latin-1 bytes, never "\n"):
    # every label refused, for a service whose /feedback access is misconfigured.
    REFUSE_ALL = "\n<no feedback token configured>\n"

    def __init__(
        self,
        app,
        max_body_bytes: int,
        feedback_token: str | None = None,
        service_name: str = "shiftwatch",
    ) -> None:
        """`feedback_token`: the bearer token /feedback requires; None serves it open (only
        with SHIFTWATCH_FEEDBACK_OPEN: see ServiceSettings.feedback_access)."""
        self.app = app
        self.service_name = service_name
        self.max_body_bytes = max_body_bytes
        self.feedback_token = feedback_token
        self.rejection_log = RejectionLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] not in LIMITED_PATHS
            or scope["method"] != "POST"
        ):
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"].strip("/")
        holder = start_request()
        names = [name for name, _ in scope.get("headers", [])]
        for name in SINGLE_HEADERS:
            if (copies := names.count(name)) > 1:
                message = f"{name.decode()}: sent {copies} times; send it once"
                await self._reject(send, endpoint, 400, "duplicate_header", message)
                return
        headers = dict(scope.get("headers", []))
        if endpoint == "feedback" and self.feedback_token is not None:
            # Bytes: compare_digest raises TypeError on a str with non-ASCII characters.
            given = headers.get(b"authorization", b"")
            if not secrets.compare_digest(given, f"Bearer {self.feedback_token}".encode()):
                await self._reject(
                    send, endpoint, 401, "unauthorized", "Authorization: bearer token required"
                )
                return
        media_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip()
        if media_type and media_type.lower() != "application/json":
            await self._reject(
                send,
                endpoint,
                415,
                "unsupported_media_type",
                f"content-type: {media_type[:100]!r} is not supported; send application/json",
            )
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(send, endpoint, int(declared))
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(send, endpoint, size)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, replay, watch)
        if 400 <= status < 500:
            self._count(endpoint, status, holder.get("reason", "invalid_schema"))

    def _count(self, endpoint: str, status: int, reason: str) -> None:
        prometheus.rejected.labels(endpoint=endpoint, reason=reason).inc()
        self.rejection_log.rejected("POST", f"/{endpoint}", status, reason)

    async def _too_large(self, send: Send, endpoint: str, size: int) -> None:
        message = (
            f"body: {size} bytes exceeds the limit of {self.max_body_bytes} "
            "(SHIFTWATCH_MAX_BODY_BYTES)"
        )
        await self._reject(send, endpoint, 413, "body_too_large", message)

    async def _reject(
        self, send: Send, endpoint: str, status: int, reason: str, message: str
    ) -> None:
        """Answered here: counted as the routes count what they answer (service/routes.py)."""
        self._count(endpoint, status, reason)
        labels = (self.service_name, f"/{endpoint}", status)
        prometheus.http_requests.labels(*labels).inc()
        await send_json(send, status, json.dumps({"error": message}).encode())


async def send_json(send: Send, status: int, body: bytes) -> None:
    """A whole JSON response."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
