"""Shadow models off the request path: a bounded queue and a background thread that hands the
waiting work to the shadows (service/shadow_process.py: a process of their own) in batches.

A request is answered as soon as the primary has answered; its sequences then wait here
for the shadow models, and their prediction events are written once the shadows finish.
Whatever queued while the shadows ran goes to them as one batch.
Guarantees:
- never blocks a prediction: `submit` only enqueues; when more than `capacity` sequences
  are waiting (the worker is saturated) the events are written at once with every shadow
  skipped, counted in `shiftwatch_shadow_skipped_total{reason="saturated"}`;
- nothing is lost silently: every submitted event is delivered exactly once, with its
  shadows' outputs or with `skipped_shadows` naming those that did not run (reason
  `saturated`, `shutdown` for work still waiting when `close` runs out of time, `error`
  when a shadow model raised, logged with its traceback).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from service import prometheus
from shiftwatch.events import PredictionEvent
from shiftwatch.tokenizer import Encoded

log = logging.getLogger(__name__)


@dataclass
class ShadowWork:
    """Sequences the primary has answered, waiting for the shadow models."""

    texts: list[str]
    encodings: dict[tuple, Encoded]  # the primary's, by tokenizer: shadows sharing it reuse them
    events: list[PredictionEvent]  # one per text, in order; `shadows` filled by the worker
    shadow_names: list[str]  # the configured shadow models

    def __len__(self) -> int:
        return len(self.texts)

    @classmethod
    def merged(cls, works: list[ShadowWork]) -> ShadowWork:
        """Several requests' work as one batch for the shadows (their encodings dropped)."""
        if len(works) == 1:
            return works[0]
        return cls(
            [text for work in works for text in work.texts],
            {},
            [event for work in works for event in work.events],
            works[0].shadow_names,
        )

    def skipped(self) -> list[PredictionEvent]:
        """The events with every shadow marked skipped (no shadow outputs)."""
        for event in self.events:
            event.shadows, event.skipped_shadows = [], list(self.shadow_names)
        return self.events


class ShadowWorker:
    """One thread running `run_shadows` on submitted work, in order; `deliver` gets the
    finished events (also those skipped). Both are called on the worker's thread, except
    for skipped work, which `submit` and `close` deliver on the caller's."""

    def __init__(
        self,
        run_shadows: Callable[[ShadowWork], list[PredictionEvent]],
        deliver: Callable[[list[PredictionEvent]], None],
        capacity: int,
    ) -> None:
        self.run_shadows = run_shadows
        self.deliver = deliver
        self.capacity = capacity  # sequences waiting, beyond which new work is skipped
        self._jobs: deque[ShadowWork] = deque()
        self._waiting = 0  # sequences in `_jobs`
        self._changed = threading.Condition()
        self._closing = False
        self._deadline = float("inf")  # monotonic time after which waiting work is skipped
        self._thread = threading.Thread(target=self._serve, name="shadow-worker", daemon=True)

    def start(self) -> ShadowWorker:
        self._thread.start()
        return self

    @property
    def pending(self) -> int:
        """Sequences waiting for the worker."""
        with self._changed:
            return self._waiting

    def submit(self, work: ShadowWork) -> None:
        """Queue `work` for the shadows; never blocks on inference, never raises."""
        with self._changed:
            accepted = not self._closing and self._waiting + len(work) <= self.capacity
            if accepted:
                self._jobs.append(work)
                self._waiting += len(work)
                prometheus.shadow_queue.set(self._waiting)
                self._changed.notify()
        if not accepted:
            self._skip(work, "shutdown" if self._closing else "saturated")

    def close(self, timeout: float = 5.0) -> None:
        """Finish the waiting work within `timeout` seconds; what is still waiting then is
        delivered with its shadows skipped (reason `shutdown`). Later submissions too."""
        with self._changed:
            self._closing = True
            self._deadline = time.monotonic() + timeout
            self._changed.notify()
        if self._thread.is_alive():
            self._thread.join(timeout + 1.0)
        for work in self._take_all():  # the worker is stuck in a shadow past the deadline
            self._skip(work, "shutdown")

    def _take_all(self) -> list[ShadowWork]:
        with self._changed:
            jobs, self._waiting = list(self._jobs), 0
            self._jobs.clear()
            prometheus.shadow_queue.set(0)
        return jobs

    def _next(self) -> ShadowWork | None:
        """Everything waiting, as one batch (one run of the shadows, however many requests
        queued meanwhile); None once closing with nothing left."""
        with self._changed:
            while not self._jobs and not self._closing:
                self._changed.wait()
            if not self._jobs:
                return None
            jobs = list(self._jobs)
            self._jobs.clear()
            self._waiting = 0
            prometheus.shadow_queue.set(0)
        return ShadowWork.merged(jobs)

    def _serve(self) -> None:
        while (work := self._next()) is not None:
            if time.monotonic() > self._deadline:
                self._skip(work, "shutdown")
                continue
            try:
                events = self.run_shadows(work)
            except Exception:  # a shadow's failure must not lose the primary's events
                log.exception("shadow models failed on %d sequences", len(work))
                self._skip(work, "error")
                continue
            self.deliver(events)

    def _skip(self, work: ShadowWork, reason: str) -> None:
        prometheus.shadow_skipped.labels(reason=reason).inc(len(work))
        self.deliver(work.skipped())
