"""Cross-process pacing: at most N calls per trailing window and M in flight, shared by every process
that uses the same `state_dir` (Dagster runs steps in separate processes).

* Rate: an SQLite (WAL) log of calls. A call counts from the moment it is admitted until `window_s` after
  it *finished*, so however long the request takes on the wire, the server can never see more than N of
  our calls inside any window (admission <= server arrival <= completion).
* In flight: M slot files locked with fcntl; the kernel drops a dead process's lock, so a crash never
  leaks a slot.
* Bulk downloads hold an in-flight slot until the body has streamed (Marketo counts the call as in
  flight that long), but only M-1 downloads may do so at once (M-1 "download permit" files, taken before
  the slot): one slot always stays for ordinary calls, so a process streaming a file can still make its
  other calls and nothing deadlocks. One thread must read its downloads one after the other.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from molequle_dagster.marketo.config import PacingConfig
from molequle_dagster.marketo.sqlite_state import connect, initialise

_STALE_IN_FLIGHT_S = 3600.0  # a call row never completed (process killed) stops counting after this


class FileSlots:
    """N slots shared by every process on the machine: each is an fcntl-locked file under `directory`.

    A slot is held through an open file descriptor; the kernel releases it if the process dies.
    """

    def __init__(self, directory: Path, name: str, count: int) -> None:
        self._dir = Path(directory)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._name = name
        self._count = count

    def try_acquire(self) -> int | None:
        """A held slot's file descriptor, or None when all are taken."""
        for i in range(self._count):
            fd = os.open(self._dir / f"{self._name}-slot-{i}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
        return None

    @staticmethod
    def release(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class CrossProcessPacer:
    def __init__(
        self,
        state_dir: Path,
        instance: str,
        config: PacingConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._config = config
        self._sleep = sleep  # real waits: the window is real time on Marketo's side
        self._instance = hashlib.sha256(instance.encode()).hexdigest()[:16]
        self._dir = Path(state_dir) / "pacing"
        self._dir.mkdir(parents=True, exist_ok=True)
        self._db_path = self._dir / "calls.sqlite"
        self._slots = FileSlots(self._dir, self._instance, config.max_in_flight)
        self._download_permits = FileSlots(self._dir, f"{self._instance}-download", config.max_downloads)
        initialise(
            self._db_path,
            [
                "CREATE TABLE IF NOT EXISTS calls (id INTEGER PRIMARY KEY, instance TEXT NOT NULL,"
                " admitted REAL NOT NULL, finished REAL)",
                "CREATE INDEX IF NOT EXISTS calls_by_instance ON calls (instance, admitted)",
            ],
        )

    def _connect(self) -> Any:
        return connect(self._db_path)

    @contextmanager
    def call(self) -> Iterator[None]:
        """Hold one in-flight slot and one place in the rate window for the duration of a request."""
        with self.in_flight_slot():
            row_id = self._admit()
            try:
                yield
            finally:
                self._finish(row_id)

    @contextmanager
    def rate_only(self) -> Iterator[None]:
        """A place in the rate window for a request made under a slot its caller already holds."""
        row_id = self._admit()
        try:
            yield
        finally:
            self._finish(row_id)

    @contextmanager
    def in_flight_slot(self) -> Iterator[None]:
        with self._held(self._slots):
            yield

    @contextmanager
    def download_slot(self) -> Iterator[None]:
        """An in-flight slot for the whole life of a bulk download (never the last free one)."""
        with self._held(self._download_permits), self._held(self._slots):
            yield

    @contextmanager
    def _held(self, slots: FileSlots) -> Iterator[None]:
        while (fd := slots.try_acquire()) is None:
            self._sleep(self._config.slot_poll_s)
        try:
            yield
        finally:
            FileSlots.release(fd)

    def _admit(self) -> int:
        window = self._config.window_s
        while True:
            now = time.time()
            with self._connect() as db:
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.execute(
                        "DELETE FROM calls WHERE instance=? AND ((finished IS NOT NULL AND finished <= ?)"
                        " OR admitted <= ?)",
                        (self._instance, now - window, now - _STALE_IN_FLIGHT_S),
                    )
                    rows = db.execute(
                        "SELECT finished FROM calls WHERE instance=? ORDER BY finished",
                        (self._instance,),
                    ).fetchall()
                    if len(rows) < self._config.calls_per_window:
                        cur = db.execute(
                            "INSERT INTO calls (instance, admitted) VALUES (?, ?)", (self._instance, now)
                        )
                        db.execute("COMMIT")
                        return int(cur.lastrowid or 0)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            finished = [r[0] for r in rows if r[0] is not None]
            # Wait until the earliest finished call leaves the window; if all are in flight, poll briefly.
            wait = (finished[0] + window - now) if finished else self._config.slot_poll_s
            self._sleep(max(wait, 0.001))

    def _finish(self, row_id: int) -> None:
        with self._connect() as db:
            db.execute("UPDATE calls SET finished=? WHERE id=?", (time.time(), row_id))
