"""Client errors logged as client errors: one rate-limited line each, BentoML's tracebacks and
access lines of 4xx dropped, those of 5xx kept."""

from __future__ import annotations

import logging
import sys

import pytest
from bentoml.exceptions import InternalServerError, InvalidArgument
from pydantic import BaseModel, ValidationError

from service.limits import LIMITED_PATHS
from service.rejections import BENTOML_ACCESS, BENTOML_ERRORS, QuietClientErrors, RejectionLog

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


class Body(BaseModel):
    instances: list[int]


def error_record(exc: BaseException) -> logging.LogRecord:
    """BentoML's record of an error raised in a request (`log_exception`)."""
    try:
        raise exc
    except BaseException:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        BENTOML_ERRORS, logging.ERROR, __file__, 1, "Exception on %s [%s]", ("/predict", "POST"),
        exc_info,
    )  # fmt: skip


def access_record(method: str, path: str, status: int) -> logging.LogRecord:
    """BentoML's access line of a request (`AccessLogMiddleware`)."""
    request = f"scheme=http,method={method},path={path},type=application/json,length=16"
    response = f"status={status},type=application/json,length=213"
    args = ("127.0.0.1:5000", request, response, 1.5)
    return logging.LogRecord(BENTOML_ACCESS, logging.INFO, __file__, 1, "%s (%s) (%s) %.3fms", args, None)  # fmt: skip


def validation_error() -> ValidationError:
    try:
        Body.model_validate({"instances": "x"})
    except ValidationError as exc:
        return exc
    raise AssertionError("the body validated")


@pytest.mark.parametrize(
    ("record", "kept"),
    [
        (error_record(validation_error()), False),  # a 400
        (error_record(InvalidArgument("bad")), False),  # a 400 from BentoML
        (error_record(InternalServerError("broken")), True),  # a 500: traceback kept
        (error_record(RuntimeError("model failed")), True),  # a 500 from our code
        (access_record("POST", "/predict", 400), False),
        (access_record("POST", "/feedback", 413), False),
        (access_record("POST", "/predict", 200), True),
        (access_record("POST", "/predict", 500), True),
        (access_record("POST", "/predict", 429), True),  # BentoML's limit, before ours
        (access_record("GET", "/models", 404), True),  # not a path the middleware logs
    ],
)
def test_bentoml_lines_of_client_errors_are_dropped(record: logging.LogRecord, kept: bool) -> None:
    assert QuietClientErrors(LIMITED_PATHS).filter(record) is kept
