"""Adaptive batching of /predict: requests that wait while a batch runs go together in the next.

One inference thread runs one batch at a time. A request arriving while it is idle starts a
batch at once (no deliberate wait, so one client pays nothing for batching); requests that
arrive while a batch runs queue, and the next batch takes every one waiting, up to
SHIFTWATCH_MAX_BATCH_SIZE instances. The batch grows with the load by itself. A request that
has waited longer than SHIFTWATCH_MAX_LATENCY_MS when its batch would start is answered 503
instead (the queue is longer than the service can serve in time). With batching off each
request is its own batch.

This replaces BentoML's dispatcher for /predict (service/routes.py says why). Unlike it, it
keeps no history: BentoML's dispatcher held a lone request for the average queue wait of its
last 50 batches, which an overload inflated for minutes after it ended.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


class QueueTimeout(RuntimeError):
    """The request waited longer than the batch queue's limit: the service is overloaded."""


@dataclass
class Job:
    items: Sequence
    answer: asyncio.Future
    queued: float = field(default_factory=time.monotonic)


class Batcher:
    """Calls `run(items)` (a list in, a list of as many answers out) on batches of the items
    that `submit` receives, on one thread of its own."""

    def __init__(
        self,
        run: Callable[[list], list],
        max_batch_size: int,
        max_latency_ms: int,
        batching: bool = True,
    ) -> None:
        self.run = run
        self.max_batch_size = max_batch_size if batching else 1  # off: one request per batch
        self.max_wait = max_latency_ms / 1000
        self._waiting: deque[Job] = deque()
        self._busy = False
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="inference")

    async def submit(self, items: Sequence) -> list:
        """The answers for `items`, in order, once their batch has run; raises QueueTimeout
        when the items waited past the limit, or what `run` raised."""
        job = Job(items, asyncio.get_running_loop().create_future())
        self._waiting.append(job)
        if not self._busy:
            self._start_batch()
        return await job.answer

    def close(self) -> None:
        """Let the running batch finish and stop the inference thread."""
        self._thread.shutdown(wait=True)

    def _take(self) -> list[Job]:
        """The next batch: every waiting job that fits, the oldest first (at least one, even
        one larger than the batch size: the per-request limit is checked before it queues).
        Jobs that waited too long are answered QueueTimeout instead."""
        jobs: list[Job] = []
        size = 0
        now = time.monotonic()
        while self._waiting:
            job = self._waiting[0]
            if job.answer.done():  # the request gave up while waiting (its timeout)
                self._waiting.popleft()
                continue
            if now - job.queued > self.max_wait:
                self._waiting.popleft()
                waited = 1000 * (now - job.queued)
                job.answer.set_exception(
                    QueueTimeout(
                        f"waited {waited:.0f} ms in the batch queue, over the limit of "
                        f"{1000 * self.max_wait:.0f} ms (SHIFTWATCH_MAX_LATENCY_MS): overloaded"
                    )
                )
                continue
            if jobs and size + len(job.items) > self.max_batch_size:
                break
            self._waiting.popleft()
            jobs.append(job)
            size += len(job.items)
        return jobs

    def _start_batch(self) -> None:
        jobs = self._take()
        if not jobs:
            self._busy = False
            return
        self._busy = True
        items = [item for job in jobs for item in job.items]
        running = asyncio.get_running_loop().run_in_executor(self._thread, self.run, items)
        running.add_done_callback(lambda done: self._finish(jobs, done))

    def _finish(self, jobs: list[Job], done: asyncio.Future) -> None:
        error = done.exception()
        start = 0
        for job in jobs:
            if job.answer.done():  # the request gave up (timeout, disconnect)
                start += len(job.items)
                continue
            if error is not None:
                job.answer.set_exception(error)
            else:
                job.answer.set_result(done.result()[start : start + len(job.items)])
            start += len(job.items)
        self._busy = False
        if self._waiting:
            self._start_batch()
