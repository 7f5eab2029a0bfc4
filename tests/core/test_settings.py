"""Settings read from the environment: who may post to /feedback, and secrets from files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from shiftwatch.settings import (
    FeedbackAccessError,
    MonitorSettings,
    ServiceSettings,
    url_with_password,
)

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("SHIFTWATCH_")]:
        monkeypatch.delenv(name)


def settings(monkeypatch: pytest.MonkeyPatch, **variables: str) -> ServiceSettings:
    for name, value in variables.items():
        monkeypatch.setenv(f"SHIFTWATCH_{name.upper()}", value)
    return ServiceSettings()


def test_feedback_needs_a_token_or_the_explicit_open_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(FeedbackAccessError) as error:
        settings(monkeypatch).feedback_access()
    message = str(error.value)
    assert "\n" not in message  # one line
    for name in ("FEEDBACK_TOKEN", "FEEDBACK_TOKEN_FILE", "FEEDBACK_OPEN=true"):
        assert f"SHIFTWATCH_{name}" in message
    assert settings(monkeypatch, feedback_open="true").feedback_access() is None
    assert settings(monkeypatch, feedback_token="t0k").feedback_access() == "t0k"


@pytest.mark.parametrize("token", ["", "   "])
@pytest.mark.parametrize("open_setting", ["false", "true"])
def test_an_empty_token_is_an_error_never_an_open_endpoint(
    monkeypatch: pytest.MonkeyPatch, token: str, open_setting: str
) -> None:
    configured = settings(monkeypatch, feedback_token=token, feedback_open=open_setting)
    with pytest.raises(FeedbackAccessError, match="SHIFTWATCH_FEEDBACK_TOKEN is empty"):
        configured.feedback_access()


def test_a_token_wins_over_the_open_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    configured = settings(monkeypatch, feedback_token="t0k", feedback_open="true")
    assert configured.feedback_access() == "t0k"


def test_token_from_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "feedback_token"
    path.write_text("from-a-file\n")  # the newline `echo` adds is not part of it
    assert settings(monkeypatch, feedback_token_file=str(path)).feedback_access() == "from-a-file"
    path.write_text("\n")
    with pytest.raises(FeedbackAccessError, match="is empty"):
        settings(monkeypatch, feedback_token_file=str(path)).feedback_access()
    with pytest.raises(FeedbackAccessError, match="cannot read"):
        settings(monkeypatch, feedback_token_file=str(tmp_path / "missing")).feedback_access()
    path.write_text("x")
    both = settings(monkeypatch, feedback_token_file=str(path), feedback_token="y")
    with pytest.raises(FeedbackAccessError, match="both set"):
        both.feedback_access()


def test_redis_password_from_a_file_goes_into_the_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "redis_password"
    path.write_text("p@ss/word\n")
    configured = settings(
        monkeypatch, redis_url="redis://redis:6379/0", redis_password_file=str(path)
    )
    assert configured.redis_url == "redis://:p%40ss%2Fword@redis:6379/0"
    # the monitor beside it: the same variables by default...
    assert MonitorSettings().redis_url == configured.redis_url
    # ...or its own URL, with the shared password file
    monkeypatch.setenv("SHIFTWATCH_MONITOR_REDIS_URL", "rediss://user@cache:6380/1")
    assert MonitorSettings().redis_url == "rediss://user:p%40ss%2Fword@cache:6380/1"
    path.write_text("")
    with pytest.raises(ValidationError, match="is empty"):
        ServiceSettings()


def test_url_with_password_replaces_a_password_and_leaves_a_url_without_file_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "password"
    path.write_text("new")
    assert url_with_password("redis://:old@h:1/0", path) == "redis://:new@h:1/0"
    assert url_with_password("redis://:old@h:1/0", None) == "redis://:old@h:1/0"
