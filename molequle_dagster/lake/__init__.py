"""Molequle's Parquet lake on a pyarrow filesystem: a local directory by default, any pyarrow URI otherwise.

Three kinds of tables (see each module):

* keyed tables (`keyed.py`): versioned, merge-on-read current tables (people, accounts, memberships,
  unified_*, …) with a change feed; writes follow the change;
* day tables (`days.py`): one file per daily partition (marketo_activities, marketo_people_updates);
* append-only logs (`log.py`): the action log.

Commits of a keyed table are serialised by a named lock. In production the lock comes from the
coordination store (PostgreSQL), so writers on any host agree; the default is a file lock on this host.

Read any table into pandas with `Lake(uri).read_table("people").to_pandas()`; `views.read_pandas` also
serves the computed views and finds the lake from the settings.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from molequle_dagster.lake.days import DayTable
from molequle_dagster.lake.keyed import MANIFEST, Changes, Compaction, KeyedTable, Locks, Manifest
from molequle_dagster.lake.log import AppendLog
from molequle_dagster.lake.storage import LakeError, Storage, restore_seconds

__all__ = [
    "AppendLog",
    "Changes",
    "Compaction",
    "DayTable",
    "KeyedTable",
    "Lake",
    "LakeError",
    "Manifest",
    "restore_seconds",
]


class HostLocks:
    """Named locks shared by the processes of one host (fcntl; the kernel frees a dead holder's lock)."""

    def __init__(self, uri: str) -> None:
        digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
        self._dir = Path(tempfile.gettempdir()) / "molequle-locks" / digest

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self._dir.mkdir(parents=True, exist_ok=True)
        safe = hashlib.sha256(name.encode()).hexdigest()[:24]
        fd = os.open(self._dir / f"{safe}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class Lake:
    def __init__(self, uri: str, *, locks: Locks | None = None, compaction: Compaction | None = None) -> None:
        self.uri = uri
        self.storage = Storage(uri)
        self.locks: Locks = locks or HostLocks(uri)
        self._compaction = compaction

    # --- tables --------------------------------------------------------------------------------------
    def keyed(self, name: str, key: str | list[str] | tuple[str, ...]) -> KeyedTable:
        keys = [key] if isinstance(key, str) else list(key)
        return KeyedTable(self.storage, name, keys, self.locks, self._compaction)

    def days(self, name: str) -> DayTable:
        return DayTable(self.storage, name)

    def log(self, name: str) -> AppendLog:
        return AppendLog(self.storage, name)

    def location(self, name: str) -> str:
        return self.storage.location(name)

    def kind(self, name: str) -> str | None:
        """'keyed', 'days', 'log' or None (no data), from the table's layout."""
        if self.storage.exists(self.storage.path(name, MANIFEST)):
            return "keyed"
        if self.days(name).days():
            return "days"
        if self.log(name).read(columns=[]) is not None:
            return "log"
        return None

    def read_table(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """Any table's current rows: a keyed table merged, all days of a day table, all of a log."""
        kind = self.kind(name)
        table: pa.Table | None = None
        if kind == "keyed":
            data = self.storage.read_json(self.storage.path(name, MANIFEST)) or {}
            table = self.keyed(name, list(data.get("key") or [])).read(columns)
        elif kind == "days":
            table = self.days(name).read_days(columns=columns)
        elif kind == "log":
            table = self.log(name).read(columns)
        if table is None:
            raise LakeError(f"table {name!r} has no data under {self.location(name)}")
        return table

    def read_current(self, name: str, columns: list[str] | None = None) -> pa.Table | None:
        """A keyed table's current rows, or None before its first commit."""
        data = self.storage.read_json(self.storage.path(name, MANIFEST))
        if data is None:
            return None
        return self.keyed(name, list(data.get("key") or [])).read(columns)

    def sweep_temp_files(self, older_than_s: float = 3600.0) -> list[str]:
        return self.storage.sweep_temp_files(older_than_s)
