"""The project's Dagster conventions, in one place: groups, owners, pools, retries, the asset naming rule,
what every Marketo-calling step records, and how a step fails on purpose.

Naming rule: an asset's key is the name of the lake table it writes. Tables named `marketo_*` hold
Marketo's records as fetched (typed, nothing else); every other table is computed by Molequle. The
group says where a step's data comes from: `marketo` steps call Marketo's API, `molequle` and
`unification` steps only read the lake, `actions` steps write to Marketo.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dagster as dg
import pyarrow as pa

from molequle_dagster import clock
from molequle_dagster.marketo.errors import MarketoAuthError, MarketoFatalError, QuotaExhausted
from molequle_dagster.marketo.timeutil import format_marketo_datetime as iso
from molequle_dagster.marketo.timeutil import parse_marketo_datetime as parse_iso
from molequle_dagster.run_failures import mark_run_not_retried

OWNERS = ["team:data-engineering"]
MARKETO_GROUP = "marketo"
MOLEQULE_GROUP = "molequle"
UNIFIED_GROUP = "unification"
ACTIONS_GROUP = "actions"
MARKETO_POOL = "marketo_api"  # dagster.yaml sizes it so at most 2 Marketo-heavy steps run at once
BULK_POOL = "marketo_bulk"  # bulk-export steps: Marketo processes 2 exports at a time per instance

# The client already retries each call; a step retry covers what outlives those retries (a bulk job that
# failed twice, a stuck job, a dropped download). Failures on purpose are raised with allow_retries=False.
MARKETO_RETRY = dg.RetryPolicy(
    max_retries=2, delay=60, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)

# Freshness promise: what Molequle shows is never older than this (the data, not the run).
PROMISE_MINUTES = 30
SYNCED_AT = "_synced_at"


def marketo_step(pool: str = MARKETO_POOL) -> dict[str, Any]:
    """What every asset whose step calls Marketo shares."""
    return {
        "group_name": MARKETO_GROUP,
        "kinds": {"marketo", "parquet"},
        "owners": OWNERS,
        "pool": pool,
        "retry_policy": MARKETO_RETRY,
    }


def computed_step(group: str = MOLEQULE_GROUP) -> dict[str, Any]:
    """What every asset computed from the lake shares."""
    return {"group_name": group, "kinds": {"parquet", "pyarrow"}, "owners": OWNERS}


# A run that takes over from one that died (`molequle sync` after a kill -9) carries the dead run's scope.
REUSE_SCOPE_TAG = "molequle/reuse_scope"


def run_scope(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> str:
    """The Dagster run a step belongs to, across retries and re-executions (they share the root run):
    the client reuses a bulk export within it, so a retry never pays twice."""
    run = context.run
    return run.tags.get(REUSE_SCOPE_TAG) or run.root_run_id or run.run_id



# --- metadata -------------------------------------------------------------------------------------------
COMMON_COLUMNS = {"_synced_at": "when Molequle read this version of the row from Marketo"}


def column_schema(schema: pa.Schema, descriptions: Mapping[str, str] | None = None) -> dg.TableSchema:
    """A Dagster column schema (shown in the UI) from an Arrow schema, with column descriptions."""
    notes = {**COMMON_COLUMNS, **(descriptions or {})}
    return dg.TableSchema(
        columns=[dg.TableColumn(name=f.name, type=str(f.type), description=notes.get(f.name)) for f in schema]
    )


def schema_metadata(schema: pa.Schema, descriptions: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {"dagster/column_schema": column_schema(schema, descriptions)}


HIGH_WATER_MARK = "data_complete_through"  # materialization metadata: the table holds every change to here


def oldest_mark(*marks: datetime | str | None) -> datetime | None:
    """The oldest of several high-water marks (datetimes or ISO strings): a table folded from several
    feeds is complete only as far as its least complete one; None while any of them has no mark."""
    parsed = [parse_iso(m) if isinstance(m, str) else m for m in marks]
    if not parsed or any(m is None for m in parsed):
        return None
    return min(m for m in parsed if m is not None)


def data_age_metadata(complete_through: datetime | None, now: datetime | None = None) -> dict[str, Any]:
    """The Marketo time up to which a table is complete, and how old that is: numeric, so the UI plots
    data age over time (and `marketo_data_freshness_sensor` reads the mark back)."""
    if complete_through is None:
        return {"data_age_s": dg.MetadataValue.float(float("nan"))}
    age = ((now or clock.now()) - complete_through).total_seconds()
    return {
        HIGH_WATER_MARK: dg.MetadataValue.timestamp(complete_through),
        "data_age_s": dg.MetadataValue.float(round(max(age, 0.0), 1)),
    }


def _fresh_outcome(complete_through: datetime | None, now: datetime) -> dict[str, Any]:
    if complete_through is None:
        return {
            "passed": False,
            "description": "no high-water mark recorded yet: the first sync has not completed this table",
            "metadata": {"promise_min": PROMISE_MINUTES},
        }
    age_min = (now - complete_through).total_seconds() / 60
    return {
        "passed": age_min <= PROMISE_MINUTES,
        "description": None
        if age_min <= PROMISE_MINUTES
        else f"the data is {age_min:.0f} minutes old (complete through {iso(complete_through)}); "
        f"Molequle promises at most {PROMISE_MINUTES}: look at the tick schedule's history",
        "metadata": {
            "data_age_min": round(age_min, 1),
            "promise_min": PROMISE_MINUTES,
            HIGH_WATER_MARK: dg.MetadataValue.timestamp(complete_through),
        },
    }


def data_fresh_check(
    complete_through: datetime | None, now: datetime | None = None, asset_key: str | None = None
) -> dg.AssetCheckResult:
    """Fails when the data (not the run) is older than the promise; says why when it cannot tell."""
    return dg.AssetCheckResult(
        check_name="data_fresh", asset_key=asset_key, **_fresh_outcome(complete_through, now or clock.now())
    )


def data_fresh_evaluation(
    asset_key: str, complete_through: datetime | None, now: datetime
) -> dg.AssetCheckEvaluation:
    """The same outcome as `data_fresh_check`, reported outside a run (by the freshness sensor)."""
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(asset_key), check_name="data_fresh", **_fresh_outcome(complete_through, now)
    )


def data_fresh_spec(asset: str, note: str = "") -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        "data_fresh",
        asset=asset,
        description=f"The table's data is complete to within {PROMISE_MINUTES} minutes of Marketo's "
        "(its high-water mark, not the time of the last run). Re-evaluated every few minutes by "
        f"marketo_data_freshness_sensor, so stale data shows even when no run happens.{note}",
    )


# --- accounting and failures ------------------------------------------------------------------------------
@dataclass
class StepAccounting:
    """API calls by endpoint, export ids and bytes spent by one step, for its metadata."""

    started: float = field(default_factory=time.monotonic)
    calls: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    downloaded_bytes: int = 0
    export_bytes: int = 0  # fileSize of the exports this step created: what Marketo meters
    exports_created: list[str] = field(default_factory=list)
    exports_reused: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        return {
            "api_calls": dg.MetadataValue.int(sum(self.calls.values())),
            "api_calls_by_endpoint": dg.MetadataValue.json(dict(sorted(self.calls.items()))),
            "marketo_errors": dg.MetadataValue.json(dict(sorted(self.errors.items()))),
            "exports_created": dg.MetadataValue.int(len(self.exports_created)),
            "export_ids": dg.MetadataValue.json(self.exports_created + self.exports_reused),
            "export_bytes": dg.MetadataValue.int(self.export_bytes),
            "downloaded_bytes": dg.MetadataValue.int(self.downloaded_bytes),
            "duration_s": dg.MetadataValue.float(round(time.monotonic() - self.started, 3)),
        }


STEP_TOTALS_TAG = "molequle/spent"


def report_partitions(
    context: dg.AssetExecutionContext, keys: Sequence[str], outcome: Any, now: datetime
) -> None:
    """Each day partition's own figures (its file's rows, the rows this run added, how far it is
    complete), never the run's totals: those go on the run (`record_step_totals`)."""
    for key in keys:
        context.add_asset_metadata(day_metadata(outcome, key, now), partition_key=key)


