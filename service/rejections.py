"""Why a request was rejected, recorded where validation happens, counted and logged by the
middleware.

Validators run deep inside pydantic's parsing, which only turns their errors into a
ValidationError (a 400, service/routes.py). The limits middleware puts a fresh holder in a
context variable per request; a validator that rejects writes its reason there, and the
middleware counts the reason once the 4xx response goes out, and logs it as one line
(`RejectionLog`, rate-limited).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar

log = logging.getLogger("shiftwatch.service.rejections")
LOG_LINES = 10  # rejection lines written per LOG_PERIOD_SECONDS at most; the rest counted
LOG_PERIOD_SECONDS = 10.0

_reason: ContextVar[dict[str, str] | None] = ContextVar("shiftwatch_rejection", default=None)


def start_request() -> dict[str, str]:
    holder: dict[str, str] = {}
    _reason.set(holder)
    return holder


def reject(reason: str, message: str) -> ValueError:
    """Record `reason` for this request and return the error for the validator to raise."""
    holder = _reason.get()
    if holder is not None and "reason" not in holder:
        holder["reason"] = reason
    return ValueError(message)


class RejectionLog:
    """One WARNING line per rejected request (method, path, status, reason), at most `lines`
    per `period` seconds; the first line of a later period says how many were left out.
    Every rejection is counted in `shiftwatch_requests_rejected_total` whatever is logged."""

    def __init__(
        self,
        lines: int = LOG_LINES,
        period: float = LOG_PERIOD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lines, self.period, self.clock = lines, period, clock
        self._period_start = -float("inf")
        self._logged = 0  # lines in the current period
        self._left_out = 0  # rejections not logged since the last line

    def rejected(self, method: str, path: str, status: int, reason: str) -> None:
        now = self.clock()
        if now - self._period_start >= self.period:
            self._period_start, self._logged = now, 0
        if self._logged >= self.lines:
            self._left_out += 1
            return
        self._logged += 1
        note = ""
        if self._left_out:
            note = f" ({self._left_out} earlier rejections not logged: over {self.lines} lines "
            note += f"per {self.period:g} s)"
            self._left_out = 0
        # WARNING: BentoML's server logging writes the root logger's WARNING and above only.
        log.warning("rejected %s %s: %d %s%s", method, path, status, reason, note)
