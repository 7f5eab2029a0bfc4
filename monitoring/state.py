"""The monitor's persistent state in SQLite: offsets, joined predictions, counters.

Every change an event causes (rows, counters) is written in the same transaction
as the log offset (file segments) or the last applied entry id (Redis streams) that
moves past it, so after any crash, `kill -9` included,
each event has been counted exactly once: either its transaction committed, or
it is read again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from shiftwatch.events import LabelEvent, ModelOutput, PredictionEvent
from shiftwatch.features import FEATURE_NAMES

SCHEMA = """
CREATE TABLE IF NOT EXISTS offsets (segment TEXT PRIMARY KEY, position INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS stream_positions (stream TEXT PRIMARY KEY, last_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY, ts REAL NOT NULL, domain TEXT, label TEXT, label_ts REAL);
CREATE TABLE IF NOT EXISTS outputs (
    request_id TEXT NOT NULL, model TEXT NOT NULL, ts REAL NOT NULL, domain TEXT,
    predicted_label TEXT NOT NULL, confidence REAL NOT NULL, entropy REAL NOT NULL,
    features TEXT NOT NULL, embedding TEXT NOT NULL, PRIMARY KEY (request_id, model));
CREATE INDEX IF NOT EXISTS outputs_by_model_ts ON outputs (model, ts);
CREATE INDEX IF NOT EXISTS requests_by_ts ON requests (ts);
CREATE TABLE IF NOT EXISTS orphan_labels (request_id TEXT PRIMARY KEY, label TEXT NOT NULL, ts REAL NOT NULL);
"""


class MonitorState:
    def __init__(self, path: Path, known_domains: Iterable[str] = ()) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        self.db.executescript(SCHEMA)
        self.known_domains = set(known_domains)

    # -- transactions ----------------------------------------------------------------

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        self.db.execute("ROLLBACK")

    # -- offsets, counters, meta -----------------------------------------------------

    def offsets(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT segment, position FROM offsets"))

    def set_offset(self, segment: str, position: int) -> None:
        self.db.execute(
            "INSERT INTO offsets VALUES (?, ?) ON CONFLICT(segment) DO UPDATE SET position=excluded.position",
            (segment, position),
        )

    def stream_positions(self) -> dict[str, str]:
        """The last applied entry id of each Redis stream (the consumer's exactly-once mark)."""
        return dict(self.db.execute("SELECT stream, last_id FROM stream_positions"))

    def set_stream_position(self, stream: str, last_id: str) -> None:
        self.db.execute(
            "INSERT INTO stream_positions VALUES (?, ?) "
            "ON CONFLICT(stream) DO UPDATE SET last_id=excluded.last_id",
            (stream, last_id),
        )

    def forget_segment(self, segment: str) -> None:
        self.db.execute("DELETE FROM offsets WHERE segment=?", (segment,))

    def count(self, name: str, by: int = 1) -> None:
        self.db.execute(
            "INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value=value+excluded.value",
            (name, by),
        )

    def counters(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT name, value FROM counters"))

    def set_meta(self, key: str, value: float) -> None:
        self.db.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=max(value, excluded.value)",
            (key, value),
        )

    def meta(self, key: str, default: float = 0.0) -> float:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def metric_domain(self, domain: str | None) -> str:
        """A bounded label value for a client-supplied domain."""
        if domain is None:
            return "unknown"
        return domain if domain in self.known_domains else "other"

    # -- events ----------------------------------------------------------------------

    def add_prediction(self, event: PredictionEvent) -> None:
        if self.db.execute(
            "SELECT 1 FROM requests WHERE request_id=?", (event.request_id,)
        ).fetchone():
            self.count("predictions_duplicate")
            return
        self.db.execute(
            "INSERT INTO requests (request_id, ts, domain) VALUES (?, ?, ?)",
            (event.request_id, event.timestamp, event.domain),
        )
        features = json.dumps(event.features)
        for output in (event, *event.shadows):
            self._add_output(event, output, features)
        self.count("events_prediction")
        self.set_meta("newest_ts", event.timestamp)
        orphan = self.db.execute(
            "SELECT label, ts FROM orphan_labels WHERE request_id=?", (event.request_id,)
        ).fetchone()
        if orphan:
            self.db.execute("DELETE FROM orphan_labels WHERE request_id=?", (event.request_id,))
            self._join(event.request_id, orphan[0], orphan[1])

    def _add_output(self, event: PredictionEvent, output: ModelOutput, features: str) -> None:
        self.db.execute(
            "INSERT INTO outputs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.request_id,
                output.model,
                event.timestamp,
                event.domain,
                output.predicted_label,
                output.confidence,
                output.entropy,
                features,
                json.dumps(output.embedding),
            ),
        )

    def add_label(self, event: LabelEvent) -> None:
        self.count("events_label")
        self.set_meta("newest_ts", event.timestamp)
        row = self.db.execute(
            "SELECT label FROM requests WHERE request_id=?", (event.request_id,)
        ).fetchone()
        if row is None:
            if self.db.execute(
                "SELECT 1 FROM orphan_labels WHERE request_id=?", (event.request_id,)
            ).fetchone():
                self.count("labels_duplicate")
            else:  # the prediction may still come (another writer's segment); else it expires
                self.db.execute(
                    "INSERT INTO orphan_labels VALUES (?, ?, ?)",
                    (event.request_id, event.label, event.timestamp),
                )
            return
        if row[0] is not None:
            self.count("labels_duplicate")
            return
        self._join(event.request_id, event.label, event.timestamp)

    def _join(self, request_id: str, label: str, ts: float) -> None:
        self.db.execute(
            "UPDATE requests SET label=?, label_ts=? WHERE request_id=?", (label, ts, request_id)
        )
        self.count("labels_matched")
        for model, domain, predicted in self.db.execute(
            "SELECT model, domain, predicted_label FROM outputs WHERE request_id=?", (request_id,)
        ).fetchall():
            key = f"{model}|{self.metric_domain(domain)}"
            self.count(f"labeled|{key}")
            self.count(f"correct|{key}", int(predicted == label))

    def expire(self, retention_seconds: float) -> None:
        """Drop rows older than the retention (event time); count unlabeled predictions
        and labels that never met their prediction."""
        cutoff = self.meta("newest_ts") - retention_seconds
        expired = self.db.execute(
            "SELECT count(*) FROM requests WHERE ts < ? AND label IS NULL", (cutoff,)
        )
        self.count("predictions_expired", expired.fetchone()[0])
        unmatched = self.db.execute("SELECT count(*) FROM orphan_labels WHERE ts < ?", (cutoff,))
        self.count("labels_unmatched", unmatched.fetchone()[0])
        self.db.execute("DELETE FROM outputs WHERE ts < ?", (cutoff,))
        self.db.execute("DELETE FROM requests WHERE ts < ?", (cutoff,))
        self.db.execute("DELETE FROM orphan_labels WHERE ts < ?", (cutoff,))

    # -- windows ---------------------------------------------------------------------

    def window(self, model: str, size: int, max_age_seconds: float) -> pd.DataFrame:
        """The most recent `size` outputs of `model` within `max_age_seconds` (event time)
        of the newest event, as a frame shaped like reference.parquet (+ label, ts)."""
        cutoff = self.meta("newest_ts") - max_age_seconds
        rows = self.db.execute(
            "SELECT o.ts, o.domain, o.predicted_label, o.confidence, o.entropy, o.features, o.embedding, r.label "
            "FROM outputs o JOIN requests r USING (request_id) "
            "WHERE o.model=? AND o.ts>=? ORDER BY o.ts DESC LIMIT ?",
            (model, cutoff, size),
        ).fetchall()
        columns = [
            "ts",
            "domain",
            "predicted_label",
            "confidence",
            "entropy",
            "features",
            "embedding",
            "label",
        ]
        frame = pd.DataFrame(rows, columns=columns)
        if frame.empty:
            return frame.drop(columns=["features", "embedding"]).assign(
                **{f: [] for f in FEATURE_NAMES}
            )
        features = pd.DataFrame([json.loads(f) for f in frame.pop("features")], index=frame.index)
        embedding = pd.DataFrame([json.loads(e) for e in frame.pop("embedding")], index=frame.index)
        embedding.columns = [f"embedding_{i}" for i in embedding.columns]
        return pd.concat([frame, features, embedding], axis=1)

    def pending_labels(self) -> int:
        return self.db.execute("SELECT count(*) FROM requests WHERE label IS NULL").fetchone()[0]
