"""The shadow models in a process of their own, so they cost the serving process no CPU.

In the worker's own thread (before), the shadows' tokenizing, session.run and output
building competed with the next request for the worker's interpreter lock and cores: with
the default two shadows a one-client p50 was 1.35x the p50 without them. Here the worker only
hands the answered sequences and their events to a child process (one pipe message per
`ShadowWorker` batch) and gets the completed events back; the child loads the shadow models
alone, from the same bundles, and runs at a lower priority (SHIFTWATCH_SHADOW_NICE, 19: the lowest), so
on cores shared with the worker it takes the CPU the answers leave. `ShadowWorker` keeps its guarantees (bounded queue, every event
delivered once, shadows skipped and counted on error, saturation or shutdown).

The child is started with `spawn` (the worker has threads: onnxruntime's, the event loop's)
and inherits the worker's environment, so its Prometheus series land in the same
multiprocess folder and appear on the service's /metrics. A child that dies is started
again for the next batch; the batch that met the death is delivered with its shadows
skipped (`error`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from pathlib import Path

from service.shadows import ShadowWork
from shiftwatch.events import PredictionEvent

log = logging.getLogger(__name__)
START_TIMEOUT_S = 120.0  # importing onnxruntime and loading the shadow models
STOP_TIMEOUT_S = 5.0


class ShadowProcessError(RuntimeError):
    """The shadow process failed, or died, on a batch."""


def serve(connection, bundles: dict[str, tuple[str, str]]) -> None:
    """The child: load the shadows, then complete each batch received until None."""
    from service.predictor import Predictor
    from shiftwatch.bundle import read_bundle
    from shiftwatch.settings import service_settings

    settings = service_settings()
    os.nice(settings.shadow_nice)  # the answers first: this process takes what they leave
    loaded = {name: (read_bundle(Path(path)), version) for name, (path, version) in bundles.items()}
    predictor = Predictor(loaded, settings, shadows_only=True)
    predictor.warm_up()
    connection.send("ready")
    while (work := connection.recv()) is not None:
        try:
            connection.send(predictor.run_shadows(work))
        except Exception as exc:  # the parent logs it and skips this batch's shadows
            log.exception("shadow models failed on %d sequences", len(work))
            connection.send(ShadowProcessError(f"{type(exc).__name__}: {exc}"))


class ShadowProcess:
    """`run_shadows` for `ShadowWorker`, done in a child process. One caller at a time."""

    def __init__(self, bundles: dict[str, tuple[str, str]]) -> None:
        """`bundles`: each shadow model's name -> (bundle folder, version)."""
        self.bundles = bundles
        self._context = multiprocessing.get_context("spawn")
        self._process = None
        self._connection = None
        self._lock = threading.Lock()

    def start(self) -> ShadowProcess:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=serve, args=(child, self.bundles), name="shiftwatch-shadows", daemon=True
        )
        process.start()
        child.close()
        if not parent.poll(START_TIMEOUT_S) or parent.recv() != "ready":
            process.kill()
            raise ShadowProcessError(f"the shadow process did not start in {START_TIMEOUT_S} s")
        self._process, self._connection = process, parent
        log.info("shadow process %d ready: %s", process.pid, sorted(self.bundles))
        return self

    def run_shadows(self, work: ShadowWork) -> list[PredictionEvent]:
        with self._lock:
            if self._process is None or not self._process.is_alive():
                self.stop()
                self.start()
            try:
                # The primary's encodings stay here: the child encodes with its own models'.
                self._connection.send(ShadowWork(work.texts, {}, work.events, work.shadow_names))
                answer = self._connection.recv()
            except (EOFError, OSError) as exc:
                self.stop()
                raise ShadowProcessError(f"the shadow process died: {exc!r}") from exc
        if isinstance(answer, Exception):
            raise answer
        return answer

    def stop(self) -> None:
        process, connection = self._process, self._connection
        self._process = self._connection = None
        if process is None:
            return
        try:
            connection.send(None)
        except OSError:
            pass
        process.join(STOP_TIMEOUT_S)
        if process.is_alive():
            process.kill()
            process.join(STOP_TIMEOUT_S)
        connection.close()
