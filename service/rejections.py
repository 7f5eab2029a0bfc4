"""Why a request was rejected, recorded where validation happens and counted by the middleware.

Validators run deep inside BentoML's request parsing, which only turns their
errors into a 400. The limits middleware puts a fresh holder in a context
variable per request; a validator that rejects writes its reason there, and the
middleware counts the reason once the 4xx response goes out.
"""

from __future__ import annotations

from contextvars import ContextVar

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
