"""Job ledger: remembers our bulk exports (SQLite under state_dir) so a retried or restarted run reuses
an export that is already created, running or completed instead of spending queue slots and quota again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from molequle_dagster.marketo.sqlite_state import connect, initialise

# Statuses after which an export can no longer be used.
DEAD = frozenset({"failed", "cancelled", "canceled", "gone"})


@dataclass(frozen=True)
class LedgerEntry:
    export_id: str
    entity: str
    status: str
    created_at: float


def request_key(
    entity: str, fields: list[str] | None, filter: dict[str, Any], fmt: str = "CSV", scope: str | None = None
) -> str:
    identity = {"entity": entity, "fields": fields, "filter": filter, "format": fmt, "scope": scope}
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class JobLedger:
    def __init__(self, state_dir: Path, instance: str) -> None:
        # Jobs are visible only to the API user that created them: scope by instance + client id.
        self._instance = hashlib.sha256(instance.encode()).hexdigest()[:16]
        path = Path(state_dir) / "bulk_ledger.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        initialise(
            path,
            [
                "CREATE TABLE IF NOT EXISTS jobs (export_id TEXT PRIMARY KEY, instance TEXT NOT NULL,"
                " request_key TEXT NOT NULL, entity TEXT NOT NULL, status TEXT NOT NULL,"
                " created_at REAL NOT NULL, updated_at REAL NOT NULL)",
                "CREATE INDEX IF NOT EXISTS jobs_by_key ON jobs (instance, request_key, created_at)",
            ],
        )

    def _db(self) -> Any:
        return connect(self._path)

    def find_reusable(self, key: str, max_age_s: float) -> LedgerEntry | None:
        """The newest live export for this request, created within `max_age_s`."""
        with self._db() as db:
            rows = db.execute(
                "SELECT export_id, entity, status, created_at FROM jobs WHERE instance=? AND request_key=?"
                " AND created_at >= ? ORDER BY created_at DESC",
                (self._instance, key, time.time() - max_age_s),
            ).fetchall()
        for export_id, entity, status, created_at in rows:
            if status.lower() not in DEAD:
                return LedgerEntry(export_id, entity, status, created_at)
        return None

    def record(self, key: str, entity: str, export_id: str, status: str) -> None:
        now = time.time()
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (export_id, self._instance, key, entity, status, now, now),
            )

    def set_status(self, export_id: str, status: str) -> None:
        with self._db() as db:
            db.execute(
                "UPDATE jobs SET status=?, updated_at=? WHERE export_id=?", (status, time.time(), export_id)
            )

    def status(self, export_id: str) -> str | None:
        with self._db() as db:
            row = db.execute("SELECT status FROM jobs WHERE export_id=?", (export_id,)).fetchone()
        return row[0] if row else None
