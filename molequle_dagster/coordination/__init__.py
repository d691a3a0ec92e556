"""The coordination store: state every process on every host talking to one Marketo must share.

`open_store(url_or_path)` picks the backend: a `postgresql://` (or `postgresql+psycopg2://`) URL opens
`PostgresStore`, anything else is a directory for `SqliteStore`. No Dagster imports here.
"""

from __future__ import annotations

import os

from molequle_dagster.coordination.postgres import PostgresStore, is_postgres_url, redact_url
from molequle_dagster.coordination.sqlite import SqliteStore
from molequle_dagster.coordination.store import (
    Admission,
    CoordinationError,
    CoordinationStore,
    JobRecord,
    LockTimeout,
    QuotaStop,
    Slot,
    UsageRecord,
)


def open_store(url_or_path: str | os.PathLike[str]) -> CoordinationStore:
    """PostgreSQL for a `postgresql://…` URL (tables in its `molequle` schema), else SQLite in that
    directory."""
    target = os.fspath(url_or_path)
    if not target.strip():
        raise ValueError("url_or_path: expected a postgresql:// URL or a directory, got an empty string")
    if is_postgres_url(target):
        return PostgresStore(target)
    return SqliteStore(target)


__all__ = [
    "Admission",
    "CoordinationError",
    "CoordinationStore",
    "JobRecord",
    "LockTimeout",
    "PostgresStore",
    "QuotaStop",
    "Slot",
    "SqliteStore",
    "UsageRecord",
    "open_store",
    "redact_url",
]
