"""Activities: Marketo's activity types, the activities themselves by day, and Molequle's reconciled view.

* `marketo_activity_types` — the instance's types (types.json), re-read at most once a day (Marketo's
  advice); configured types the instance lacks (Interesting Moment on some) are reported, not fatal.
* `marketo_activities` — one file per day of the configured types plus the two the sync needs for
  people and memberships (Merge Leads 32, Change Status in Progression 104). A tick reads what is new
  since the day's cursor through the REST feed; the daily close, backfills and the first sync export
  whole days in bulk (all types in one job per ≤ 31-day window, never one job per type).
* `activities` — what Molequle reads: the configured types, with Marketo's deletions and merges applied
  the way Marketo applies them to its own history (deleted leads' activities vanish, merged-away leads'
  move to the winner). Applied on read (`views.read_activities`), so a deletion costs no rewrite; the
  days holding many affected rows are compacted physically by the daily job.
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster import clock
from molequle_dagster.arrow_ops import SYNCED_AT, TS, stamp
from molequle_dagster.budget import Budget, budget_of
from molequle_dagster.conventions import (
    BULK_POOL,
    accounting,
    computed_step,
    data_age_metadata,
    data_fresh_check,
    data_fresh_spec,
    day_metadata,
    marketo_step,
    oldest_mark,
    parse_iso,
    record_step_totals,
    report_partitions,
    run_scope,
    schema_metadata,
)
from molequle_dagster.lake import Lake
from molequle_dagster.marketo.errors import QuotaExhausted
from molequle_dagster.resources import LakeResource, MarketoResource, SettingsResource
from molequle_dagster.settings import KNOWN_ACTIVITY_TYPES, MolequleSettings
from molequle_dagster.sync import overlay
from molequle_dagster.sync.activity_rows import (
    ACTIVITY_COLUMNS,
    ACTIVITY_CSV_SCHEMA,
    ACTIVITY_SCHEMA,
    with_groups,
)
from molequle_dagster.sync.day_files import (
    DayOutcome,
    covered_cursors,
    day_end,
    day_of_column,
    day_start,
    merge_into_days,
    replace_days,
)
from molequle_dagster.sync.plan import (
    MAX_PLANNED_WINDOWS,
    OVERPLAN,
    HistoryAdmission,
    budget_window_days,
    days_that_fit,
    export_sizes,
    leading_priority_days,
    pause_history,
    record_export_sizes,
    windows_around,
)
from molequle_dagster.sync.run_kind import HISTORY, reads_rest, run_kind
from molequle_dagster.sync.windows import (
    ReadReport,
    bulk_results,
    day_windows,
    paid_windows,
    read_activities,
    window_requests,
)

ACTIVITY_TYPES_TABLE = "marketo_activity_types"
MARKETO_ACTIVITIES = "marketo_activities"
ACTIVITIES = "activities"
MERGE_LEADS, CHANGE_STATUS = 32, 104
# Read with the configured types: merges feed `person_merges`, program status changes feed `memberships`.
LIFECYCLE_TYPES = (MERGE_LEADS, CHANGE_STATUS)
TYPES_CACHE_TTL = timedelta(days=1)
by_activity_day = day_of_column("activityDate")  # Marketo's advice: cache activity types for at least a day

ACTIVITY_TYPES_SCHEMA = pa.schema(
    [("id", pa.int32()), ("name", pa.string()), ("description", pa.string()), (SYNCED_AT, TS)]
)
_KNOWN_GROUPS = {t.id: t.group for t in KNOWN_ACTIVITY_TYPES}


# --- activity types ------------------------------------------------------------------------------------
def fetch_activity_types(client: Any, lake: Lake) -> pa.Table:
    rows = client.activity_types()
    table = stamp(
        pa.table(
            {
                "id": pa.array([int(r["id"]) for r in rows], pa.int32()),
                "name": [r.get("name") for r in rows],
                "description": [r.get("description") for r in rows],
            }
        ),
        clock.now(),
    )
    lake.keyed(ACTIVITY_TYPES_TABLE, "id").rebuild(table, meta={"fetched_at": clock.now().isoformat()})
    return table


def activity_types(client: Any, lake: Lake, context: Any = None) -> pa.Table:
    """The cached types, re-read when older than a day; a step that re-reads them reports the
    materialization of `marketo_activity_types`, so the UI never shows that table as unmaterialized."""
    keyed = lake.keyed(ACTIVITY_TYPES_TABLE, "id")
    fetched_at = keyed.meta.get("fetched_at")
    if fetched_at and clock.now() - parse_iso(fetched_at) < TYPES_CACHE_TTL:
        return keyed.read()
    table = fetch_activity_types(client, lake)
    if context is not None:
        context.log_event(
            dg.AssetMaterialization(ACTIVITY_TYPES_TABLE, metadata={"dagster/row_count": table.num_rows})
        )
    return table


def missing_types(settings: MolequleSettings, types: pa.Table) -> list[str]:
    available = set(types["id"].to_pylist())
    return [t.name for t in settings.activities.types if t.type_id not in available]


def synced_type_groups(settings: MolequleSettings, types: pa.Table) -> dict[int, str]:
    """Type id → group for every type `marketo_activities` holds (configured ones, and the lifecycle
    types the sync needs), limited to the types the instance has."""
    available = set(types["id"].to_pylist())
    groups = {t: _KNOWN_GROUPS[t] for t in LIFECYCLE_TYPES}
    groups |= settings.activities.group_of()
    return {t: g for t, g in groups.items() if t in available}


@dg.asset(
    name=ACTIVITY_TYPES_TABLE,
    **marketo_step(),
    metadata=schema_metadata(
        ACTIVITY_TYPES_SCHEMA, {"id": "Marketo activity type id", "name": "Marketo's name of the type"}
    ),
)
def marketo_activity_types(
    context: dg.AssetExecutionContext,
    marketo: MarketoResource,
    lake: LakeResource,
    settings: SettingsResource,
) -> dg.MaterializeResult:
    """The instance's activity types (types.json), and which configured types it lacks. Ticks use the copy
    read in the last day (Marketo's advice); any other run reads them again."""
    from molequle_dagster.sync.run_kind import TICK, run_kind

    with accounting(marketo.client, context) as spent:
        if run_kind(context) == TICK:
            table = activity_types(marketo.client, lake.lake)
        else:
            table = fetch_activity_types(marketo.client, lake.lake)
    missing = missing_types(settings.settings, table)
    for name in missing:
        context.log.warning(f"Activity type {name!r} is configured but this Marketo instance lacks it")
    return dg.MaterializeResult(
        metadata={"dagster/row_count": table.num_rows, "missing_types": missing, **spent.metadata()}
    )


# --- what the history is missing, said out loud ---------------------------------------------------
SYNCED_TYPES = "_synced_activity_types"


def types_added_since_history(lake: Lake, type_ids: list[int], now: datetime) -> dict[int, str]:
    """Types exported now that earlier syncs did not export (added to the settings, or new on the
    instance), with the day they started: older days lack them until a backfill, and we say so."""
    table = lake.keyed(SYNCED_TYPES, "type_id")
    first_seen = {int(k): v for k, v in table.meta.get("first_seen", {}).items()}
    if not first_seen:  # the first sync defines the baseline
        table.commit(meta={"first_seen": {str(t): "" for t in type_ids}})
        return {}
    new = {t: now.date().isoformat() for t in type_ids if t not in first_seen}
    if new:
        table.commit(meta={"first_seen": {str(k): v for k, v in {**first_seen, **new}.items()}})
    return {t: since for t, since in {**first_seen, **new}.items() if since and t in type_ids}


def retention_notes(settings: MolequleSettings, now: datetime, keys: list[str]) -> dict[str, Any]:
    """Which types Marketo no longer keeps for (part of) the requested history: visible, not silent."""
    notes, truncated = [], {}
    for activity_type in settings.activities.types:
        if activity_type.retention >= settings.sync.history_days:
            continue
        since = (now - timedelta(days=activity_type.retention)).date().isoformat()
        notes.append(
            f"{activity_type.name} available since {since} (Marketo keeps {activity_type.retention} days)"
        )
        if keys and keys[0] < since:
            truncated[activity_type.name] = since
    return {"notes": notes, "types_truncated_in_this_run": truncated}


# --- activities by day -----------------------------------------------------------------------------------
def _filter_id(type_ids: list[int]) -> str:
    return json.dumps({"activityTypeIds": sorted(type_ids)})


@dataclass
class HistoryOutcome:
    """What a budgeted bulk run (history, backfills) did beyond its rows: the days it left for later."""

    planned: list[str] = field(default_factory=list)  # days this run meant to export, newest first
    deferred: list[str] = field(default_factory=list)  # days of its range left for after the reset
    paused_until: datetime | None = None  # Marketo's quota stopped it
    pause_reason: str = ""


def sync_activity_days(
    context: Any,
    client: Any,
    lake: Lake,
    settings: MolequleSettings,
    keys: list[str],
    *,
    budget: Budget | None = None,
    landed: Callable[[list[str], DayOutcome], None] | None = None,
    history: HistoryOutcome | None = None,
) -> tuple[DayOutcome, ReadReport, dict[str, Any]]:
    """Bring the days `keys` up to date: REST since the cursors on a tick, whole days in bulk otherwise.

    In bulk, with a `budget` (history and backfills), only the newest days today's history share pays
    for are exported and the rest is left in `history.deferred`; Marketo's quota stopping the run ends it
    early the same way. `landed(days, outcome)` is told each window's days as they are published."""
    now = clock.now()
    types = activity_types(client, lake, context)
    groups = synced_type_groups(settings, types)
    type_ids = sorted(groups)
    filter_id = _filter_id(type_ids)
    days = lake.days(MARKETO_ACTIVITIES)
    report, outcome = ReadReport(), DayOutcome()
    info: dict[str, Any] = {"missing_types": missing_types(settings, types), "type_ids": type_ids}
    open_days = [k for k in keys if day_start(k) <= now]
    if not open_days:
        return outcome, report, info
    if reads_rest(context, keys, now):
        windows = day_windows(
            open_days,
            covered_cursors(days, open_days, filter_id),
            now,
            timedelta(minutes=settings.sync.late_minutes),
        )
        if windows:
            start, end = min(w[1] for w in windows), max(w[2] for w in windows)
            tables = read_activities(
                client,
                type_ids,
                start,
                end,
                rest_pages=settings.sync.rest_pages,
                now=now,
                window_days=settings.marketo.bulk.window_days,
                reuse_scope=run_scope(context),
                report=report,
            )
            delta = _stamped(tables, groups)
            merge_into_days(
                days,
                delta,
                by_activity_day,
                "marketoGUID",
                ACTIVITY_SCHEMA,
                {d: min(day_end(d), end) for d, _, end in windows},
                filter_id,
                outcome,
                immutable=True,  # an activity never changes: one read again is the same record
            )
        return outcome, report, info
    # Whole days in bulk, newest window first; each window's days are published as its export completes.
    history = history if history is not None else HistoryOutcome()
    wanted = list(reversed(open_days))
    allowed = budget.bytes_available("history") if budget is not None else None
    # The onboarding plan's history runs go as far back as today's share pays for, priced at history's
    # frontier; a backfill launched from the UI exports the days it was asked for (Marketo's quota and
    # the admission still hold it), priced at every export's average.
    onboarding = run_kind(context) == HISTORY
    sizes = export_sizes(lake)
    estimate, overplan = sizes.history_price if onboarding else (sizes.bytes_per_day, OVERPLAN)
    # The last week never waits for the history share (only Marketo's quota stops it).
    priority = leading_priority_days(wanted, now.date().isoformat())
    if budget is not None and allowed is not None and estimate is None:
        # Cost unknown: a small first run measures it (windows are cut from the days asked for).
        fit = max(OVERPLAN * days_that_fit(allowed, None, budget.history_bytes_per_day), priority)
        wanted, history.deferred = wanted[:fit], wanted[fit:]
    window_days = settings.marketo.bulk.window_days
    if allowed is not None and onboarding:
        window_days = budget_window_days(allowed, estimate, window_days, overplan)
        if window_days < settings.marketo.bulk.window_days:  # no longer list every window of two years
            fit = max(MAX_PLANNED_WINDOWS * window_days, priority)
            wanted, history.deferred = wanted[:fit], wanted[fit:] + history.deferred
    history.planned = list(wanted)
    # Windows an export already paid for (one that completed while a quota stop ended its run) are kept
    # as they were, so their requests match and reuse them.
    paid = paid_windows(client.reusable_export_requests("activities"), type_ids) if onboarding else []
    windows = windows_around(wanted, window_days, paid)
    requests = window_requests(windows, type_ids, now)
    # With a budget, each next window starts only while what the run measured says it still fits.
    admit = (
        HistoryAdmission(windows, allowed, estimate, priority, budget.history_bytes_per_day, overplan)
        if allowed is not None and budget is not None
        else None
    )
    report.windows.extend(
        (r["filter"]["createdAt"]["startAt"], r["filter"]["createdAt"]["endAt"]) for r in requests
    )
    scope = run_scope(context)
    published: set[str] = set()
    sized_bytes, sized_seconds, seen_bytes = 0, 0.0, 0
    sized_days: set[str] = set()  # the days those new exports covered
    try:
        for index, stream in bulk_results(
            client, "activities", requests, report, now, ACTIVITY_CSV_SCHEMA, scope, admit
        ):
            covered = {d: min(day_end(d), now) for d in windows[index]}
            replace_days(
                days,
                (_stamped([s], groups) for s in stream),
                by_activity_day,
                ACTIVITY_SCHEMA,
                covered,
                filter_id,
                outcome,
            )
            published.update(covered)
            new: tuple[int, float] | None = None
            if report.export_bytes > seen_bytes:  # a new export (a reused one cost nothing): its size
                seconds = sum((until - day_start(d)).total_seconds() for d, until in covered.items())
                new = (report.export_bytes - seen_bytes, seconds)
                sized_bytes, sized_seconds = sized_bytes + new[0], sized_seconds + seconds
                sized_days.update(covered)
                seen_bytes = report.export_bytes
            if admit is not None:
                admit.landed(index, report.export_bytes, new)
            if landed is not None:
                landed(windows[index], outcome)
    except QuotaExhausted as error:
        if landed is None:
            raise
        history.paused_until, history.pause_reason = error.resets_at, str(error)
    finally:
        oldest = min(sized_days) if onboarding and sized_days else None
        record_export_sizes(lake, sized_bytes, sized_seconds, oldest_day=oldest)
    history.deferred = [d for d in history.planned if d not in published] + history.deferred
    if onboarding and admit is not None and budget is not None and not published and history.deferred:
        if history.paused_until is None:
            # Nothing fitted: without this the plan would offer the same run again at once, all day.
            history.paused_until = budget.usage.resets_at
            history.pause_reason = (
                f"today's export share for history ({allowed / 1e6:,.1f} MB left) does not cover the next "
                f"window ({len(windows[0])} days at about {(admit.bytes_per_day() or 0) / 1e6:,.1f} MB/day)"
            )
        pause_history(lake, history.paused_until, history.pause_reason)
    return outcome, report, info


def _stamped(tables: Any, groups: dict[int, str]) -> pa.Table:
    parts = [with_groups(stamp(t.table, t.as_of), groups).select(ACTIVITY_SCHEMA.names) for t in tables]
    return pa.concat_tables(parts).cast(ACTIVITY_SCHEMA) if parts else ACTIVITY_SCHEMA.empty_table()


def progressive(context: Any, keys: list[str]) -> bool:
    """History runs, and backfills launched from the UI over several days, report each window's days as
    they land and pause (not fail) on Marketo's quota; ticks, the daily close and the first sync do not
    (their downstream steps need their whole result)."""
    kind = run_kind(context)
    return kind == HISTORY or (kind is None and len(keys) > 1)


def build_marketo_activities(
    partitions: dg.PartitionsDefinition, max_days_per_run: int = 93
) -> dg.AssetsDefinition:
    """The day-partitioned activities (a factory: the partitions follow `sync.history_days`)."""

    @dg.asset(
        name=MARKETO_ACTIVITIES,
        partitions_def=partitions,
        **marketo_step(BULK_POOL),
        deps=[ACTIVITY_TYPES_TABLE],
        # Several windows per run keep Marketo's two export slots busy with fewer Dagster runs.
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=max_days_per_run),
        metadata=schema_metadata(ACTIVITY_SCHEMA, ACTIVITY_COLUMNS),
        # A budgeted run materializes the days it exported as they land, and leaves the rest missing
        # (not failed) for the onboarding sensor to continue after the quota reset.
        output_required=False,
    )
    def marketo_activities(
        context: dg.AssetExecutionContext,
        marketo: MarketoResource,
        lake: LakeResource,
        settings: SettingsResource,
    ) -> Iterator[dg.MaterializeResult]:
        """Marketo activities by day: the configured types plus Merge Leads (32) and Change Status in
        Progression (104). A tick reads the delta since each day's cursor through the REST feed (a bulk
        export past `sync.rest_pages` pages); the daily close, backfills and the first sync export whole
        days in bulk, newest window first, all types in one job per ≤ 31-day window. History runs take
        only the newest days today's export budget for history pays for; each window's days are
        materialized as they land, and days left over (budget used, or Marketo's quota) stay missing for
        the onboarding sensor to continue after the reset."""
        keys = list(context.partition_keys)
        config = settings.settings
        history = HistoryOutcome()
        with accounting(marketo.client, context) as spent:
            stepwise = progressive(context, keys)
            budget = budget_of(marketo.client, config.budget) if stepwise else None

            def landed(days: list[str], outcome: DayOutcome) -> None:
                now = clock.now()
                for day in sorted(days, reverse=True):
                    context.log_event(
                        dg.AssetMaterialization(
                            MARKETO_ACTIVITIES, partition=day, metadata=day_metadata(outcome, day, now)
                        )
                    )

            outcome, report, info = sync_activity_days(
                context,
                marketo.client,
                lake.lake,
                config,
                keys,
                budget=budget,
                landed=landed if stepwise else None,
                history=history,
            )
        spent.export_bytes = report.export_bytes
        for name in info["missing_types"]:
            context.log.warning(f"Skipping activity type {name!r}: this Marketo instance lacks it")
        now = clock.now()
        retention = retention_notes(config, now, keys)
        for note in retention["notes"]:
            context.log.info(note)
        added = types_added_since_history(lake.lake, info["type_ids"], now) if info["type_ids"] else {}
        for type_id, since in added.items():
            context.log.warning(
                f"Activity type {type_id} is synced since {since}: earlier days lack it until backfilled"
            )
        totals: dict[str, Any] = {
            "read": report.method or "nothing to read",
            "windows": report.windows,
            "run_rows": outcome.rows,
            "run_new_rows": outcome.new_rows,
            "missing_types": info["missing_types"],
            "retention": retention,
            "types_added_later": {str(k): v for k, v in added.items()},
            **spent.metadata(),
        }
        if stepwise:
            totals |= _history_totals(context, history, budget, lake.lake)
            record_step_totals(context, totals)
            return  # each landed window was materialized already; the deferred days stay missing
        report_partitions(context, keys, outcome, now)
        record_step_totals(context, totals)
        yield dg.MaterializeResult()

    return marketo_activities