def day_metadata(outcome: Any, day: str, now: datetime) -> dict[str, Any]:
    """One day partition's figures from a `sync.day_files.DayOutcome`."""
    covered = outcome.covered_until.get(day)
    return {
        "dagster/row_count": outcome.rows_by_day.get(day, 0),
        "new_rows": outcome.new_rows_by_day.get(day, 0),
        **data_age_metadata(parse_iso(covered) if covered else None, now),
    }


def record_step_totals(context: dg.AssetExecutionContext, totals: Mapping[str, Any]) -> None:
    """A partitioned step's run-level figures (calls, exports, bytes, windows) go on the run, as one tag per
    step, so each partition's materialization carries only its own figures."""
    plain = {k: (v.value if isinstance(v, dg.MetadataValue) else v) for k, v in totals.items()}
    context.instance.add_run_tags(
        context.run.run_id,
        {
            f"{STEP_TOTALS_TAG}/{context.op_execution_context.node_handle.name}": json.dumps(
                plain, default=str
            )
        },
    )


def step_totals(run: Any) -> dict[str, dict[str, Any]]:
    """The figures `record_step_totals` left on a run, by step."""
    prefix = f"{STEP_TOTALS_TAG}/"
    return {k.removeprefix(prefix): json.loads(v) for k, v in run.tags.items() if k.startswith(prefix)}


def fail_on_purpose(
    context: dg.AssetExecutionContext | dg.OpExecutionContext | None,
    description: str,
    metadata: Mapping[str, Any] | None = None,
) -> dg.Failure:
    """A failure that neither the step's retry policy nor the run-retry daemon should retry: the same
    request would fail the same way (quota, credentials, a request Marketo refuses, bad config)."""
    mark_run_not_retried(context)
    return dg.Failure(description=description, metadata=dict(metadata or {}), allow_retries=False)


@contextmanager
def accounting(
    client: Any, context: dg.AssetExecutionContext | dg.OpExecutionContext | None = None
) -> Iterator[StepAccounting]:
    """Measure what the block spent through `client` (its counters are cumulative per process).

    A used-up daily quota (607 calls, 1029 export bytes) fails the step on purpose: retrying before
    midnight Central only burns more of the customer's quota (the client has recorded the stop in the
    coordination store, so the automation pauses until the reset). Auth and fatal errors fail on purpose
    too; transient ones propagate as they are, for the step's retry policy.
    """
    result = StepAccounting()
    try:
        with client.stats.measure() as delta:
            yield result
    except QuotaExhausted as error:
        raise fail_on_purpose(
            context,
            f"{error} — paused until the reset; the automation resumes by itself",
            {"resets_at": error.resets_at.isoformat(), "marketo_code": error.code or ""},
        ) from error
    except (MarketoAuthError, MarketoFatalError) as error:
        raise fail_on_purpose(context, str(error), {"marketo_code": error.code or ""}) from error
    result.calls = delta["calls"]
    result.errors = delta["errors"]
    result.downloaded_bytes = delta["bulk_bytes"]
    result.exports_created = delta["exports_created"]
    result.exports_reused = delta["exports_reused"]
