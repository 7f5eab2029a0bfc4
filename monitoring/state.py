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
import time
from array import array
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from monitoring.counters import CounterKey, add_counts, read_counts
from monitoring.state_schema import create_or_migrate
from monitoring.validation import EventValidator, RejectionLog
from shiftwatch.events import LabelEvent, ModelOutput, PredictionEvent
from shiftwatch.features import FEATURE_NAMES
from shiftwatch.transport.segments import SegmentMark

WAL_LIMIT_BYTES = 8 * 2**20  # the write-ahead log is truncated to this after a checkpoint


def probability_blob(probabilities: dict[str, float]) -> bytes:
    """An output's class probabilities as float32 bytes, in sorted label order (the state
    knows no model's labels; `monitoring.calibration` puts them back in the bundle's order)."""
    return float32_blob([probabilities[k] for k in sorted(probabilities)])


def float32_blob(values: list[float]) -> bytes:
    """float32 bytes: a third of JSON's size and cost for an embedding or probabilities."""
    return array("f", values).tobytes()


def read_embedding(stored: bytes | str) -> list[float]:
    """An output's embedding as stored: float32 bytes, or JSON text in a state file written
    before they were bytes."""
    return (
        np.frombuffer(stored, dtype=np.float32).tolist()
        if isinstance(stored, bytes)
        else json.loads(stored)
    )


