"""Service fixtures: tiny settings in the environment for in-process tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shiftwatch.settings import service_settings
from tests.servers import TINY_LIMITS


@pytest.fixture
def tiny_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Tiny limits for in-process tests (schemas read settings on first use)."""
    for key, value in TINY_LIMITS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SHIFTWATCH_EVENT_LOG_DIR", str(tmp_path / "events"))
    service_settings.cache_clear()
    yield
    service_settings.cache_clear()
