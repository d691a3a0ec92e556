"""Shared pieces of the sync assets: asset conventions, run accounting for metadata, Arrow helpers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.lake import Lake
from molequle_dagster.marketo.errors import MarketoAuthError, MarketoFatalError, QuotaExhausted
from molequle_dagster.run_failures import mark_run_not_retried

OWNERS = ["team:data-engineering"]
MARKETO_GROUP = "marketo"  # what Marketo holds, as fetched (raw, partitioned by day where it has time)
MOLEQULE_GROUP = "molequle"  # current-state tables that Molequle reads
UNIFIED_GROUP = "unification"
ACTIONS_GROUP = "actions"
MARKETO_POOL = "marketo_api"  # dagster.yaml sizes it so at most 2 Marketo-heavy steps run at once
BULK_POOL = "marketo_bulk"  # at most 2 bulk exports at once across all runs (Marketo processes 2)

# The client already retries each call; a step retry covers what outlives those retries (a bulk job that
# failed twice, a stuck job, a dropped download). Quota stops are raised with allow_retries=False.
MARKETO_RETRY = dg.RetryPolicy(
    max_retries=2, delay=60, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)

SYNCED_AT = "_synced_at"


def fetched_from_marketo(pool: str) -> dict[str, Any]:
    """What every asset that calls Marketo shares: its group, kinds, owners, pool and retry policy."""
    return {
        "group_name": MARKETO_GROUP,
        "kinds": {"marketo", "parquet"},
        "owners": OWNERS,
        "pool": pool,
        "retry_policy": MARKETO_RETRY,
    }  # when a row was fetched: rows reflect Marketo's state at that moment


def run_scope(context: dg.AssetExecutionContext) -> str:
    """The Dagster run a step belongs to, across retries and re-executions (they share the root run):
    the client reuses a bulk export only within it, so a retry never pays twice and a later sync never
    gets an old export."""
    run = context.run
    return run.root_run_id or run.run_id


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    """A Dagster column schema (shown in the UI) from an Arrow schema."""
    return dg.TableSchema(columns=[dg.TableColumn(name=f.name, type=str(f.type)) for f in schema])


def schema_metadata(schema: pa.Schema) -> dict[str, Any]:
    return {"dagster/column_schema": column_schema(schema)}


@dataclass
class RunAccounting:
    """API calls by endpoint, bulk bytes and export ids spent by one asset step, for its metadata."""

    started: float = field(default_factory=time.monotonic)
    calls: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    bulk_bytes: int = 0
    exports_created: list[str] = field(default_factory=list)
    exports_reused: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        return {
            "api_calls": dg.MetadataValue.int(sum(self.calls.values())),
            "api_calls_by_endpoint": dg.MetadataValue.json(dict(sorted(self.calls.items()))),
            "marketo_errors": dg.MetadataValue.json(dict(sorted(self.errors.items()))),
            "bulk_bytes": dg.MetadataValue.int(self.bulk_bytes),
            "exports_created": dg.MetadataValue.json(self.exports_created),
            "exports_reused": dg.MetadataValue.json(self.exports_reused),
            "duration_s": dg.MetadataValue.float(round(time.monotonic() - self.started, 3)),
        }


@contextmanager
def accounting(client: Any, lake: Lake | None = None) -> Iterator[RunAccounting]:
    """Measure what the block spent through `client` (its counters are cumulative per process).

    A used-up daily quota (607 calls, 1029 export bytes) is recorded in the lake so the schedules pause
    until Marketo resets it, and fails the step without retries: retrying before midnight Central only
    burns more of the customer's quota. Auth and fatal errors fail without retries too; transient ones
    propagate as they are, for the step's retry policy.
    """
    result = RunAccounting()
    try:
        with client.stats.measure() as delta:
            yield result
    except QuotaExhausted as error:
        if lake is not None:
            record_quota_stop(lake, error)
        mark_run_not_retried()
        raise dg.Failure(
            description=str(error),
            metadata={"resets_at": error.resets_at.isoformat(), "marketo_code": error.code or ""},
            allow_retries=False,
        ) from error
    except (MarketoAuthError, MarketoFatalError) as error:
        # Bad credentials or a request Marketo refuses: a step retry would fail the same way.
        mark_run_not_retried()
        raise dg.Failure(
            description=str(error), metadata={"marketo_code": error.code or ""}, allow_retries=False
        ) from error
    result.calls = delta["calls"]
    result.errors = delta["errors"]
    result.bulk_bytes = delta["bulk_bytes"]
    result.exports_created = delta["exports_created"]
    result.exports_reused = delta["exports_reused"]


QUOTA_STATE = "marketo_quota"


def record_quota_stop(lake: Lake, error: QuotaExhausted) -> None:
    lake.write_state(
        QUOTA_STATE,
        {"reason": str(error), "resets_at": error.resets_at.isoformat(), "recorded_at": utcnow().isoformat()},
    )


def quota_paused_until(lake: Lake, now: datetime) -> tuple[datetime, str] | None:
    """(reset time, reason) while a recorded quota stop is still in force, else None."""
    state = lake.read_state(QUOTA_STATE)
    if not state.get("resets_at"):
        return None
    resets_at = datetime.fromisoformat(state["resets_at"])
    return (resets_at, state.get("reason", "")) if now < resets_at else None


def dedupe_latest(table: pa.Table, key: str, order_by: str = SYNCED_AT) -> pa.Table:
    """Keep one row per `key`: the one with the greatest `order_by` (last occurrence on ties)."""
    if table.num_rows == 0:
        return table
    indices = pa.array(range(table.num_rows), pa.int64())
    ranked = table.append_column("__row", indices)
    ranked = ranked.sort_by([(key, "ascending"), (order_by, "ascending"), ("__row", "ascending")])
    keys = ranked.column(key).combine_chunks()
    # the last row of each key run wins
    is_last = pc.not_equal(keys[:-1], keys[1:]) if len(keys) > 1 else pa.array([], pa.bool_())
    mask = pa.concat_arrays([is_last.fill_null(True), pa.array([True])])
    return ranked.filter(mask).drop_columns(["__row"])


def stamp(table: pa.Table, synced_at: datetime) -> pa.Table:
    seconds = np.full(table.num_rows, int(synced_at.timestamp()), dtype="datetime64[s]")
    column = pa.array(seconds, pa.timestamp("s")).cast(pa.timestamp("s", tz="UTC"))
    if SYNCED_AT in table.column_names:
        table = table.drop_columns([SYNCED_AT])
    return table.append_column(SYNCED_AT, column)


def or_empty(table: pa.Table | None, schema: pa.Schema) -> pa.Table:
    return table if table is not None else schema.empty_table()
