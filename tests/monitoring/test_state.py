"""The label join: matches, duplicates, unmatched labels, retention expiry, per-model counters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitoring.state import MonitorState
from shiftwatch.events import LabelEvent, ModelOutput, PredictionEvent

pytestmark = pytest.mark.unit


def output(model: str, label: str) -> dict:
    return {
        "model": model,
        "model_version": f"shiftwatch-{model}:v1",
        "predicted_label": label,
        "confidence": 0.9,
        "entropy": 0.3,
        "probabilities": {label: 0.9},
        "embedding": [0.0, 1.0],
    }


def prediction(
    request_id: str,
    ts: float,
    label: str = "a",
    shadow_label: str = "b",
    domain: str | None = "news",
):
    return PredictionEvent(
        **output("baseline", label),
        request_id=request_id,
        timestamp=ts,
        domain=domain,
        features={"length": 3.0},
        shadows=[ModelOutput(**output("research", shadow_label))],
    )


@pytest.fixture
def state(tmp_path: Path) -> MonitorState:
    return MonitorState(tmp_path / "state.sqlite", known_domains={"news"})


def apply(state: MonitorState, *events) -> None:
    state.begin()
    for event in events:
        (state.add_prediction if isinstance(event, PredictionEvent) else state.add_label)(event)
    state.commit()


def test_labels_join_and_count_per_model_and_domain(state: MonitorState) -> None:
    apply(
        state,
        prediction("r1", 1.0, label="a", shadow_label="b"),
        prediction("r2", 2.0, label="a", shadow_label="a", domain="clinical"),
        LabelEvent(request_id="r1", label="a", timestamp=3.0),
        LabelEvent(request_id="r2", label="b", timestamp=4.0),
    )
    c = state.counters()
    assert c["events_prediction"] == 2 and c["events_label"] == 2 and c["labels_matched"] == 2
    assert (c[("labeled", "baseline", "news")], c[("correct", "baseline", "news")]) == (1, 1)
    assert (c[("labeled", "research", "news")], c[("correct", "research", "news")]) == (1, 0)
    assert (c[("labeled", "baseline", "other")], c[("correct", "baseline", "other")]) == (
        1,
        0,
    )  # clinical is not known
    window = state.window("research", size=10, max_age_seconds=100)
    assert list(window["label"]) == ["b", "a"] and list(window["predicted_label"]) == ["a", "b"]


def test_first_label_wins_and_duplicates_are_counted_once_each(state: MonitorState) -> None:
    apply(
        state,
        prediction("r1", 1.0),
        LabelEvent(request_id="r1", label="a", timestamp=2.0),
        LabelEvent(request_id="r1", label="b", timestamp=3.0),
        LabelEvent(request_id="r1", label="a", timestamp=4.0),
    )
    c = state.counters()
    assert c["labels_matched"] == 1 and c["labels_duplicate"] == 2
    assert c[("labeled", "baseline", "news")] == 1 and c[("correct", "baseline", "news")] == 1
    assert state.window("baseline", 10, 100)["label"].tolist() == ["a"]


def test_duplicate_prediction_events_are_counted_not_stored_twice(state: MonitorState) -> None:
    apply(state, prediction("r1", 1.0), prediction("r1", 1.0))
    assert state.counters()["predictions_duplicate"] == 1
    assert len(state.window("baseline", 10, 100)) == 1


def test_label_read_before_its_prediction_joins_when_it_arrives(state: MonitorState) -> None:
    # Stamped after the prediction was served, read first (another writer's segment, stream).
    apply(state, LabelEvent(request_id="r9", label="a", timestamp=3.0), prediction("r9", 2.0))
    c = state.counters()
    assert c["labels_matched"] == 1 and c.get("labels_unmatched", 0) == 0


def test_retention_expires_unlabeled_predictions_and_unmatched_labels(state: MonitorState) -> None:
    apply(
        state,
        prediction("old", 0.0),
        prediction("old-labeled", 0.0),
        LabelEvent(request_id="old-labeled", label="a", timestamp=1.0),
        LabelEvent(request_id="ghost", label="a", timestamp=1.0),
        prediction("new", 100.0),
    )
    state.begin()
    state.expire(retention_seconds=50)
    state.commit()
    c = state.counters()
    assert c["predictions_expired"] == 1  # "old"; "old-labeled" was labeled, "new" is recent
    assert c["labels_unmatched"] == 1  # "ghost"
    assert state.pending_labels() == 1  # only "new" waits
    assert state.window("baseline", 10, 1000)["ts"].tolist() == [100.0]


def test_embeddings_read_back_from_bytes_and_from_older_json_text() -> None:
    from monitoring.state import float32_blob, read_embedding

    assert read_embedding(float32_blob([1.0, -2.5, 0.125])) == [1.0, -2.5, 0.125]
    assert read_embedding(json.dumps([1.0, -2.5])) == [1.0, -2.5]  # a state file from before