PAUSED_TAG = "molequle/paused_until"


def _history_totals(
    context: Any, history: HistoryOutcome, budget: Budget | None, lake: Lake
) -> dict[str, Any]:
    """What a budgeted run did and left, said in the run's tags and log: a run Marketo's quota stopped
    ends green, says when history resumes, and leaves its other days missing rather than failed."""
    estimate = export_sizes(lake).history_per_day
    if history.paused_until is not None:
        context.instance.add_run_tags(context.run.run_id, {PAUSED_TAG: history.paused_until.isoformat()})
        context.log.warning(
            f"History paused until {history.paused_until.isoformat()} "
            f"({len(history.deferred)} days left for after the reset, continued by "
            f"marketo_onboarding_sensor): {history.pause_reason}"
        )
    elif history.deferred and budget is not None:
        context.log.info(
            f"{len(history.deferred)} days left for after the quota reset at "
            f"{budget.usage.resets_at.isoformat()}: today's export budget for history is spent"
        )
    return {
        "history_days_exported": len(history.planned)
        - len([d for d in history.deferred if d in history.planned]),
        "history_days_deferred": len(history.deferred),
        "history_paused_until": history.paused_until.isoformat() if history.paused_until else None,
        "history_bytes_per_day_estimate": round(estimate) if estimate else None,
        "history_budget_bytes_at_start": budget.bytes_available("history") if budget else None,
    }


