"""The sidecar process: the ingest/compute loop in a thread, HTTP on the main thread.

GET /metrics (Prometheus), /healthz, /status (JSON of the latest window), /report
(Evidently HTML of the latest window; ?model=NAME, default the first model). A report takes
seconds of CPU: it is computed in a worker thread, one at a time, and once per window, so
/healthz keeps answering within its probe's timeout while reports are asked for.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from contextlib import asynccontextmanager

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from monitoring.evidently_report import drift_report_html
from monitoring.exporter import build_registry
from monitoring.monitor import Monitor
from monitoring.results import ModelWindow
from shiftwatch.settings import MonitorSettings

log = logging.getLogger(__name__)


def _json_safe(value):
    """NaN is not JSON: write null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


class Reports:
    """Evidently's HTML of each model's latest window: built off the event loop, one at a
    time (the others wait, then find it cached), and once per window."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self._built: dict[str, tuple[ModelWindow, str]] = {}
        self._one_at_a_time = asyncio.Lock()

    async def html(self, name: str, window: ModelWindow) -> str:
        async with self._one_at_a_time:
            built = self._built.get(name)
            if built is None or built[0] is not window:
                html = await anyio.to_thread.run_sync(
                    drift_report_html,
                    self.monitor.references[name].frame,
                    window.frame,
                    self.monitor.drift_config,
                )
                self._built[name] = built = (window, html)
            return built[1]


def create_app(settings: MonitorSettings) -> Starlette:
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's telemetry off
    monitor = Monitor(settings)
    registry, computation_seconds = build_registry(monitor)
    reports = Reports(monitor)
    stop = threading.Event()
    loop_started = time.monotonic()

    def loop() -> None:
        while not stop.is_set():
            monitor.step()  # catches, counts and backs off on every error of its stages
            with monitor.lock:
                drained, monitor.computation_seconds = monitor.computation_seconds, []
            for seconds in drained:
                computation_seconds.observe(seconds)
            stop.wait(settings.poll_seconds)

    thread = threading.Thread(target=loop, name="monitor-loop", daemon=True)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        alive = thread.is_alive()
        with monitor.lock:  # what keeps failing, since when: the loop retries it by itself
            failing = {stage: f.to_dict() for stage, f in monitor.failures.current.items()}
        body = {
            "alive": alive,
            "uptime_seconds": time.monotonic() - loop_started,
            "models": sorted(monitor.references),
            "failing": failing,
        }
        return JSONResponse(body, status_code=200 if alive and monitor.references else 503)

    async def status(_: Request) -> Response:
        return JSONResponse(_json_safe(monitor.status()))

    async def report(request: Request) -> Response:
        name = request.query_params.get("model") or next(iter(monitor.references), None)
        with monitor.lock:
            window = monitor.windows.get(name)
        if (
            name not in monitor.references
            or window is None
            or window.rows < monitor.drift_config.min_window
        ):
            return JSONResponse(
                {"error": f"model {name!r}: no window with enough rows yet"}, status_code=404
            )
        return HTMLResponse(await reports.html(name, window))

    @asynccontextmanager
    async def lifespan(_: Starlette):
        thread.start()
        yield
        stop.set()
        thread.join(timeout=10)

    app = Starlette(
        routes=[
            Route("/metrics", metrics),
            Route("/healthz", healthz),
            Route("/status", status),
            Route("/report", report),
        ],
        lifespan=lifespan,
    )
    app.state.monitor = monitor
    return app


def serve(settings: MonitorSettings) -> None:
    import uvicorn

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
