"""The coordination store's interface, its records, and the SQL both backends share.

Everything every process on every host talking to the same Marketo must agree on lives here: the rate
window (calls admitted and finished per instance), in-flight call slots and download permits, our bulk
jobs (the ledger), our usage per quota day, the quota stop, and named locks. Two backends implement it:
`SqliteStore` (embedded mode: one SQLite file and lock files under a directory, one host) and
`PostgresStore` (production: tables in the `molequle` schema, slots and locks as advisory locks of the
database sessions, so a dead process frees them). Nothing here knows HTTP or Dagster.

Times are seconds since the epoch on the store's clock (`now()`): the database server's clock for
PostgreSQL, so hosts whose clocks disagree still share one rate window.
"""

from __future__ import annotations

import hashlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields, replace
from typing import Any


class CoordinationError(RuntimeError):
    """The coordination store could not be reached or used; the message names the store (no password)."""


class LockTimeout(CoordinationError):
    """A named lock was not free within its timeout."""


@dataclass(frozen=True)
class Admission:
    """The answer to `try_admit_call`: a ticket to finish, or how long to wait before asking again."""

    ticket: int | None
    wait_s: float = 0.0


@dataclass(frozen=True)
class JobRecord:
    """One of our bulk export jobs as last seen. `instance` scopes Marketo's shared limits (the REST base
    URL), `api_user` the visibility of the job (only the API user that created it can see it)."""

    export_id: str
    instance: str
    api_user: str
    request_key: str
    entity: str
    status: str
    owner: str = ""  # the process that created or last resumed it
    reuse_scope: str | None = None  # e.g. a Dagster root run id: reuse within it needs no closed window
    window_end: float | None = None  # a reusable-across-runs request's window end, else None
    request: str = ""  # the request as canonical JSON, for people reading the ledger
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float | None = None  # Marketo's startedAt: the export's data is as of then
    finished_at: float | None = None
    file_size: int | None = None
    records: int | None = None
    quota_day: str | None = None  # the quota day (quota time zone) the file's bytes were metered on

    def with_(self, **changes: Any) -> JobRecord:
        return replace(self, **changes)


JOB_COLUMNS = tuple(f.name for f in fields(JobRecord))


@dataclass(frozen=True)
class UsageRecord:
    """What we spent on one quota day: calls admitted by our pacer, and the bytes of our completed exports."""

    day: str
    calls: int
    export_bytes: int
    exports: int


@dataclass(frozen=True)
class QuotaStop:
    kind: str  # "calls" (607) or "exports" (1029 export quota)
    reason: str
    resets_at: float
    recorded_at: float


