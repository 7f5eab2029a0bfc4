"""The monitor's counters with structured keys, as SQLite stores them.

A counter's key is its name (`events_prediction`), or a tuple of its name and its label
values: `("labeled", model, domain)`, `("correct", model, domain)`, `("lost", reason)`,
`("rejected", reason)`. SQLite keeps the name and the label values as a JSON array in two
columns, never joined into one string: a value holding any character (a model named `evil|x`
in a forged event) cannot break reading them back, in the exporter or after a restart.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping

log = logging.getLogger(__name__)

CounterKey = str | tuple[str, ...]

COUNTERS_TABLE = """
CREATE TABLE IF NOT EXISTS counters (name TEXT NOT NULL, labels TEXT NOT NULL DEFAULT '[]',
    value INTEGER NOT NULL, PRIMARY KEY (name, labels));
"""

# State files from before structured keys held `name|value|value` strings: the label values
# each such name had. A legacy key of another shape (a `|` inside a value) cannot be split
# back: it is dropped, with a warning.
LEGACY_LABEL_COUNTS = {"labeled": 2, "correct": 2, "lost": 1}


def key_row(key: CounterKey) -> tuple[str, str]:
    """A counter's key as its (name, labels) columns."""
    if isinstance(key, str):
        return key, "[]"
    return key[0], json.dumps(list(key[1:]))


def row_key(name: str, labels: str) -> CounterKey:
    """The (name, labels) columns as a counter's key."""
    values = json.loads(labels)
    return (name, *values) if values else name


def legacy_key(name: str) -> CounterKey | None:
    """A key of a state file from before structured keys; None when it cannot be split."""
    parts = name.split("|")
    if len(parts) == 1:
        return name
    if LEGACY_LABEL_COUNTS.get(parts[0]) == len(parts) - 1:
        return tuple(parts)
    return None


def migrate_counters(db: sqlite3.Connection) -> None:
    """Rebuild a counters table of `name|value` strings with structured keys (once, in one
    transaction; a table already structured is left alone)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(counters)")}
    if "labels" in columns:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        legacy = db.execute("SELECT name, value FROM counters").fetchall() if columns else []
        db.execute("DROP TABLE IF EXISTS counters")
        db.execute(COUNTERS_TABLE)
        rows = []
        for name, value in legacy:
            key = legacy_key(name)
            if key is None:
                log.warning("counter %r of an older state file dropped: not a known key", name)
                continue
            rows.append((*key_row(key), value))
        db.executemany("INSERT INTO counters VALUES (?, ?, ?)", rows)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def add_counts(db: sqlite3.Connection, counts: Mapping[CounterKey, int]) -> None:
    db.executemany(
        "INSERT INTO counters VALUES (?, ?, ?) "
        "ON CONFLICT(name, labels) DO UPDATE SET value=value+excluded.value",
        [(*key_row(key), by) for key, by in counts.items()],
    )


def read_counts(db: sqlite3.Connection) -> dict[CounterKey, int]:
    return {row_key(name, labels): value for name, labels, value in db.execute(
        "SELECT name, labels, value FROM counters"
    )}  # fmt: skip


def counter_tree(counters: Mapping[CounterKey, int]) -> dict:
    """Counters as JSON for `/status`: a name's value, or its values nested by label value
    (`{"labeled": {model: {domain: n}}}`)."""
    tree: dict = {}
    for key, value in counters.items():
        if isinstance(key, str):
            tree[key] = value
            continue
        node = tree
        for part in key[:-1]:  # each name has one number of label values: no clash
            node = node.setdefault(part, {})
        node[key[-1]] = value
    return tree
