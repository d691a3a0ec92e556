"""Small SQLite files shared by every process on the machine (the pacing log, the bulk job ledger)."""

from __future__ import annotations

import fcntl
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_S = 30.0


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        yield db
    finally:
        db.close()


def initialise(path: Path, statements: Sequence[str]) -> None:
    """Switch to WAL and create the schema. Switching the journal mode needs the database to itself and
    ignores the busy timeout ("database is locked" when processes start together), so processes take
    turns under a machine-wide file lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".init.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with connect(path) as db:
                db.execute("PRAGMA journal_mode=WAL")
                for statement in statements:
                    db.execute(statement)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