class Slot:
    """A held slot, claim or lock; `release()` (or leaving the `with` block) gives it back once."""

    def __init__(self, release: Any) -> None:
        self._release = release
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --- the schema ------------------------------------------------------------------------------------------
SCHEMA_VERSION = "1"
# `{p}` is the table prefix: "molequle." on PostgreSQL, "" on SQLite. `{serial}` the auto-increment key.
TABLES = (
    "CREATE TABLE IF NOT EXISTS {p}calls (id {serial}, instance TEXT NOT NULL,"
    " admitted DOUBLE PRECISION NOT NULL, finished DOUBLE PRECISION)",
    "CREATE INDEX IF NOT EXISTS calls_by_instance ON {p}calls (instance, admitted)",
    "CREATE TABLE IF NOT EXISTS {p}usage (instance TEXT NOT NULL, day TEXT NOT NULL, calls BIGINT NOT NULL,"
    " PRIMARY KEY (instance, day))",
    "CREATE TABLE IF NOT EXISTS {p}jobs (export_id TEXT PRIMARY KEY, instance TEXT NOT NULL,"
    " api_user TEXT NOT NULL, request_key TEXT NOT NULL, entity TEXT NOT NULL, status TEXT NOT NULL,"
    " owner TEXT NOT NULL, reuse_scope TEXT, window_end DOUBLE PRECISION, request TEXT NOT NULL,"
    " created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,"
    " started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION, file_size BIGINT, records BIGINT,"
    " quota_day TEXT)",
    "CREATE INDEX IF NOT EXISTS jobs_by_request ON {p}jobs (instance, request_key, created_at)",
    "CREATE INDEX IF NOT EXISTS jobs_by_status ON {p}jobs (instance, status)",
    "CREATE TABLE IF NOT EXISTS {p}quota_stops (instance TEXT NOT NULL, kind TEXT NOT NULL,"
    " reason TEXT NOT NULL, resets_at DOUBLE PRECISION NOT NULL, recorded_at DOUBLE PRECISION NOT NULL,"
    " PRIMARY KEY (instance, kind))",
    "CREATE TABLE IF NOT EXISTS {p}meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


def stable_key(text: str) -> int:
    """A signed 64-bit number for a name (PostgreSQL advisory lock keys)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def file_name(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class CoordinationStore(ABC):
    """The store both backends are. Thread-safe; one object per process is enough.

    The ledger, usage, quota stop and rate window are plain SQL shared by both backends; a backend
    provides the clock, transactions (`_tx`), slots, claims and named locks."""

    prefix = ""  # table prefix: "molequle." on PostgreSQL (its schema), "" on SQLite

    # --- backend primitives --------------------------------------------------------------------------
    @property
    @abstractmethod
    def description(self) -> str:
        """Where the store lives, for messages: never a password."""

    @abstractmethod
    def now(self) -> float:
        """The store's clock, seconds since the epoch."""

    @abstractmethod
    def _tx(
        self, exclusive: str | None = None, *, durable: bool = True
    ) -> AbstractContextManager[tuple[Any, float]]:
        """(cursor, now) inside one transaction; `exclusive` serialises transactions naming the same key.
        `durable=False`: the commit need not wait for the disk (the rate window lives for seconds)."""

    @abstractmethod
    def try_slot(self, pool: str, count: int) -> Slot | None:
        """One of `count` slots of `pool`, or None when all are held (by any process, this one included).
        A dead process's slots are free again at once."""

    @abstractmethod
    def try_claim(self, name: str) -> Slot | None:
        """Exclusive ownership of `name` (e.g. one export job) while the process lives, or None."""

    @abstractmethod
    def lock(self, name: str, *, timeout_s: float) -> AbstractContextManager[None]:
        """A blocking named lock (not re-entrant); raises LockTimeout after `timeout_s`."""

    def close(self) -> None:  # noqa: B027 (optional for backends without connections to release)
        """Release connections; held slots and locks are released by their holders."""

    def __enter__(self) -> CoordinationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sql(self, text: str) -> str:
        return text.replace("{p}", self.prefix)

    # --- rate window ---------------------------------------------------------------------------------
    def try_admit_call(
        self,
        instance: str,
        *,
        limit: int,
        window_s: float,
        stale_after_s: float,
        usage_day: str | None = None,
    ) -> Admission:
        """Admit one call if fewer than `limit` of `instance`'s calls count in the window, atomically across
        processes. A call counts from its admission until `window_s` after it finished; one never
        finished (its process died) stops counting `stale_after_s` after admission. `usage_day` adds the
        call to that day's usage record in the same transaction."""
        with self._tx(exclusive=f"rate:{instance}", durable=False) as (cur, now):
            cur.execute(
                self._sql(
                    "DELETE FROM {p}calls WHERE instance=? AND ((finished IS NOT NULL AND finished <= ?)"
                    " OR admitted <= ?)"
                ),
                (instance, now - window_s, now - stale_after_s),
            )
            cur.execute(
                self._sql("SELECT count(*), min(finished) FROM {p}calls WHERE instance=?"), (instance,)
            )
            counted, earliest = cur.fetchone()
            if counted >= limit:
                # Wait until the earliest finished call leaves the window; if all are in flight, poll.
                return Admission(None, (earliest + window_s - now) if earliest is not None else 0.0)
            cur.execute(
                self._sql("INSERT INTO {p}calls (instance, admitted) VALUES (?, ?) RETURNING id"),
                (instance, now),
            )
            ticket = int(cur.fetchone()[0])
            if usage_day is not None:
                self._add_calls(cur, instance, usage_day, 1)
        return Admission(ticket)

    def finish_call(self, ticket: int) -> None:
        with self._tx(durable=False) as (cur, now):
            cur.execute(self._sql("UPDATE {p}calls SET finished=? WHERE id=?"), (now, ticket))

    # --- ledger --------------------------------------------------------------------------------------
    def _stamped(self, job: JobRecord, now: float) -> JobRecord:
        return job.with_(created_at=job.created_at or now, updated_at=job.updated_at or now)

    def _upsert(self, cur: Any, job: JobRecord) -> None:
        names = ", ".join(JOB_COLUMNS)
        marks = ", ".join("?" for _ in JOB_COLUMNS)
        updates = ", ".join(f"{c}=excluded.{c}" for c in JOB_COLUMNS if c != "export_id")
        cur.execute(
            self._sql(
                f"INSERT INTO {{p}}jobs ({names}) VALUES ({marks})"
                f" ON CONFLICT (export_id) DO UPDATE SET {updates}"
            ),
            tuple(getattr(job, c) for c in JOB_COLUMNS),
        )

    def put_job(self, job: JobRecord) -> JobRecord:
        """Insert or replace a job (created_at/updated_at default to now); returns what was stored."""
        with self._tx() as (cur, now):
            job = self._stamped(job, now)
            self._upsert(cur, job)
        return job

    def reserve_job(self, job: JobRecord, *, limit: int, counted: Collection[str]) -> bool:
        """`put_job(job)` only if fewer than `limit` other jobs of `job.instance` are in a `counted` status:
        atomic across processes, so a queue share is never exceeded by processes racing."""
        statuses = sorted(counted)
        with self._tx(exclusive=f"jobs:{job.instance}") as (cur, now):
            marks = ", ".join("?" for _ in statuses)
            cur.execute(
                self._sql(
                    "SELECT count(*) FROM {p}jobs WHERE instance=? AND export_id<>?"
                    f" AND status IN ({marks})"
                ),
                (job.instance, job.export_id, *statuses),
            )
            if cur.fetchone()[0] >= limit:
                return False
            self._upsert(cur, self._stamped(job, now))
        return True

    def update_job(self, export_id: str, /, **changes: Any) -> bool:
        """Change some columns of a job (updated_at becomes now unless given); False if it is unknown."""
        unknown = set(changes) - set(JOB_COLUMNS)
        if unknown:
            raise ValueError(f"update_job: unknown columns {sorted(unknown)}; expected some of {JOB_COLUMNS}")
        with self._tx() as (cur, now):
            changes.setdefault("updated_at", now)
            assignments = ", ".join(f"{c}=?" for c in changes)
            cur.execute(
                self._sql(f"UPDATE {{p}}jobs SET {assignments} WHERE export_id=?"),
                (*changes.values(), export_id),
            )
            return bool(cur.rowcount)

    def get_job(self, export_id: str) -> JobRecord | None:
        rows = self._select_jobs("export_id=?", (export_id,))
        return rows[0] if rows else None

    def find_jobs(
        self,
        instance: str,
        *,
        api_user: str | None = None,
        request_key: str | None = None,
        statuses: Collection[str] | None = None,
        updated_before: float | None = None,
    ) -> list[JobRecord]:
        """Matching jobs, newest first."""
        where, params = ["instance=?"], [instance]
        for column, value in (("api_user", api_user), ("request_key", request_key)):
            if value is not None:
                where.append(f"{column}=?")
                params.append(value)
        if statuses is not None:
            if not statuses:
                return []
            where.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params.extend(sorted(statuses))
        if updated_before is not None:
            where.append("updated_at < ?")
            params.append(updated_before)
        return self._select_jobs(" AND ".join(where), tuple(params))

    def _select_jobs(self, where: str, params: Sequence[Any]) -> list[JobRecord]:
        with self._tx() as (cur, _):
            cur.execute(
                self._sql(
                    f"SELECT {', '.join(JOB_COLUMNS)} FROM {{p}}jobs WHERE {where} ORDER BY created_at DESC"
                ),
                tuple(params),
            )
            rows = cur.fetchall()
        return [JobRecord(*row) for row in rows]

    def delete_job(self, export_id: str) -> None:
        with self._tx() as (cur, _):
            cur.execute(self._sql("DELETE FROM {p}jobs WHERE export_id=?"), (export_id,))

    # --- usage ---------------------------------------------------------------------------------------
    def _add_calls(self, cur: Any, instance: str, day: str, calls: int) -> None:
        cur.execute(
            self._sql(
                "INSERT INTO {p}usage (instance, day, calls) VALUES (?, ?, ?)"
                " ON CONFLICT (instance, day) DO UPDATE SET calls = {p}usage.calls + excluded.calls"
            ),
            (instance, day, calls),
        )

    def add_calls(self, instance: str, day: str, calls: int = 1) -> None:
        with self._tx() as (cur, _):
            self._add_calls(cur, instance, day, calls)

    def usage(self, instance: str, day: str) -> UsageRecord:
        with self._tx() as (cur, _):
            cur.execute(self._sql("SELECT calls FROM {p}usage WHERE instance=? AND day=?"), (instance, day))
            row = cur.fetchone()
            cur.execute(
                self._sql(
                    "SELECT coalesce(sum(file_size), 0), count(*) FROM {p}jobs"
                    " WHERE instance=? AND quota_day=? AND file_size IS NOT NULL"
                ),
                (instance, day),
            )
            export_bytes, exports = cur.fetchone()
        return UsageRecord(day, int(row[0]) if row else 0, int(export_bytes), int(exports))

    # --- quota stop ----------------------------------------------------------------------------------
    def set_quota_stop(self, instance: str, kind: str, *, reason: str, resets_at: float) -> None:
        with self._tx() as (cur, now):
            cur.execute(
                self._sql(
                    "INSERT INTO {p}quota_stops (instance, kind, reason, resets_at, recorded_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (instance, kind) DO UPDATE SET"
                    " reason=excluded.reason, resets_at=excluded.resets_at, recorded_at=excluded.recorded_at"
                ),
                (instance, kind, reason, resets_at, now),
            )

    def quota_stop(self, instance: str, kind: str) -> QuotaStop | None:
        """The recorded stop of this kind while it is in force (before `resets_at`), else None."""
        with self._tx() as (cur, now):
            cur.execute(
                self._sql(
                    "SELECT kind, reason, resets_at, recorded_at FROM {p}quota_stops"
                    " WHERE instance=? AND kind=? AND resets_at > ?"
                ),
                (instance, kind, now),
            )
            row = cur.fetchone()
        return QuotaStop(*row) if row else None

    def clear_quota_stop(self, instance: str, kind: str) -> None:
        with self._tx() as (cur, _):
            cur.execute(self._sql("DELETE FROM {p}quota_stops WHERE instance=? AND kind=?"), (instance, kind))

    def run_due(self, name: str, interval_s: float) -> bool:
        """True for exactly one caller per `interval_s` across all processes (e.g. a periodic sweep)."""
        with self._tx(exclusive=f"meta:{name}") as (cur, now):
            cur.execute(self._sql("SELECT value FROM {p}meta WHERE name=?"), (f"due:{name}",))
            row = cur.fetchone()
            if row is not None and float(row[0]) > now - interval_s:
                return False
            cur.execute(
                self._sql(
                    "INSERT INTO {p}meta (name, value) VALUES (?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET value=excluded.value"
                ),
                (f"due:{name}", repr(now)),
            )
        return True
