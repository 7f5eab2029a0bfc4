"""ASGI middleware in front of the APIs: body size (413), malformed JSON (400), bearer token
(401), and the count of every 4xx by reason. BentoML has no request-body limit of its own."""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable

from service import metrics
from service.rejections import start_request

Scope = dict
Message = dict
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
LIMITED_PATHS = ("/predict", "/feedback")


class RequestLimits:
    def __init__(self, app, max_body_bytes: int, feedback_token: str | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.feedback_token = feedback_token

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
        headers = dict(scope.get("headers", []))
        if endpoint == "feedback" and self.feedback_token is not None:
            given = headers.get(b"authorization", b"").decode("latin-1")
            if not secrets.compare_digest(given, f"Bearer {self.feedback_token}"):
                await self._reject(
                    send, endpoint, 401, "unauthorized", "Authorization: bearer token required"
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
        try:
            json.loads(body)
        except ValueError as exc:
            await self._reject(
                send, endpoint, 400, "malformed_json", f"body: malformed JSON: {exc}"
            )
            return

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
            metrics.rejected.labels(
                endpoint=endpoint, reason=holder.get("reason", "invalid_schema")
            ).inc()

    async def _too_large(self, send: Send, endpoint: str, size: int) -> None:
        message = (
            f"body: {size} bytes exceeds the limit of {self.max_body_bytes} "
            "(SHIFTWATCH_MAX_BODY_BYTES)"
        )
        await self._reject(send, endpoint, 413, "body_too_large", message)

    @staticmethod
    async def _reject(send: Send, endpoint: str, status: int, reason: str, message: str) -> None:
        metrics.rejected.labels(endpoint=endpoint, reason=reason).inc()
        body = json.dumps({"error": message}).encode()
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
