"""Client errors logged as client errors: one rate-limited line each, BentoML's tracebacks and
access lines of 4xx dropped, those of 5xx kept."""

from __future__ import annotations

import logging

import pytest

from service.rejections import RejectionLog

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def rejection_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "shiftwatch.service.rejections"]


def test_one_line_per_rejection_up_to_the_rate_limit(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    rejections = RejectionLog(lines=3, period=10.0, clock=clock)
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            rejections.rejected("POST", "/predict", 400, "too_many_tokens")
        clock.now += 10.0  # a new period
        rejections.rejected("POST", "/feedback", 401, "unauthorized")
    assert rejection_lines(caplog) == [
        "rejected POST /predict: 400 too_many_tokens",
        "rejected POST /predict: 400 too_many_tokens",
        "rejected POST /predict: 400 too_many_tokens",
        "rejected POST /feedback: 401 unauthorized (2 earlier rejections not logged: over 3 "
        "lines per 10 s)",
    ]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in caplog.records)
