"""The join rule against a client that labels ids before they are served, and the orphan
labels' own bound against a flood of labels for ids never served."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from monitoring.state import MonitorState
from shiftwatch.events import LabelEvent
from tests.monitoring.test_state import apply, prediction

pytestmark = pytest.mark.unit

SKEW = 5.0  # the join rule's slack (MonitorSettings.label_join_skew_seconds)


def label(request_id: str, value: str, ts: float) -> LabelEvent:
    return LabelEvent(request_id=request_id, label=value, timestamp=ts)


def test_a_label_posted_before_its_request_was_served_never_joins(tmp_path: Path) -> None:
    """The finding: `order-42` labeled `b` by someone else, then served (predicted `a`), then
    labeled `a` by its true owner. The forged label is dropped when the prediction arrives;
    the true one joins, and live accuracy counts the true label."""
    state = MonitorState(tmp_path / "s.sqlite", {"news"}, label_join_skew=SKEW)
    served = 10_000.0
    apply(
        state,
        label("order-42", "b", served - SKEW - 1),  # forged: more than the skew before serving
        prediction("order-42", served, label="a", shadow_label="a"),
        label("order-42", "a", served + 5),
    )
    assert state.window("baseline", 10, 1e9)["label"].tolist() == ["a"]
    c = state.counters()
    assert c["labels_before_prediction"] == 1 and c["labels_matched"] == 1
    assert c.get("labels_duplicate", 0) == 0
    assert (c[("labeled", "baseline", "news")], c[("correct", "baseline", "news")]) == (1, 1)


def test_a_prediction_already_read_is_never_joined_by_an_older_label(tmp_path: Path) -> None:
    state = MonitorState(tmp_path / "s.sqlite", {"news"}, label_join_skew=SKEW)
    apply(
        state,
        prediction("r1", 10_000.0, label="a"),
        label("r1", "b", 10_000.0 - SKEW - 1),  # read after the prediction, stamped long before
        label("r1", "a", 10_000.0 - SKEW + 1),  # within the skew: served before it, as far as
        label("r1", "b", 10_001.0),  # the clocks can tell; the first such label wins
    )
    assert state.window("baseline", 10, 1e9)["label"].tolist() == ["a"]
    c = state.counters()
    assert (c["labels_before_prediction"], c["labels_matched"], c["labels_duplicate"]) == (1, 1, 1)


def test_labels_waiting_for_a_prediction_are_judged_when_it_arrives(tmp_path: Path) -> None:
    """A forged label and the true one both read before the prediction (another replica's
    stream lags): the forged one is dropped, the true one joins, a later one is a duplicate."""
    state = MonitorState(tmp_path / "s.sqlite", {"news"}, label_join_skew=SKEW)
    apply(
        state,
        label("r1", "b", 1.0),
        label("r1", "a", 10_002.0),
        label("r1", "b", 10_003.0),
        prediction("r1", 10_000.0, label="a"),
    )
    assert state.window("baseline", 10, 1e9)["label"].tolist() == ["a"]
    c = state.counters()
    assert (c["labels_before_prediction"], c["labels_matched"], c["labels_duplicate"]) == (1, 1, 1)
    assert state.db.execute("SELECT count(*) FROM orphan_labels").fetchone()[0] == 0


def junk_labels(state: MonitorState, n: int, ts: float) -> None:
    """`n` labels for ids never served, in one transaction (as a reader's batch would)."""
    state.begin()
    for i in range(n):
        state.add_label(
            LabelEvent.model_construct(request_id=f"junk-{i:07d}", label="a", timestamp=ts)
        )
    state.expire(retention_seconds=1e9)
    state.commit()


def test_250000_junk_labels_evict_no_prediction(tmp_path: Path) -> None:
    """The finding's flood at its full count (written through the state, in one transaction:
    about 10 s), against a byte bound it overflows several times: over the byte bound the
    labels waiting for a prediction go first, and no prediction is evicted."""
    state = MonitorState(tmp_path / "s.sqlite", {"news"}, max_bytes=8 * 2**20)
    now = time.time()
    apply(state, *(prediction(f"served-{i}", now + i) for i in range(1000)))
    junk_labels(state, 250_000, now + 2000)
    assert state.pending_labels() == 1000
    c = state.counters()
    assert c.get("predictions_evicted", 0) == 0
    assert len(state.window("baseline", 10_000, 1e9)) == 1000
    waiting = state.db.execute("SELECT count(*) FROM orphan_labels").fetchone()[0]
    assert c["labels_evicted"] == 250_000 - waiting and waiting > 0
    assert state.used_bytes() <= 8 * 2**20


def test_orphan_labels_have_their_own_row_bound(tmp_path: Path) -> None:
    state = MonitorState(tmp_path / "s.sqlite", {"news"}, max_requests=500, max_orphan_labels=100)
    apply(state, *(prediction(f"served-{i}", float(i)) for i in range(400)))
    junk_labels(state, 1000, 500.0)
    c = state.counters()
    assert state.db.execute("SELECT count(*) FROM orphan_labels").fetchone()[0] == 100
    assert c["labels_evicted"] == 900 and c.get("predictions_evicted", 0) == 0
    kept = state.db.execute("SELECT min(request_id) FROM orphan_labels").fetchone()[0]
    assert kept == "junk-0000900"  # the first arrived went first
    assert state.pending_labels() == 400


def test_a_state_file_from_before_opens_with_its_counts_and_waiting_labels(tmp_path: Path) -> None:
    """Counters stored as `name|value` strings (and a `|` inside a forged model's name, which
    made /metrics answer 500 after every restart), and one label per id waiting."""
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO counters VALUES ('events_prediction', 7), ('labeled|baseline|news', 3),
            ('correct|baseline|news', 2), ('lost|trimmed', 4), ('labeled|evil|x|news', 1);
        CREATE TABLE orphan_labels (request_id TEXT PRIMARY KEY, label TEXT NOT NULL,
            ts REAL NOT NULL);
        INSERT INTO orphan_labels VALUES ('r1', 'a', 5.0);
        """
    )
    old.commit()
    old.close()
    state = MonitorState(path, {"news"})
    assert state.counters() == {
        "events_prediction": 7,
        ("labeled", "baseline", "news"): 3,
        ("correct", "baseline", "news"): 2,
        ("lost", "trimmed"): 4,
    }
    apply(state, prediction("r1", 4.0, label="a"))  # the waiting label joins
    assert state.counters()[("labeled", "baseline", "news")] == 4
    assert MonitorState(path, {"news"}).counters()["labels_matched"] == 1  # opens again
