"""Production backend: tables in the `molequle` schema of a PostgreSQL database (the Dagster instance's
own database by default), so every process on every host shares one Marketo budget.

* Times come from the database server's clock: hosts whose clocks disagree still share one window.
* Slots and claims are session advisory locks on one long-lived connection per store: the server drops
  them when the session ends, so a dead process (or host) frees its slots as fcntl does locally. Advisory
  locks are re-entrant within a session, so the store also remembers which keys this process holds:
  two threads of one process never share a slot.
* Named locks take a connection of their own and wait on the server (`lock_timeout`), never polling.
* Check-then-write steps (the rate window, queue reservations) run under a transaction advisory lock.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.errors

from molequle_dagster.coordination import store as base
from molequle_dagster.coordination.store import CoordinationError, LockTimeout, Slot, stable_key

SCHEMA = "molequle"
CONNECT_TIMEOUT_S = 10
URL_SCHEMES = ("postgresql://", "postgresql+psycopg2://", "postgres://")


def is_postgres_url(text: str) -> bool:
    return text.startswith(URL_SCHEMES)


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class _Cursor:
    """A psycopg2 cursor that takes the `?` placeholders the shared SQL is written with."""

    def __init__(self, cur: Any) -> None:
        self._cur = cur

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self._cur.execute(sql.replace("?", "%s"), params)

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)


class PostgresStore(base.CoordinationStore):
    def __init__(self, url: str, *, schema: str = SCHEMA) -> None:
        if not is_postgres_url(url):
            raise ValueError(f"url: expected a postgresql:// URL, got {redact_url(url)!r}")
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
            raise ValueError(f"schema: expected a lower-case SQL identifier, got {schema!r}")
        self.schema = schema
        self.prefix = f"{schema}."
        rest = url.split("://", 1)[1]
        self._dsn = f"postgresql://{rest}"  # libpq knows no "+psycopg2" (SQLAlchemy's dialect suffix)
        self._description = redact_url(url)
        self._mutex = threading.RLock()  # the data connection, one transaction at a time
        self._conn: Any = None
        self._lock_mutex = threading.Lock()  # the session holding slots and claims
        self._lock_conn: Any = None
        self._held: set[int] = set()
        self._pid = os.getpid()
        self._initialise()

    @property
    def description(self) -> str:
        return self._description if self.schema == SCHEMA else f"{self._description} (schema {self.schema})"

    def now(self) -> float:
        with self._tx() as (_, now):
            return now

    # --- connections ---------------------------------------------------------------------------------
    def _connect(self, *, autocommit: bool) -> Any:
        try:
            conn = psycopg2.connect(
                self._dsn, connect_timeout=CONNECT_TIMEOUT_S, application_name="molequle-coordination"
            )
        except psycopg2.Error as error:
            raise CoordinationError(
                f"cannot connect to the coordination store {self.description}: {_first_line(error)}"
            ) from None
        conn.autocommit = autocommit
        return conn

    def _forked(self) -> None:
        """In a child process: never touch the parent's sessions (closing them would end its locks)."""
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._conn = self._lock_conn = None
            self._held = set()

    def _data(self) -> Any:
        self._forked()
        if self._conn is None or self._conn.closed:
            self._conn = self._connect(autocommit=False)
        return self._conn

    def _session(self) -> Any:
        self._forked()
        if self._lock_conn is None or self._lock_conn.closed:
            self._lock_conn = self._connect(autocommit=True)
        return self._lock_conn

    def _initialise(self) -> None:
        with self._tx(exclusive="molequle-schema") as (cur, _):
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
            for statement in base.TABLES:
                cur.execute(statement.format(p=self.prefix, serial="BIGSERIAL PRIMARY KEY"))
            cur.execute(
                self._sql(
                    "INSERT INTO {p}meta (name, value) VALUES ('schema_version', ?) ON CONFLICT DO NOTHING"
                ),
                (base.SCHEMA_VERSION,),
            )

    @contextmanager
    def _tx(self, exclusive: str | None = None, *, durable: bool = True) -> Iterator[tuple[Any, float]]:
        with self._mutex:
            conn = self._data()
            try:
                with conn, conn.cursor() as raw:  # commits on success, rolls back on an exception
                    if not durable:  # the commit need not wait for the WAL to reach the disk
                        raw.execute("SET LOCAL synchronous_commit TO OFF")
                    if exclusive is None:
                        raw.execute("SELECT extract(epoch FROM clock_timestamp())")
                    else:
                        raw.execute(
                            "SELECT extract(epoch FROM clock_timestamp()) FROM pg_advisory_xact_lock(%s)",
                            (stable_key(f"tx:{exclusive}"),),
                        )
                    now = float(raw.fetchone()[0])
                    yield _Cursor(raw), now
            except psycopg2.Error as error:
                if conn.closed or isinstance(error, psycopg2.OperationalError | psycopg2.InterfaceError):
                    self._conn = None  # reconnect next time
                    with _suppressed():
                        conn.close()
                raise CoordinationError(
                    f"coordination store {self.description}: {_first_line(error)}"
                ) from None

    # --- slots and claims ----------------------------------------------------------------------------
    def try_slot(self, pool: str, count: int) -> Slot | None:
        return self._try_keys([stable_key(f"slot:{pool}#{i}") for i in range(count)])

    def try_claim(self, name: str) -> Slot | None:
        return self._try_keys([stable_key(f"claim:{name}")])

    def _try_keys(self, keys: list[int]) -> Slot | None:
        with self._lock_mutex:
            free = [k for k in keys if k not in self._held]
            if not free:
                return None
            session = self._session()
            try:
                with session.cursor() as cur:
                    # Tried in order; LIMIT stops at the first lock taken, so no other key is held.
                    cur.execute(
                        "SELECT k FROM unnest(%s::bigint[]) AS k WHERE pg_try_advisory_lock(k) LIMIT 1",
                        (free,),
                    )
                    row = cur.fetchone()
            except psycopg2.Error as error:
                self._lock_conn = None
                raise CoordinationError(
                    f"coordination store {self.description}: {_first_line(error)}"
                ) from None
            if row is None:
                return None
            key = int(row[0])
            self._held.add(key)
            pid = self._pid
        return Slot(lambda: self._unlock(key, pid))

    def _unlock(self, key: int, pid: int) -> None:
        with self._lock_mutex:
            if pid != os.getpid():
                return  # taken by the parent process; the child never held it
            self._held.discard(key)
            session = self._lock_conn
            if session is None or session.closed:
                return  # the session ended, and its locks with it
            try:
                with session.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (key,))
            except psycopg2.Error:
                self._lock_conn = None  # a broken session has already lost its locks

    # --- named locks ---------------------------------------------------------------------------------
    @contextmanager
    def lock(self, name: str, *, timeout_s: float) -> Iterator[None]:
        conn = self._connect(autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SET lock_timeout = %s", (f"{max(1, round(timeout_s * 1000))}ms",))
                try:
                    cur.execute("SELECT pg_advisory_lock(%s)", (stable_key(f"lock:{name}"),))
                except psycopg2.errors.LockNotAvailable:
                    raise LockTimeout(
                        f"lock {name!r} still held by another process after {timeout_s:g}s"
                    ) from None
                except psycopg2.Error as error:
                    raise CoordinationError(
                        f"coordination store {self.description}: {_first_line(error)}"
                    ) from None
            yield
        finally:
            with _suppressed():
                conn.close()  # ends the session: the lock goes with it

    def close(self) -> None:
        with self._mutex, self._lock_mutex:
            if os.getpid() == self._pid:
                for conn in (self._conn, self._lock_conn):
                    if conn is not None:
                        with _suppressed():
                            conn.close()
            self._conn = self._lock_conn = None
            self._held = set()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _suppressed() -> contextlib.suppress:
    return contextlib.suppress(psycopg2.Error)
