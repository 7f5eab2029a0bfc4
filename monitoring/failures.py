"""What is failing in the monitor's loop, since when, and when to try again.

Every error of a stage (ingest, compute) is caught, classified into a bounded `reason`,
counted, logged once per change of reason, and retried with backoff (0.5 s doubling to
30 s), so the loop never dies and a fault that clears (a lock released, space freed, Redis
back) is recovered from without a restart. `/healthz` shows `failing`.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass

from shiftwatch.transport import Backoff, TransportError

log = logging.getLogger(__name__)
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0


def failure_reason(exc: BaseException) -> str:
    """A bounded label for an error (a metric label and a /healthz field)."""
    if isinstance(exc, TransportError):
        return f"transport_{exc.reason}"
    if isinstance(exc, sqlite3.OperationalError):
        message = str(exc).lower()
        if "locked" in message or "busy" in message:
            return "state_locked"
        if "full" in message:
            return "disk_full"
        return "state_error"
    if isinstance(exc, sqlite3.Error):
        return "state_error"
    if isinstance(exc, OSError):
        return "io"
    return "unexpected"


@dataclass
class Failure:
    reason: str
    since: float  # unix time of the first failure in this run of failures
    count: int
    message: str

    def to_dict(self) -> dict:
        return {
            "reason": self.reason,
            "since": self.since,
            "count": self.count,
            "message": self.message,
        }


class Failures:
    def __init__(self) -> None:
        self.current: dict[str, Failure] = {}  # by stage, while it keeps failing
        self.counts: dict[str, int] = {}  # `<stage>_<reason>` -> failures since start
        self._retry: dict[str, Backoff] = {}

    def ready(self, stage: str) -> bool:
        """Whether `stage` may run now (not waiting out a backoff)."""
        return stage not in self._retry or self._retry[stage].ready()

    def failed(self, stage: str, exc: BaseException) -> None:
        reason = failure_reason(exc)
        key = f"{stage}_{reason}"
        self.counts[key] = self.counts.get(key, 0) + 1
        message = f"{type(exc).__name__}: {exc}"[:300]
        previous = self.current.get(stage)
        if previous is None or previous.reason != reason:
            log.error("%s failing (%s): %s; retrying with backoff", stage, reason, message,
                      exc_info=reason == "unexpected")  # fmt: skip
        since = previous.since if previous is not None else time.time()
        count = previous.count + 1 if previous is not None else 1
        self.current[stage] = Failure(reason, since, count, message)
        self._retry.setdefault(stage, Backoff(FIRST_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS)).failed()

    def succeeded(self, stage: str) -> None:
        failure = self.current.pop(stage, None)
        self._retry.pop(stage, None)
        if failure is not None:
            log.warning("%s recovered after %d failures (%s) over %.0f s", stage, failure.count,
                        failure.reason, time.time() - failure.since)  # fmt: skip