# --- the reconciled view ------------------------------------------------------------------------------------
COMPACT_STALE_SHARE = 0.05  # a day is rewritten once this share of its rows is of deleted/merged-away leads
UNKNOWN_PERSON_THRESHOLD = 0.10  # activities come from every lead, people only from the smart list


def activities_complete_through(lake: Lake) -> Any:
    """The newest day cursor of `marketo_activities`: the Marketo time up to which activities are in."""
    days = lake.days(MARKETO_ACTIVITIES)
    for day in reversed(days.days()):
        covered = days.cursor(day).get("covered_until")
        if covered:
            return parse_iso(covered)
    return None


def compact_stale_days(lake: Lake, new_affected: pa.Array, meta: dict[str, Any]) -> dict[str, Any]:
    """Count, per day, the rows that belong to newly deleted or merged-away leads (one scan of the days'
    `leadId` column), and rewrite the days whose stale share passed `COMPACT_STALE_SHARE` with the
    deletions and merges applied. Only days holding affected ids are ever rewritten."""
    days = lake.days(MARKETO_ACTIVITIES)
    stale: dict[str, int] = dict(meta.get("stale_rows", {}))
    if len(new_affected):
        for day in days.days():
            ids = days.read(day, ["leadId"])
            hits, _ = overlay.stale_share(
                ids["leadId"] if ids is not None else pa.array([], pa.int64()), new_affected
            )
            if hits:
                stale[day] = stale.get(day, 0) + hits
    deleted, losers, winners = overlay_maps(lake)
    rewritten = []
    for day, count in sorted(stale.items()):
        rows = days.cursor(day).get("rows") or 0
        if rows and count / rows >= COMPACT_STALE_SHARE:
            table = days.read(day)
            if table is not None:
                days.write(day, overlay.apply(table, deleted, losers, winners), {**days.cursor(day)})
            rewritten.append(day)
    for day in rewritten:
        stale.pop(day, None)
    return {"stale_rows": stale, "rewritten": rewritten}


