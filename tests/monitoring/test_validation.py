"""Event values checked against the monitored models' contracts, one reason each."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from monitoring.counters import counter_tree
from monitoring.state import MonitorState
from monitoring.validation import EventValidator, ModelContract
from shiftwatch.events import LabelEvent, ModelOutput
from shiftwatch.features import FEATURE_NAMES
from shiftwatch.transport.redis_streams import label_stream, prediction_stream, stream_model
from tests.monitoring.test_state import output, prediction

pytestmark = pytest.mark.unit

CONTRACTS = {
    "baseline": ModelContract(frozenset({"a", "b"}), 2),
    "research": ModelContract(frozenset({"a", "b"}), 2),
}


def served(request_id: str = "r1", **changes):
    """A prediction both contracts accept, with `changes` to the primary's fields."""
    event = prediction(request_id, 1.0)
    probabilities = {"a": 0.9, "b": 0.1}
    event.features = dict.fromkeys(FEATURE_NAMES, 1.0)
    event.probabilities = probabilities
    event.shadows[0].probabilities = probabilities
    return event.model_copy(update=changes)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"model": "evil|x"}, "unknown_model"),
        ({"predicted_label": "z"}, "unknown_label"),
        ({"probabilities": {"a": 1.0}}, "probability_classes"),
        ({"embedding": [0.0, 0.0, 0.0]}, "embedding_size"),
        ({"features": {"length": 1.0}}, "feature_names"),
        ({"confidence": math.nan}, "non_finite"),
        ({"embedding": [math.inf, 0.0]}, "non_finite"),
        ({"timestamp": math.nan}, "non_finite"),
    ],
)
def test_a_bad_primary_drops_the_event(changes: dict, reason: str) -> None:
    assert EventValidator(CONTRACTS).prediction(served(**changes)) == (None, [reason])


def test_a_bad_shadow_is_dropped_alone() -> None:
    event = served()
    evil = ModelOutput(**output("evil|x", "a"))
    twin = event.shadows[0].model_copy()  # a second output of one model
    event.shadows += [evil, twin]
    kept, reasons = EventValidator(CONTRACTS).prediction(event)
    assert reasons == ["unknown_model", "duplicate_model"]
    assert [s.model for s in kept.shadows] == ["research"] and kept.model == "baseline"


def test_without_contracts_only_the_structure_is_checked(tmp_path: Path) -> None:
    state = MonitorState(tmp_path / "s.sqlite")  # no validator given: any model and size
    event = prediction("r1", 1.0)
    event.shadows.append(event.shadows[0])  # used to fail the transaction on every retry
    state.begin()
    state.add_prediction(event)
    state.add_label(LabelEvent(request_id="r1", label="a", timestamp=math.inf))
    state.commit()
    c = state.counters()
    assert c[("rejected", "duplicate_model")] == 1 and c[("rejected", "non_finite")] == 1
    assert c["events_prediction"] == 1 and "events_label" not in c


def test_labels_must_be_one_of_the_models_labels() -> None:
    validator = EventValidator(CONTRACTS)
    assert validator.label(LabelEvent(request_id="r", label="b", timestamp=1.0)) is None
    assert validator.label(LabelEvent(request_id="r", label="z", timestamp=1.0)) == "unknown_label"


def test_a_prediction_stream_names_its_model_whatever_the_prefix() -> None:
    assert stream_model(prediction_stream("sw:eu", "acme-base")) == "acme-base"
    assert stream_model(label_stream("sw:eu")) is None


def test_status_nests_counters_by_label_value() -> None:
    counts = {"events_prediction": 2, ("labeled", "m|x", "news"): 1, ("lost", "trimmed"): 3}
    assert counter_tree(counts) == {
        "events_prediction": 2,
        "labeled": {"m|x": {"news": 1}},
        "lost": {"trimmed": 3},
    }