class MonitorState:
    def __init__(
        self,
        path: Path,
        known_domains: Iterable[str] = (),
        max_requests: int | None = None,
        max_bytes: int | None = None,
        max_clock_skew: float | None = None,
        label_join_skew: float = 0.0,
        max_orphan_labels: int | None = None,
        validator: EventValidator | None = None,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_requests = max_requests  # bounds enforced by `expire`; None: time only
        self.max_bytes = max_bytes
        self.max_orphan_labels = max_orphan_labels  # labels waiting for their prediction
        # Seconds ahead of this clock an event may be stamped (beyond: clamped; None: no
        # clamp), and the slack of the join rule (`add_label`).
        self.max_clock_skew = max_clock_skew
        self.label_join_skew = label_join_skew
        self.validator = validator or EventValidator()
        self.rejections = RejectionLog()
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        # Freed pages go back to the file system (incremental_vacuum in `reclaim`); set before
        # the first table exists, or by one VACUUM for a state file made before this setting.
        self.db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        if self.db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            self.db.execute("VACUUM")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        self.db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        create_or_migrate(self.db)
        self.known_domains = set(known_domains)
        self._counts: dict[CounterKey, int] = {}  # this transaction's counter increments
        self._meta: dict[str, float] = {}  # and its raised meta values

    # -- transactions ----------------------------------------------------------------

    # Counters and the newest event time change with every event: inside a transaction they
    # are summed in memory and written once, at commit (ten statements an event were most
    # of the ingest time).

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        if self._counts:
            add_counts(self.db, self._counts)
        for key, value in self._meta.items():
            self._write_meta(key, value)
        self.db.execute("COMMIT")
        self._counts, self._meta = {}, {}

    def rollback(self) -> None:
        self._counts, self._meta = {}, {}
        if self.db.in_transaction:  # SQLite rolls back by itself after some errors (disk full)
            self.db.execute("ROLLBACK")

    # -- offsets, counters, meta -----------------------------------------------------

    def segments(self) -> dict[str, SegmentMark]:
        rows = self.db.execute("SELECT segment, position, lines, size, inode, seen FROM offsets")
        return {row[0]: SegmentMark(*row[1:]) for row in rows}

    def mark_segment(self, segment: str, mark: SegmentMark) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO offsets VALUES (?, ?, ?, ?, ?, ?)",
            (segment, mark.position, mark.lines, mark.size, mark.inode, mark.seen),
        )

    def segment_started(self, writer: str, events_before: int) -> None:
        """A segment's first line: its writer had written `events_before` events before it.
        Those of them this monitor did not consume are lost (`("lost", "segment_gap")`)."""
        row = self.db.execute("SELECT consumed FROM writers WHERE writer=?", (writer,)).fetchone()
        self.count(("lost", "segment_gap"), max(0, events_before - (row[0] if row else 0)))
        self.db.execute("INSERT OR REPLACE INTO writers VALUES (?, ?)", (writer, events_before))

    def writer_consumed(self, writer: str, lines: int) -> None:
        """`lines` more of `writer`'s event lines consumed (or accounted as lost)."""
        self.db.execute(
            "INSERT INTO writers VALUES (?, ?) "
            "ON CONFLICT(writer) DO UPDATE SET consumed=consumed+excluded.consumed",
            (writer, lines),
        )

    def stream_positions(self) -> dict[str, str]:
        """The last applied entry id of each Redis stream (the consumer's exactly-once mark)."""
        return dict(self.db.execute("SELECT stream, last_id FROM stream_positions"))

    def set_stream_position(self, stream: str, last_id: str, consumed: int) -> None:
        """`consumed` more entries of `stream` applied, the last one `last_id`."""
        self.db.execute(
            "INSERT INTO stream_positions (stream, last_id, consumed) VALUES (?, ?, ?) "
            "ON CONFLICT(stream) DO UPDATE SET last_id=excluded.last_id, "
            "consumed=consumed+excluded.consumed",
            (stream, last_id, consumed),
        )

    def stream_accounting(self, stream: str) -> tuple[int, int]:
        """(entries of `stream` consumed, entries counted as trimmed unread)."""
        row = self.db.execute(
            "SELECT consumed, lost FROM stream_positions WHERE stream=?", (stream,)
        ).fetchone()
        return (row[0], row[1]) if row else (0, 0)

    def stream_trimmed(self, stream: str, lost_total: int) -> None:
        """Entries of `stream` trimmed before this monitor read them: `lost_total` so far."""
        _, counted = self.stream_accounting(stream)
        if lost_total > counted:
            self.count(("lost", "trimmed"), lost_total - counted)
            self.db.execute(
                "INSERT INTO stream_positions (stream, last_id, lost) VALUES (?, '0-0', ?) "
                "ON CONFLICT(stream) DO UPDATE SET lost=excluded.lost",
                (stream, lost_total),
            )

    def forget_segment(self, segment: str) -> None:
        self.db.execute("DELETE FROM offsets WHERE segment=?", (segment,))

    def count(self, key: CounterKey, by: int = 1) -> None:
        """Add `by` to a counter: a name, or a tuple of a name and label values
        (monitoring/counters.py)."""
        if self.db.in_transaction:
            self._counts[key] = self._counts.get(key, 0) + by
            return
        add_counts(self.db, {key: by})

    def counters(self) -> dict[CounterKey, int]:
        stored = read_counts(self.db)
        for key, by in self._counts.items():  # this transaction's, not yet written
            stored[key] = stored.get(key, 0) + by
        return stored

    def reject(self, reason: str, detail: str) -> None:
        """An event, or a part of it, dropped: counted by reason, logged rate-limited."""
        self.count(("rejected", reason))
        self.rejections.warn(reason, detail)

    def set_meta(self, key: str, value: float) -> None:
        """Raise `key` to `value` (never lowers it)."""
        if self.db.in_transaction:
            self._meta[key] = max(value, self._meta.get(key, value))
        else:
            self._write_meta(key, value)

    def _write_meta(self, key: str, value: float) -> None:
        self.db.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=max(value, excluded.value)",
            (key, value),
        )

    def meta(self, key: str, default: float = 0.0) -> float:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        stored = row[0] if row else default
        return max(stored, self._meta[key]) if key in self._meta else stored

    def metric_domain(self, domain: str | None) -> str:
        """A bounded label value for a client-supplied domain."""
        if domain is None:
            return "unknown"
        return domain if domain in self.known_domains else "other"

    # -- events ----------------------------------------------------------------------

    def _event_time(self, event: PredictionEvent | LabelEvent):
        """The event, its timestamp clamped to this clock + the allowed skew (counted)."""
        if self.max_clock_skew is None:
            return event
        latest = time.time() + self.max_clock_skew
        if event.timestamp <= latest:
            return event
        self.count("future_timestamps")
        return event.model_copy(update={"timestamp": latest})

    def add_prediction(self, event: PredictionEvent) -> None:
        """A request id names one open request, from its prediction to its label. A second
        prediction under an id still waiting for its label is a duplicate (counted, dropped:
        the label to come could not tell them apart); under an id already labeled it starts
        a new request, and the finished one is kept under `<id>#<n>` (counted as reused).
        Labels that arrived first are joined by the rule of `add_label`. Values no monitored
        model could have sent are dropped first (monitoring/validation.py)."""
        checked, rejected = self.validator.prediction(event)
        for reason in rejected:
            self.reject(reason, f"prediction {event.request_id!r} of model {event.model!r}")
        if checked is None:
            return
        event = self._event_time(checked)
        row = self.db.execute(
            "SELECT rowid, label FROM requests WHERE request_id=?", (event.request_id,)
        ).fetchone()
        if row is not None and row[1] is None:
            self.count("predictions_duplicate")
            return
        if row is not None:
            retired = f"{event.request_id}#{row[0]}"
            for table in ("requests", "outputs"):
                self.db.execute(
                    f"UPDATE {table} SET request_id=? WHERE request_id=?",
                    (retired, event.request_id),
                )
            self.count("request_ids_reused")
        self.db.execute(
            "INSERT INTO requests (request_id, ts, domain) VALUES (?, ?, ?)",
            (event.request_id, event.timestamp, event.domain),
        )
        features = json.dumps(event.features)
        self.db.executemany(
            "INSERT INTO outputs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [self._output_row(event, output, features) for output in (event, *event.shadows)],
        )
        self.count("events_prediction")
        self.set_meta("newest_ts", event.timestamp)
        self._join_waiting(event.request_id, event.timestamp)

    @staticmethod
    def _output_row(event: PredictionEvent, output: ModelOutput, features: str) -> tuple:
        return (
            event.request_id,
            output.model,
            event.timestamp,
            event.domain,
            output.predicted_label,
            output.confidence,
            output.entropy,
            features,
            float32_blob(output.embedding),
            probability_blob(output.probabilities),
        )

    def add_label(self, event: LabelEvent) -> None:
        """A label joins only a prediction served before it: one stamped no later than the
        label's timestamp + `label_join_skew` (the bound on the clocks of the replicas that
        stamped them). Under its request id:
        - a prediction waiting for its label, served before: joined (`labels_matched`);
        - a prediction served after the label: dropped (`labels_before_prediction`): a label
          posted before its request was served is a guess or a forgery, never the truth;
        - a prediction already labeled: dropped (`labels_duplicate`): the first label joined
          to a prediction served before it wins;
        - no prediction yet (its event may come later, from another writer or stream): the
          label waits as an orphan, beside any others under that id, under its own bound
          (`max_orphan_labels`), until the prediction arrives (`_join_waiting`) or it expires
          (`labels_unmatched`)."""
        reason = self.validator.label(event)
        if reason is not None:
            self.reject(reason, f"label for {event.request_id!r}: {event.label!r}")
            return
        event = self._event_time(event)
        self.count("events_label")
        self.set_meta("newest_ts", event.timestamp)
        row = self.db.execute(
            "SELECT label, ts FROM requests WHERE request_id=?", (event.request_id,)
        ).fetchone()
        if row is None:
            self.db.execute(
                "INSERT INTO orphan_labels VALUES (?, ?, ?)",
                (event.request_id, event.label, event.timestamp),
            )
        elif self._served_after(row[1], event.timestamp):
            self.count("labels_before_prediction")
        elif row[0] is not None:
            self.count("labels_duplicate")
        else:
            self._join(event.request_id, event.label, event.timestamp)

    def _served_after(self, served: float, labeled: float) -> bool:
        """Whether a prediction stamped `served` was served after a label stamped `labeled`,
        beyond what clock skew explains."""
        return served > labeled + self.label_join_skew

    def _join_waiting(self, request_id: str, served: float) -> None:
        """The labels that waited for this prediction, in their order of arrival: the first
        one not stamped before it was served joins; later ones are duplicates, and those
        stamped before it was served are dropped (`add_label`'s rule)."""
        waiting = self.db.execute(
            "SELECT label, ts FROM orphan_labels WHERE request_id=? ORDER BY rowid", (request_id,)
        ).fetchall()
        if not waiting:
            return
        self.db.execute("DELETE FROM orphan_labels WHERE request_id=?", (request_id,))
        joined = False
        for label, ts in waiting:
            if self._served_after(served, ts):
                self.count("labels_before_prediction")
            elif joined:
                self.count("labels_duplicate")
            else:
                self._join(request_id, label, ts)
                joined = True

    def _join(self, request_id: str, label: str, ts: float) -> None:
        self.db.execute(
            "UPDATE requests SET label=?, label_ts=? WHERE request_id=?", (label, ts, request_id)
        )
        self.count("labels_matched")
        for model, domain, predicted in self.db.execute(
            "SELECT model, domain, predicted_label FROM outputs WHERE request_id=?", (request_id,)
        ).fetchall():
            bounded = self.metric_domain(domain)
            self.count(("labeled", model, bounded))
            self.count(("correct", model, bounded), int(predicted == label))

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
        self.enforce_bounds()

    # -- size bounds -----------------------------------------------------------------

    def used_bytes(self) -> int:
        """Bytes of the database's pages in use (free pages excluded)."""
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self.db.execute("PRAGMA page_size").fetchone()[0]

    def file_bytes(self) -> int:
        """The state's size on disk: the database file and its write-ahead log."""
        total = 0
        for path in (self.path, self.path.with_name(self.path.name + "-wal")):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def enforce_bounds(self) -> None:
        """Keep the state within its bounds, in the caller's transaction, each eviction
        counted:
        - orphan labels beyond `max_orphan_labels` rows go, first arrived first
          (`labels_evicted`): they never take a prediction's place;
        - requests beyond `max_requests` rows go, oldest first (`predictions_evicted` for
          those still unlabeled);
        - while the pages in use exceed `max_bytes`: orphan labels first, and only when none
          is left, the oldest requests. A flood of labels for ids never served can fill
          neither bound with anything but themselves."""
        for table, bound in (("orphan_labels", self.max_orphan_labels),
                             ("requests", self.max_requests)):  # fmt: skip
            if bound is not None:
                over = self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] - bound
                if over > 0:
                    self._evict(table, over)
        while self.max_bytes is not None and self.used_bytes() > self.max_bytes:
            for table in ("orphan_labels", "requests"):
                rows = self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                if rows:
                    self._evict(table, max(1, rows // 20))
                    break
            else:
                break

    def _evict(self, table: str, n: int) -> None:
        if table == "orphan_labels":  # by arrival: a timestamp cannot keep a label longer
            self.db.execute(
                "DELETE FROM orphan_labels WHERE rowid IN "
                "(SELECT rowid FROM orphan_labels ORDER BY rowid LIMIT ?)",
                (n,),
            )
            self.count("labels_evicted", n)
            return
        oldest = "SELECT request_id FROM requests ORDER BY ts LIMIT ?"
        unlabeled = self.db.execute(
            f"SELECT count(*) FROM requests WHERE label IS NULL AND request_id IN ({oldest})",
            (n,),
        ).fetchone()[0]
        self.count("predictions_evicted", unlabeled)
        self.db.execute(f"DELETE FROM outputs WHERE request_id IN ({oldest})", (n,))
        self.db.execute(f"DELETE FROM requests WHERE request_id IN ({oldest})", (n,))

    def reclaim(self, min_free_pages: int = 256) -> None:
        """Return free pages to the file system once there are many (outside a transaction)."""
        if self.db.execute("PRAGMA freelist_count").fetchone()[0] >= min_free_pages:
            self.db.execute("PRAGMA incremental_vacuum")

    # -- windows ---------------------------------------------------------------------

    def window(self, model: str, size: int, max_age_seconds: float) -> pd.DataFrame:
        """The most recent `size` outputs of `model` within `max_age_seconds` (event time)
        of the newest event, as a frame shaped like reference.parquet (+ label, ts)."""
        cutoff = self.meta("newest_ts") - max_age_seconds
        rows = self.db.execute(
            "SELECT o.request_id, o.ts, o.domain, o.predicted_label, o.confidence, o.entropy, "
            "o.features, o.embedding, o.probabilities, r.label "
            "FROM outputs o JOIN requests r USING (request_id) "
            "WHERE o.model=? AND o.ts>=? ORDER BY o.ts DESC LIMIT ?",
            (model, cutoff, size),
        ).fetchall()
        columns = [
            "request_id",
            "ts",
            "domain",
            "predicted_label",
            "confidence",
            "entropy",
            "features",
            "embedding",
            "probabilities",
            "label",
        ]
        frame = pd.DataFrame(rows, columns=columns)
        frame["probabilities"] = [
            None if blob is None else np.frombuffer(blob, dtype=np.float32)
            for blob in frame["probabilities"]
        ]
        if frame.empty:
            return frame.drop(columns=["features", "embedding"]).assign(
                **{f: [] for f in FEATURE_NAMES}
            )
        # One JSON document for all rows' feature objects: one parse, not one per row.
        parsed = json.loads("[" + ",".join(frame.pop("features")) + "]")
        features = pd.DataFrame.from_records(parsed, index=frame.index)
        embedding = pd.DataFrame(
            [read_embedding(e) for e in frame.pop("embedding")], index=frame.index
        )
        embedding.columns = [f"embedding_{i}" for i in embedding.columns]
        return pd.concat([frame, features, embedding], axis=1)

    def pending_labels(self) -> int:
        return self.db.execute("SELECT count(*) FROM requests WHERE label IS NULL").fetchone()[0]
