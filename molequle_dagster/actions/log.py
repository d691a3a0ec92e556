"""The `action_log` lake table and what it tells a later attempt under the same idempotency key."""

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.arrow_ops import or_empty
from molequle_dagster.lake import Lake
from molequle_dagster.marketo.errors import (
    MalformedResponseError,
    MarketoError,
    MarketoTransientError,
)
from molequle_dagster.settings import ActionSettings

ACTION_LOG_TABLE = "action_log"

# Statuses in the action log. `sending` is written before the call, so a crash mid-call leaves it behind.
SENDING, SUCCEEDED, FAILED, UNCERTAIN = "sending", "succeeded", "failed", "uncertain"

ACTION_LOG_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("idempotency_key", pa.string()),
        ("action", pa.string()),
        ("kind", pa.string()),
        ("campaign_id", pa.int64()),
        ("batch_index", pa.int32()),
        ("lead_ids", pa.list_(pa.int64())),
        ("status", pa.string()),
        ("code", pa.string()),
        ("message", pa.string()),
        ("fingerprint", pa.string()),
        ("at", pa.timestamp("s", tz="UTC")),
    ]
)


@dataclass(frozen=True)
class LogEntry:
    run_id: str
    batch_index: int
    lead_ids: tuple[int, ...]
    status: str
    fingerprint: str


class ActionLog:
    """The `action_log` lake table: one row per batch event (sending, then succeeded/failed/uncertain).

    An append-only lake log: every event is its own part file, so concurrent action runs never lose each
    other's rows; many small parts are compacted now and then.
    """

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def read(self) -> pa.Table:
        self.lake.log(ACTION_LOG_TABLE).compact()
        return or_empty(self.lake.log(ACTION_LOG_TABLE).read(), ACTION_LOG_SCHEMA)

    def entries(self, key: str, action: str) -> list[LogEntry]:
        table = self.read()
        mine = table.filter(
            pc.and_(pc.equal(table["idempotency_key"], key), pc.equal(table["action"], action))
        )
        return [
            LogEntry(r["run_id"], r["batch_index"], tuple(r["lead_ids"] or ()), r["status"], r["fingerprint"])
            for r in mine.select(["run_id", "batch_index", "lead_ids", "status", "fingerprint"]).to_pylist()
        ]

    def append(self, row: dict[str, Any]) -> None:
        self.lake.log(ACTION_LOG_TABLE).append(pa.Table.from_pylist([row], schema=ACTION_LOG_SCHEMA))


@dataclass(frozen=True)
class Progress:
    """What earlier attempts under one key achieved."""

    done: frozenset[int]
    uncertain: frozenset[int]
    fingerprints: frozenset[str]
    scheduled: bool  # a schedule action already succeeded
    schedule_uncertain: bool


def progress(entries: Iterable[LogEntry]) -> Progress:
    last: dict[tuple[str, int], LogEntry] = {}
    for entry in entries:  # rows are in write order: the last per batch is its outcome
        last[(entry.run_id, entry.batch_index)] = entry
    done = {i for e in last.values() if e.status == SUCCEEDED for i in e.lead_ids}
    open_ = [e for e in last.values() if e.status in (SENDING, UNCERTAIN)]
    uncertain = {i for e in open_ for i in e.lead_ids} - done
    return Progress(
        done=frozenset(done),
        uncertain=frozenset(uncertain),
        fingerprints=frozenset(e.fingerprint for e in last.values() if e.status != FAILED),
        scheduled=any(e.status == SUCCEEDED and not e.lead_ids for e in last.values()),
        schedule_uncertain=any(not e.lead_ids for e in open_),
    )


def outcome_of(error: MarketoError) -> str:
    """`uncertain` when Marketo may have acted on the request (network error or unreadable answer after
    sending); `failed` when Marketo answered with an error, so nothing ran."""
    if isinstance(error, MalformedResponseError) or (
        isinstance(error, MarketoTransientError) and error.code is None
    ):
        return UNCERTAIN
    return FAILED


def fingerprint(
    action: ActionSettings, campaign_id: int, tokens: Mapping[str, str], run_at: datetime | None
) -> str:
    """What a request means; reusing an idempotency key for a different request is refused."""
    payload = json.dumps(
        {
            "action": action.name,
            "campaign": campaign_id,
            "tokens": dict(sorted(tokens.items())),
            "run_at": run_at.isoformat() if run_at else None,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
