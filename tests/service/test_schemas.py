"""The request bodies' limits, each read from its one setting."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from service.schemas import FeedbackItems, Instances
from shiftwatch.settings import service_settings

pytestmark = pytest.mark.unit


@pytest.fixture
def max_id_chars(monkeypatch: pytest.MonkeyPatch):
    """SHIFTWATCH_MAX_ID_CHARS raised above its default (128)."""
    monkeypatch.setenv("SHIFTWATCH_MAX_ID_CHARS", "300")
    service_settings.cache_clear()
    yield 300
    service_settings.cache_clear()


def test_an_id_predict_accepts_is_one_feedback_accepts(max_id_chars: int) -> None:
    """main had /feedback's own literal 128: with the setting raised, /predict took ids whose
    labels /feedback then refused, so they could never join."""
    longest = "r" * max_id_chars
    (instance,) = TypeAdapter(Instances).validate_python([{"text": "a b", "request_id": longest}])
    (item,) = TypeAdapter(FeedbackItems).validate_python([{"request_id": longest, "label": "x"}])
    assert instance.request_id == item.request_id == longest
    for body, adapter in (
        ({"text": "a b", "request_id": longest + "r"}, Instances),
        ({"request_id": longest + "r", "label": "x"}, FeedbackItems),
        ({"request_id": "", "label": "x"}, FeedbackItems),
    ):
        with pytest.raises(ValidationError, match=r"request_id: must be 1 to 300 characters"):
            TypeAdapter(adapter).validate_python([body])
