"""Kill -9 a process that ingests into a state file, partway through."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def kill_9_mid_ingest(args: list[str], db: Path, at_least: int, timeout: float = 60) -> int:
    """Run `args` (it ingests into `db`), SIGKILL it once it has committed `at_least`
    prediction events (or after `timeout`); returns how many it had committed."""
    child = subprocess.Popen(args, cwd=ROOT)
    deadline = time.monotonic() + timeout
    ingested = 0
    while time.monotonic() < deadline and ingested < at_least:
        time.sleep(0.05)
        try:
            with sqlite3.connect(db, timeout=5) as conn:
                row = conn.execute(
                    "SELECT value FROM counters WHERE name='events_prediction'"
                ).fetchone()
            ingested = row[0] if row else 0
        except sqlite3.OperationalError:
            pass
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    return ingested
