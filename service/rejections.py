"""Why a request was rejected, recorded where validation happens, counted and logged by the
middleware.

Validators run deep inside BentoML's request parsing, which only turns their
errors into a 400. The limits middleware puts a fresh holder in a context
variable per request; a validator that rejects writes its reason there, and the
middleware counts the reason once the 4xx response goes out, and logs it as one line
(`RejectionLog`, rate-limited). BentoML's own lines for those requests (an ERROR with the
validation error's traceback, an access line) are dropped by `QuietClientErrors`; 5xx
keep theirs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar

from bentoml.exceptions import BentoMLException
from pydantic import ValidationError

log = logging.getLogger("shiftwatch.service.rejections")
# BentoML's loggers: its API handler logs every error raised in a request with a traceback
# ("Exception on /predict [POST]"); its access log writes one line per request.
BENTOML_ERRORS = "bentoml._internal.server.http_app"
BENTOML_ACCESS = "bentoml.access"
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


class QuietClientErrors(logging.Filter):
    """Drops BentoML's log records of requests the middleware answered 4xx and logs itself:
    the traceback of a validation error (a 400) or of a 4xx BentoML error, and the access
    line of a 4xx to a path in `paths`, except 429 (BentoML's own concurrency limit, which
    answers before the middleware sees the request)."""

    def __init__(self, paths: tuple[str, ...]) -> None:
        super().__init__()
        self.paths = paths

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == BENTOML_ACCESS:
            return not self._client_error_access(record)
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            return False
        if isinstance(error, BentoMLException):
            return not 400 <= error.error_code.value < 500
        return True

    def _client_error_access(self, record: logging.LogRecord) -> bool:
        # BentoML's access line: "%s (%s) (%s) %.3fms" % (address, "scheme=..,method=..,
        # path=..", "status=..,type=..", latency)
        if not isinstance(record.args, tuple) or len(record.args) != 4:
            return False
        request = dict(f.split("=", 1) for f in str(record.args[1]).split(",") if "=" in f)
        response = dict(f.split("=", 1) for f in str(record.args[2]).split(",") if "=" in f)
        status = response.get("status", "")
        return (
            request.get("method") == "POST"
            and request.get("path") in self.paths
            and status.isdigit()
            and 400 <= int(status) < 500
            and int(status) != 429
        )

    def install(self) -> None:
        """On BentoML's error and access loggers (in the serving process, not at import)."""
        for name in (BENTOML_ERRORS, BENTOML_ACCESS):
            logging.getLogger(name).addFilter(self)
