"""Embedded backend: one SQLite file (WAL) plus fcntl lock files under one directory, for one host.

Slots, claims and named locks are lock files: the kernel drops a dead process's locks, so a crash never
leaks a slot. The database is opened per operation, so threads and forked processes never share a
connection.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from molequle_dagster.coordination.store import (
    SCHEMA_VERSION,
    TABLES,
    CoordinationError,
    CoordinationStore,
    LockTimeout,
    Slot,
    file_name,
)

DATABASE = "coordination.sqlite"
BUSY_TIMEOUT_S = 30.0
_LOCK_POLL_S = (0.005, 0.1)  # first and longest wait between attempts on a busy named lock


class SqliteStore(CoordinationStore):
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser().resolve()
        self._db = self.directory / DATABASE
        self._local = threading.local()  # each thread's open connection
        self._opened: list[tuple[int, sqlite3.Connection]] = []
        try:
            for sub in ("slots", "claims", "locks"):
                (self.directory / sub).mkdir(parents=True, exist_ok=True)
            self._initialise()
        except (OSError, sqlite3.Error) as error:
            raise CoordinationError(
                f"cannot open the coordination store {self.description}: {error}"
            ) from None

    @property
    def description(self) -> str:
        return f"sqlite:{self._db}"

    def now(self) -> float:
        return time.time()

    # --- transactions --------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False only so close() may close every thread's connection; each thread
        # uses its own.
        db = sqlite3.connect(self._db, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across process crashes, fewer fsyncs
        return db

    def _initialise(self) -> None:
        """Switching to WAL needs the database to itself and ignores the busy timeout ("database is
        locked" when processes start together), so processes take turns under a file lock."""
        with open(self.directory / "locks" / "init.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                db = self._connect()
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    for statement in TABLES:
                        db.execute(statement.format(p="", serial="INTEGER PRIMARY KEY AUTOINCREMENT"))
                    db.execute(
                        "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?)",
                        (SCHEMA_VERSION,),
                    )
                finally:
                    db.close()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, kept open: closing the last connection to a WAL database
        checkpoints it (an fsync), which cost more than the calls themselves. A forked child opens its
        own: SQLite connections must not cross a fork."""
        cached = getattr(self._local, "db", None)
        if cached is not None and cached[0] == os.getpid():
            return cached[1]
        db = self._connect()
        self._local.db = (os.getpid(), db)
        self._opened.append((os.getpid(), db))
        return db

    @contextmanager
    def _tx(self, exclusive: str | None = None, *, durable: bool = True) -> Iterator[tuple[Any, float]]:
        # One writer at a time anyway (SQLite); BEGIN IMMEDIATE takes the write lock up front, so a
        # check-then-write (the rate window, a queue reservation) is atomic across processes.
        try:
            db = self._connection()
        except sqlite3.Error as error:
            raise CoordinationError(
                f"cannot open the coordination store {self.description}: {error}"
            ) from None
        try:
            db.execute("BEGIN IMMEDIATE" if exclusive else "BEGIN")
            cur = db.cursor()
            try:
                yield cur, self.now()
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as error:
            raise CoordinationError(f"coordination store {self.description}: {error}") from None

    def close(self) -> None:
        for pid, db in self._opened:
            if pid == os.getpid():  # a forked child leaves its parent's connections alone
                with contextlib.suppress(sqlite3.Error):
                    db.close()
        self._opened.clear()
        self._local = threading.local()

    # --- slots, claims, locks ------------------------------------------------------------------------
    def try_slot(self, pool: str, count: int) -> Slot | None:
        for i in range(count):
            slot = _try_flock(self.directory / "slots" / f"{file_name(pool)}-{i}.lock")
            if slot is not None:
                return slot
        return None

    def try_claim(self, name: str) -> Slot | None:
        # One file per claimed name, removed on release: claims are many (one per export job).
        return _try_flock(self.directory / "claims" / f"{file_name(name)}.lock", remove=True)

    @contextmanager
    def lock(self, name: str, *, timeout_s: float) -> Iterator[None]:
        path = self.directory / "locks" / f"{file_name(name)}.lock"
        deadline = time.monotonic() + timeout_s
        wait = _LOCK_POLL_S[0]
        while (slot := _try_flock(path)) is None:
            if time.monotonic() >= deadline:
                raise LockTimeout(f"lock {name!r} still held by another process after {timeout_s:g}s")
            time.sleep(min(wait, max(deadline - time.monotonic(), 0)))
            wait = min(wait * 2, _LOCK_POLL_S[1])
        with slot:
            yield


def _try_flock(path: Path, *, remove: bool = False) -> Slot | None:
    """An exclusive lock on `path` through a new open file description: exclusive within this process
    too (flock), so two threads never both get it."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None

    def release() -> None:
        if remove:
            # Unlinked while still locked. A process that opened the file just before may still lock the
            # removed file: harmless, as claims are given back only once nobody needs their job any more.
            path.unlink(missing_ok=True)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    return Slot(release)
