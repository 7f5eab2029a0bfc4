"""The monitor state's tables, and the migrations that open a state file of an older version.

Each migration runs when the file needs it, in its own transaction: a state written by any
earlier version opens, with its offsets and counts, and is never rebuilt from the events.
"""

from __future__ import annotations

import sqlite3

from monitoring.counters import COUNTERS_TABLE, migrate_counters

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS offsets (segment TEXT PRIMARY KEY, position INTEGER NOT NULL,
    lines INTEGER NOT NULL DEFAULT 0, size INTEGER NOT NULL DEFAULT 0,
    inode INTEGER NOT NULL DEFAULT 0, seen REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS writers (writer TEXT PRIMARY KEY, consumed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS stream_positions (stream TEXT PRIMARY KEY, last_id TEXT NOT NULL,
    consumed INTEGER NOT NULL DEFAULT 0, lost INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY, ts REAL NOT NULL, domain TEXT, label TEXT, label_ts REAL);
CREATE TABLE IF NOT EXISTS outputs (
    request_id TEXT NOT NULL, model TEXT NOT NULL, ts REAL NOT NULL, domain TEXT,
    predicted_label TEXT NOT NULL, confidence REAL NOT NULL, entropy REAL NOT NULL,
    features TEXT NOT NULL, embedding TEXT NOT NULL, probabilities BLOB,
    PRIMARY KEY (request_id, model));
CREATE INDEX IF NOT EXISTS outputs_by_model_ts ON outputs (model, ts);
CREATE INDEX IF NOT EXISTS requests_by_ts ON requests (ts);
"""
    + COUNTERS_TABLE
)
# Labels whose prediction has not arrived (yet): several may wait under one id, in their order
# of arrival (rowid), until the prediction comes and the join rule picks one.
ORPHAN_LABELS = (
    "CREATE TABLE IF NOT EXISTS orphan_labels ("
    "request_id TEXT NOT NULL, label TEXT NOT NULL, ts REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS orphan_labels_by_id ON orphan_labels (request_id)",
    "CREATE INDEX IF NOT EXISTS orphan_labels_by_ts ON orphan_labels (ts)",
)

SEGMENT_COLUMNS = {
    "lines": "INTEGER NOT NULL DEFAULT 0",
    "size": "INTEGER NOT NULL DEFAULT 0",
    "inode": "INTEGER NOT NULL DEFAULT 0",
    "seen": "REAL NOT NULL DEFAULT 0",
}


def create_or_migrate(db: sqlite3.Connection) -> None:
    """The tables of this version, migrating those of an older state file (outside a
    transaction; each migration in one)."""
    migrate_counters(db)
    db.executescript(SCHEMA)
    db.execute("BEGIN IMMEDIATE")
    if any(row[5] for row in db.execute("PRAGMA table_info(orphan_labels)")):
        # From before several labels could wait under one id (request_id was the key).
        db.execute("ALTER TABLE orphan_labels RENAME TO orphan_labels_one_per_id")
        for statement in ORPHAN_LABELS:
            db.execute(statement)
        db.execute("INSERT INTO orphan_labels SELECT request_id, label, ts "
                   "FROM orphan_labels_one_per_id ORDER BY rowid")  # fmt: skip
        db.execute("DROP TABLE orphan_labels_one_per_id")
    for statement in ORPHAN_LABELS:
        db.execute(statement)
    db.execute("COMMIT")
    columns = {row[1] for row in db.execute("PRAGMA table_info(offsets)")}
    for column, kind in SEGMENT_COLUMNS.items():  # a state file from before these columns
        if column not in columns:
            db.execute(f"ALTER TABLE offsets ADD COLUMN {column} {kind}")
    if "probabilities" not in {row[1] for row in db.execute("PRAGMA table_info(outputs)")}:
        db.execute("ALTER TABLE outputs ADD COLUMN probabilities BLOB")