def newly_affected_leads(lake: Lake, meta: dict[str, Any]) -> tuple[pa.Array, dict[str, int]]:
    """Leads deleted or merged away since the versions in `meta` (all of them on a first run)."""
    found, cursors = [], {}
    for table, key, column in (("person_tombstones", "id", "id"), ("person_merges", "loser_id", "loser_id")):
        keyed = lake.keyed(table, key)
        seen = int(meta.get(f"{table}_version", 0))
        changes = keyed.changes_since(seen) if seen else None
        rows = changes.upserts if changes is not None else keyed.read_or_none([column])
        if rows is not None and rows.num_rows:
            found.append(rows[column].combine_chunks().cast(pa.int64()))
        cursors[f"{table}_version"] = keyed.version
    return (pa.concat_arrays(found) if found else pa.array([], pa.int64())), cursors


def overlay_maps(lake: Lake) -> tuple[pa.Array, pa.Array, pa.Array]:
    from molequle_dagster.views import lifecycle_maps

    return lifecycle_maps(lake)


@dg.asset(
    name=ACTIVITIES,
    **computed_step(),
    deps=[MARKETO_ACTIVITIES, "person_tombstones", "person_merges"],
    metadata=schema_metadata(ACTIVITY_SCHEMA, ACTIVITY_COLUMNS),
    check_specs=[
        data_fresh_spec(ACTIVITIES),
        dg.AssetCheckSpec(
            "known_people",
            asset=ACTIVITIES,
            description=f"At most {UNKNOWN_PERSON_THRESHOLD:.0%} of the newest day's activities belong to "
            "people missing from the people table (activities come from every lead, people from the smart "
            "list; above this share the people sync is probably behind).",
        ),
    ],
)
def activities(context: dg.AssetExecutionContext, lake: LakeResource, settings: SettingsResource):
    """What Molequle reads as activities: the configured types of `marketo_activities` with Marketo's
    deletions and merges applied on read (read it with `molequle_dagster.views.read_pandas("activities")`
    or `molequle_dagster.views.read_activities`). Outside ticks, days where deleted or merged-away leads'
    rows passed 5% are rewritten with them applied, so the stored files converge to Marketo's history."""
    from molequle_dagster.sync.run_kind import TICK, run_kind

    store = lake.lake
    view_meta = store.keyed("_activities_view", "day")
    meta = dict(view_meta.meta)
    result: dict[str, Any] = {"rewritten": []}
    if run_kind(context) != TICK:
        new_affected, cursors = newly_affected_leads(store, meta)
        result = compact_stale_days(store, new_affected, meta)
        view_meta.commit(meta={**cursors, "stale_rows": result["stale_rows"]})
    # Deletions and merges apply on read: the view is complete only as far as their feeds are too.
    complete = oldest_mark(
        activities_complete_through(store),
        store.keyed("person_tombstones", "id").meta.get("complete_through"),
        store.keyed("person_merges", "loser_id").meta.get("complete_through"),
    )
    days = store.days(MARKETO_ACTIVITIES).days()
    newest = days[-1:] if days else []
    table = read_activities_view(store, settings.settings, newest, ["leadId"])
    people = store.read_current("people", ["id"])
    yield dg.MaterializeResult(
        metadata={
            "days": len(days),
            "compacted_days": dg.MetadataValue.json(result["rewritten"]),
            **data_age_metadata(complete),
        }
    )
    yield data_fresh_check(complete, asset_key=ACTIVITIES)
    yield known_people_check(table, people)


def read_activities_view(lake: Lake, settings: MolequleSettings, days: list[str], columns: list[str]) -> Any:
    from molequle_dagster.views import read_activities

    return read_activities(lake, settings, days, columns)


def known_people_check(table: pa.Table | None, people: pa.Table | None) -> dg.AssetCheckResult:
    if table is None or table.num_rows == 0:
        return dg.AssetCheckResult(
            check_name="known_people",
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description="cannot evaluate: no activities synced yet",
        )
    if people is None:
        return dg.AssetCheckResult(
            check_name="known_people",
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description="cannot evaluate: the people table is not synced yet",
            metadata={"activities": table.num_rows},
        )
    known = pc.is_in(table["leadId"], value_set=people["id"].combine_chunks())
    unknown = int(table.num_rows - (pc.sum(known).as_py() or 0))
    return dg.AssetCheckResult(
        check_name="known_people",
        passed=unknown / table.num_rows <= UNKNOWN_PERSON_THRESHOLD,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"activities": table.num_rows, "unknown_person": unknown},
    )
