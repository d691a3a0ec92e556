"""People: the smart-list population, the leads Marketo changed by day, deletions, merges, and `people`.

Identity is the Marketo lead `id`, never the email: every table here is keyed by `id`, so a changed
email updates the same row.

* `marketo_people_population` — the smart list named in the settings. The first sync exports its
  members with every synced field in one bulk export (the fewest calls); the daily refresh exports only
  their ids (a few bytes each) and reads the fields of people who joined since, so list membership is
  reconciled without re-exporting everyone. On 1035 (no smart-list filter on this instance) it sweeps
  `createdAt` windows over every lead instead, and says so.
* `marketo_people_updates` — by day, the leads Marketo last modified that day. A tick reads them through
  Get Lead Changes and Get Leads by id (a bulk `updatedAt` export when the delta is large); the daily
  close and backfills export each day whole in bulk (one export per day, so a row's partition never
  depends on how a backfill was split).
* `person_tombstones` — deleted leads (Get Deleted Leads; Marketo keeps them 14 days).
* `person_merges` — merged-away lead → winner, from the Merge Leads activities.
* `people` — the current people Molequle reads, folded from all of the above (`sync/people_fold.py`).
"""

import itertools
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster import clock
from molequle_dagster.arrow_ops import SYNCED_AT, TS, dedupe_latest, key_table, stamp
from molequle_dagster.conventions import (
    BULK_POOL,
    accounting,
    column_schema,
    computed_step,
    data_age_metadata,
    data_fresh_check,
    data_fresh_spec,
    fail_on_purpose,
    marketo_step,
    parse_iso,
    record_step_totals,
    report_partitions,
    run_scope,
    schema_metadata,
)
from molequle_dagster.lake import Lake
from molequle_dagster.marketo.batching import batches
from molequle_dagster.marketo.errors import UnsupportedFilterError
from molequle_dagster.marketo.timeutil import format_marketo_datetime as iso
from molequle_dagster.marketo.timeutil import split_windows
from molequle_dagster.resources import LakeResource, MarketoResource, SettingsResource
from molequle_dagster.settings import MolequleSettings
from molequle_dagster.sync.day_files import (
    DayOutcome,
    constant_day,
    covered_cursors,
    day_end,
    day_start,
    merge_into_days,
    replace_days,
)
from molequle_dagster.sync.people_fold import IN_SYNC_LIST, fold_people
from molequle_dagster.sync.run_kind import INITIAL, reads_rest, run_kind
from molequle_dagster.sync.windows import (
    LEADS_PER_CALL,
    BulkStamp,
    ReadReport,
    bulk_results,
    day_windows,
    read_changed_leads,
    rest_leads_table,
)

POPULATION = "marketo_people_population"
UPDATES = "marketo_people_updates"
PEOPLE = "people"
TOMBSTONES = "person_tombstones"
MERGES = "person_merges"
MARKETO_ACTIVITIES = "marketo_activities"
MERGE_LEADS, CHANGE_SCORE = 32, 22
DELETED_LEADS_LOOKBACK = timedelta(days=14)
UNLIMITED_PAGES = 10**9  # Marketo prunes deletions older than 14 days

TOMBSTONE_SCHEMA = pa.schema([("id", pa.int64()), ("deleted_at", TS), ("recorded_at", TS)])
MERGE_SCHEMA = pa.schema(
    [("loser_id", pa.int64()), ("winner_id", pa.int64()), ("merged_at", TS), ("recorded_at", TS)]
)
PEOPLE_COLUMNS = {
    "id": "Marketo lead id: the person's identity (never the email)",
    "email": "email address (a change updates the same row)",
    "createdAt": "when the lead was created in Marketo",
    "updatedAt": "Marketo's visible last-update time (standard fields only)",
    IN_SYNC_LIST: "member of the settings' smart list at its last refresh",
}


LEAD_FIELDS_CACHE = "_marketo_lead_fields"
DESCRIBE_TTL = timedelta(days=1)  # fields change rarely; a new configured field refreshes it at once


def lead_schema(client: Any, settings: MolequleSettings, lake: Lake | None = None) -> pa.Schema:
    """The synced fields' types from Describe Lead, cached in the lake for a day (one call a day, not one
    per step)."""
    fields = settings.people.export_fields
    cache = lake.keyed(LEAD_FIELDS_CACHE, "name") if lake is not None else None
    if cache is not None:
        manifest = cache.manifest()
        fetched = manifest.meta.get("fetched_at")
        known = manifest.schema
        fresh = fetched and known is not None and clock.now() - parse_iso(fetched) < DESCRIBE_TTL
        if fresh and all(f in known.names for f in fields):
            return pa.schema([known.field(f) for f in fields])
    schema = client.lead_schema(fields)
    if cache is not None:
        everything = pa.schema(list(client.lead_field_types().items()))
        meta = {"fetched_at": clock.now().isoformat(), "labels": client.lead_field_labels()}
        cache.commit(everything.empty_table(), meta=meta)
    return schema


def people_columns(lake: Lake) -> dict[str, str]:
    """Column descriptions of `people`: ours, and each synced Marketo field by its display name."""
    labels = lake.keyed(LEAD_FIELDS_CACHE, "name").meta.get("labels") or {}
    synced = {name: f"Marketo lead field \"{label}\"" for name, label in labels.items()}
    return {**synced, **PEOPLE_COLUMNS}


# --- population ---------------------------------------------------------------------------------------------
def _sweeps(fields: list[str], start: datetime, now: datetime, window_days: int) -> list[dict[str, Any]]:
    return [
        {"fields": fields, "filter": {"createdAt": {"startAt": iso(a), "endAt": iso(b)}}}
        for a, b in split_windows(start, now, window_days)
    ]


def _population_requests(
    settings: MolequleSettings, fields: list[str], smart: bool, now: datetime
) -> list[dict]:
    if smart:
        ref = settings.people.smart_list
        return [
            {"fields": fields, "filter": {"smartListName": ref.name} if ref.name else {"smartListId": ref.id}}
        ]
    start = datetime.combine(settings.people.sweep_start, datetime.min.time()).replace(tzinfo=now.tzinfo)
    return _sweeps(fields, start, now, settings.marketo.bulk.window_days)


def _export_population(
    context: Any,
    client: Any,
    settings: MolequleSettings,
    fields: list[str],
    schema: pa.Schema,
    report: ReadReport,
    now: datetime,
) -> tuple[Iterator[BulkStamp], str]:
    """The population's rows as a stream (never held whole): the smart-list export, or `createdAt`
    sweeps over every lead when the instance refuses smart-list filters (1035)."""
    scope = run_scope(context)

    def stream(smart: bool) -> Iterator[BulkStamp]:
        requests = _population_requests(settings, fields, smart, now)
        for _, rows in bulk_results(client, "leads", requests, report, now, schema, scope):
            yield from rows

    smart = stream(True)
    try:
        first = next(smart, None)
    except UnsupportedFilterError:
        method = "createdAt sweeps (smart-list filter unsupported: 1035)"
        context.log.warning(f"Smart-list filter refused by Marketo (1035); falling back to {method}")
        return stream(False), method
    return itertools.chain([first] if first is not None else [], smart), "smart list export"


def refresh_population(context: Any, client: Any, lake: Lake, settings: MolequleSettings) -> dict[str, Any]:
    """A full export on the first sync; afterwards members' ids only, plus the fields of newcomers."""
    now = clock.now()
    table = lake.keyed(POPULATION, "id")
    fields = settings.people.export_fields
    schema = lead_schema(client, settings, lake)
    report = ReadReport()
    # A first sync that takes over a dead one whose population landed reads that export again (reused in
    # its scope, not paid): an ids-only refresh here would be a second export.
    if not table.exists() or run_kind(context) == INITIAL:
        stamped, method = _export_population(context, client, settings, fields, schema, report, now)
        rows = _concat([stamp(s.table, s.as_of) for s in stamped], schema.append(pa.field(SYNCED_AT, TS)))
        table.rebuild(
            rows, meta={"refreshed_at": now.isoformat(), "full_at": now.isoformat(), "method": method}
        )
        return {
            "method": method,
            "members": rows.num_rows,
            "joined": rows.num_rows,
            "left": 0,
            "report": report,
        }
    stamped, method = _export_population(
        context, client, settings, ["id"], pa.schema([("id", pa.int64())]), report, now
    )
    members = pc.unique(
        _concat([s.table for s in stamped], pa.schema([("id", pa.int64())]))["id"].combine_chunks()
    )
    current = table.read(["id"])["id"].combine_chunks()
    joined = pc.filter(members, pc.invert(pc.is_in(members, value_set=current)))
    left = pc.filter(current, pc.invert(pc.is_in(current, value_set=members)))
    newcomers = _read_by_id(client, joined.to_pylist(), fields, schema, now)
    table.commit(
        newcomers,
        pa.table({"id": left}) if len(left) else None,
        meta={"refreshed_at": now.isoformat(), "method": method},
    )
    return {
        "method": method,
        "members": len(members),
        "joined": len(joined),
        "left": len(left),
        "report": report,
    }


def _read_by_id(
    client: Any, ids: list[int], fields: list[str], schema: pa.Schema, now: datetime
) -> pa.Table | None:
    if not ids:
        return None
    rows: list[dict[str, Any]] = []
    for chunk in batches(ids, LEADS_PER_CALL):
        rows.extend(client.leads_by_filter("id", list(chunk), fields))
    return stamp(rest_leads_table(rows, schema), now)


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    parts = [t.cast(schema) for t in tables if t.num_rows]
    return pa.concat_tables(parts) if parts else schema.empty_table()


@dg.asset(
    name=POPULATION,
    **marketo_step(BULK_POOL),
    metadata=schema_metadata(pa.schema([("id", pa.int64()), (SYNCED_AT, TS)]), PEOPLE_COLUMNS),
)
def marketo_people_population(
    context: dg.AssetExecutionContext,
    marketo: MarketoResource,
    lake: LakeResource,
    settings: SettingsResource,
) -> dg.MaterializeResult:
    """The members of the settings' smart list: every field on the first sync (one bulk export), then
    their ids each day (a few bytes per person) plus the fields of those who joined since."""
    with accounting(marketo.client, context) as spent:
        outcome = refresh_population(context, marketo.client, lake.lake, settings.settings)
    report = outcome.pop("report")
    spent.export_bytes = report.export_bytes
    manifest = lake.lake.keyed(POPULATION, "id").manifest()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": manifest.rows,
            **outcome,
            "location": lake.lake.location(POPULATION),
            **spent.metadata(),
        }
    )


# --- updates by day ----------------------------------------------------------------------------------------
def _filter_id(fields: list[str]) -> str:
    return json.dumps({"fields": fields})


def activity_lead_ids(lake: Lake, start: datetime, type_ids: tuple[int, ...]) -> dict[int, datetime]:
    """Leads touched by these activity types since `start`, from the activities already synced: score
    changes are not Change Data Value activities, and a merge fills the winner's empty fields."""
    days = lake.days(MARKETO_ACTIVITIES)
    wanted = [d for d in days.days() if d >= start.date().isoformat()]
    table = days.read_days(wanted, ["leadId", "activityDate", "activityTypeId"])
    if table is None or table.num_rows == 0:
        return {}
    mask = pc.and_(
        pc.is_in(table["activityTypeId"].cast(pa.int32()), value_set=pa.array(type_ids, pa.int32())),
        pc.greater_equal(table["activityDate"], pa.scalar(start, TS)),
    )
    hits = table.filter(mask)
    out: dict[int, datetime] = {}
    for lead, at in zip(hits["leadId"].to_pylist(), hits["activityDate"].to_pylist(), strict=True):
        out[lead] = max(at, out.get(lead, at))
    return out


def sync_update_days(
    context: Any,
    client: Any,
    lake: Lake,
    settings: MolequleSettings,
    keys: list[str],
    *,
    force_rest: bool = False,
) -> tuple[DayOutcome, ReadReport]:
    """Bring the days `keys` up to date: REST since the cursors on a tick, one bulk export per day otherwise.
    `force_rest` reads every window through REST (instances without the bulk updatedAt filter)."""
    now = clock.now()
    fields = settings.people.export_fields
    schema = lead_schema(client, settings, lake)
    out_schema = schema.append(pa.field(SYNCED_AT, TS))
    filter_id = _filter_id(fields)
    days = lake.days(UPDATES)
    report, outcome = ReadReport(), DayOutcome()
    open_days = [k for k in keys if day_start(k) <= now]
    if not open_days:
        return outcome, report
    if force_rest or reads_rest(context, keys, now):
        windows = day_windows(
            open_days,
            covered_cursors(days, open_days, filter_id),
            now,
            timedelta(minutes=settings.sync.late_minutes),
        )
        if not windows:
            return outcome, report
        start, end = min(w[1] for w in windows), max(w[2] for w in windows)
        watched = settings.people.change_fields
        # Get Lead Changes reports only New Lead and Change Data Value: score changes (22) and merge
        # winners (32) are seen in the activities this tick already read.
        extra = activity_lead_ids(lake, start, (MERGE_LEADS, CHANGE_SCORE))
        pages = UNLIMITED_PAGES if force_rest else settings.sync.rest_pages
        changed = read_changed_leads(
            client,
            fields,
            watched,
            schema,
            start,
            end,
            extra_ids=extra,
            rest_pages=pages,
            now=now,
            reuse_scope=run_scope(context),
            report=report,
        )
        delta = _concat([stamp(s.table, s.as_of) for s in changed.rows], out_schema)
        covered = {d: min(day_end(d), e) for d, _, e in windows}
        merge_into_days(
            days,
            delta,
            _day_of_change(changed.changed_at, end),
            "id",
            out_schema,
            covered,
            filter_id,
            outcome,
        )
        return outcome, report
    # Whole days in bulk: one export per day, so each row lands in the day Marketo last modified it.
    requests = [
        {
            "fields": fields,
            "filter": {
                "updatedAt": {
                    "startAt": iso(day_start(d)),
                    "endAt": iso(min(day_end(d) - timedelta(seconds=1), now)),
                }
            },
        }
        for d in reversed(open_days)
    ]
    report.windows.extend(
        (r["filter"]["updatedAt"]["startAt"], r["filter"]["updatedAt"]["endAt"]) for r in requests
    )
    for index, stream in bulk_results(client, "leads", requests, report, now, schema, run_scope(context)):
        day = requests[index]["filter"]["updatedAt"]["startAt"][:10]
        tables = (stamp(s.table, s.as_of) for s in stream)
        replace_days(
            days,
            tables,
            constant_day(day),
            out_schema,
            {day: min(day_end(day), now)},
            filter_id,
            outcome,
            key="id",
        )
    return outcome, report


def _day_of_change(changed_at: dict[int, datetime], fallback: datetime):
    """Each lead in the day of its latest change in the window (the window's last day when unknown: a
    bulk fallback does not say, and the daily close re-exports each day whole anyway)."""

    def day_of(table: pa.Table) -> pa.Array:
        when = [changed_at.get(i, fallback) for i in table["id"].to_pylist()]
        return pc.strftime(pa.array(when, TS), format="%Y-%m-%d")

    return day_of


def build_marketo_people_updates(
    partitions: dg.PartitionsDefinition, max_days_per_run: int = 93
) -> dg.AssetsDefinition:
    """The day-partitioned people updates (a factory: the partitions follow `sync.history_days`)."""

    @dg.asset(
        name=UPDATES,
        partitions_def=partitions,
        **marketo_step(BULK_POOL),
        deps=[MARKETO_ACTIVITIES],
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=max_days_per_run),
        metadata=schema_metadata(pa.schema([("id", pa.int64()), (SYNCED_AT, TS)]), PEOPLE_COLUMNS),
    )
    def marketo_people_updates(
        context: dg.AssetExecutionContext,
        marketo: MarketoResource,
        lake: LakeResource,
        settings: SettingsResource,
    ) -> dg.MaterializeResult:
        """By day, the leads Marketo last modified that day, with every synced field. A tick reads them
        through Get Lead Changes (New Lead, Change Data Value of the synced fields, plus score changes and
        merge winners seen in the activities) and Get Leads by id, or a bulk `updatedAt` export when the
        delta is large; the daily close and backfills export each day whole (one export per day)."""
        keys = list(context.partition_keys)
        with accounting(marketo.client, context) as spent:
            try:
                outcome, report = sync_update_days(
                    context, marketo.client, lake.lake, settings.settings, keys
                )
            except UnsupportedFilterError:
                # No "Corona" on this instance: the REST path (lead changes + leads by id) for every window.
                context.log.warning(
                    "Bulk updatedAt filter refused by Marketo (1035); reading changes through REST"
                )
                outcome, report = sync_update_days(
                    context, marketo.client, lake.lake, settings.settings, keys, force_rest=True
                )
        spent.export_bytes = report.export_bytes
        now = clock.now()
        report_partitions(context, keys, outcome, now)
        record_step_totals(
            context,
            {
                "read": report.method or "nothing to read",
                "windows": report.windows,
                "run_rows": outcome.rows,
                **spent.metadata(),
            },
        )
        return dg.MaterializeResult()

    return marketo_people_updates


# --- deletions and merges --------------------------------------------------------------------------------
@dg.asset(name=TOMBSTONES, **marketo_step(), metadata=schema_metadata(TOMBSTONE_SCHEMA))
def person_tombstones(
    context: dg.AssetExecutionContext,
    marketo: MarketoResource,
    lake: LakeResource,
    settings: SettingsResource,
) -> dg.MaterializeResult:
    """Deleted Marketo leads since the last run (Get Deleted Leads), with the deletion time."""
    table = lake.lake.keyed(TOMBSTONES, "id")
    now = clock.now()
    read_through = table.meta.get("read_through")
    late = timedelta(minutes=settings.settings.sync.late_minutes)
    since = parse_iso(read_through) - late if read_through else now - DELETED_LEADS_LOOKBACK
    with accounting(marketo.client, context) as spent:
        found = [
            (int(r["leadId"]), parse_iso(str(r["activityDate"])))
            for r in marketo.client.deleted_leads_since(since)
        ]
    fresh = pa.table(
        {"id": [f[0] for f in found], "deleted_at": [f[1] for f in found], "recorded_at": [now] * len(found)},
        TOMBSTONE_SCHEMA,
    )
    known = table.lookup(key_table("id", fresh["id"])) if fresh.num_rows else None
    if known is not None and known.num_rows:
        fresh = fresh.filter(pc.invert(pc.is_in(fresh["id"], value_set=known["id"].combine_chunks())))
    manifest = table.commit(
        dedupe_latest(fresh, "id", "deleted_at"),
        meta={"read_through": now.isoformat(), "complete_through": now.isoformat()},
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": manifest.rows,
            "new_rows": fresh.num_rows,
            "since": iso(since),
            **data_age_metadata(now, now),
            **spent.metadata(),
        }
    )


def _merge_ids(attributes: str | None) -> list[int]:
    try:
        value = json.loads(attributes).get("Merge IDs") if attributes else None
    except (ValueError, AttributeError):
        return []
    if isinstance(value, str):
        value = [v for v in value.strip("[]").split(",") if v.strip()]
    return [int(v) for v in value or []]


def merges_from_activities(
    lake: Lake, seen: dict[str, str], now: datetime
) -> tuple[pa.Table, dict[str, str]]:
    """Merge Leads activities (32) in the `marketo_activities` days written since `seen` (day → file
    stamp), as loser → winner rows, and the stamps to remember."""
    days = lake.days(MARKETO_ACTIVITIES)
    written = days.written()
    changed = [d for d, stamp_ in written.items() if seen.get(d) != stamp_]
    table = days.read_days(changed, ["leadId", "activityDate", "activityTypeId", "attributes"])
    rows = []
    if table is not None:
        merges = table.filter(pc.equal(table["activityTypeId"].cast(pa.int32()), MERGE_LEADS))
        for winner, at, attributes in zip(
            merges["leadId"].to_pylist(),
            merges["activityDate"].to_pylist(),
            merges["attributes"].to_pylist(),
            strict=True,
        ):
            rows.extend(
                {"loser_id": loser, "winner_id": winner, "merged_at": at, "recorded_at": now}
                for loser in _merge_ids(attributes)
            )
    return pa.Table.from_pylist(rows, MERGE_SCHEMA), written


@dg.asset(name=MERGES, **computed_step(), deps=[MARKETO_ACTIVITIES], metadata=schema_metadata(MERGE_SCHEMA))
def person_merges(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Merged-away Marketo leads and the lead each was merged into, from the Merge Leads activities."""
    from molequle_dagster.assets.activities import activities_complete_through

    store = lake.lake
    table = store.keyed(MERGES, "loser_id")
    now = clock.now()
    fresh, written = merges_from_activities(store, dict(table.meta.get("days_seen", {})), now)
    fresh = dedupe_latest(fresh, "loser_id", "merged_at") if fresh.num_rows else fresh
    known = table.lookup(key_table("loser_id", fresh["loser_id"])) if fresh.num_rows else None
    if known is not None and known.num_rows:
        fresh = fresh.filter(
            pc.invert(pc.is_in(fresh["loser_id"], value_set=known["loser_id"].combine_chunks()))
        )
    complete = activities_complete_through(store)
    meta = {"days_seen": written, "complete_through": complete.isoformat() if complete else None}
    manifest = table.commit(fresh, meta=meta)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": manifest.rows,
            "new_rows": fresh.num_rows,
            **data_age_metadata(complete),
        }
    )


# --- the current people ------------------------------------------------------------------------------------
def _ids_of(table: pa.Table | None, column: str = "id") -> pa.Array:
    if table is None or table.num_rows == 0:
        return pa.array([], pa.int64())
    return table[column].combine_chunks().cast(pa.int64())


def _changed_ids(keyed: Any, seen_version: int, column: str) -> tuple[pa.Array, pa.Table | None]:
    """Keys upserted since `seen_version` (all rows when the history is gone), and those rows."""
    changes = keyed.changes_since(seen_version) if seen_version else None
    rows = changes.upserts if changes is not None else keyed.read_or_none()
    return _ids_of(rows, column), rows


def complete_through(lake: Lake) -> datetime | None:
    """The Marketo time up to which `people` reflects every change: the oldest of its feeds' marks."""
    marks = []
    days = lake.days(UPDATES)
    newest = days.days()[-1:] if days.days() else []
    for day in newest:
        marks.append(days.cursor(day).get("covered_until"))
    marks.append(lake.keyed(TOMBSTONES, "id").meta.get("complete_through"))
    marks.append(lake.keyed(MERGES, "loser_id").meta.get("complete_through"))
    if not newest or any(m is None for m in marks):
        return None
    return min(parse_iso(m) for m in marks)


def fold_into_people(lake: Lake) -> dict[str, Any]:
    """Fold what changed since the last run into `people` (only the rows of changed ids are touched)."""
    people = lake.keyed(PEOPLE, "id")
    population = lake.keyed(POPULATION, "id")
    tombstones = lake.keyed(TOMBSTONES, "id")
    merges = lake.keyed(MERGES, "loser_id")
    if not population.exists():
        # the same run fails the same way until the first sync ran: not for the run-retry daemon
        raise fail_on_purpose(None, f"{POPULATION} has not been synced yet: the first sync starts with it")
    meta = dict(people.meta)
    first = not people.exists()
    updates = lake.days(UPDATES)
    written = updates.written()
    seen = meta.get("updates_seen", {})
    changed_days = [d for d, stamp_ in written.items() if seen.get(d) != stamp_]
    fetched = [t for t in [updates.read_days(changed_days)] if t is not None]
    pop_changes = None if first else population.changes_since(int(meta.get("population_version", 0)))
    if pop_changes is None:  # first fold, or the population was exported whole again
        members_rows = population.read()
        joined = _ids_of(members_rows)
        current_members = people.read_or_none(["id", IN_SYNC_LIST])
        left = (
            _ids_of(current_members.filter(pc.fill_null(current_members[IN_SYNC_LIST], False)))
            if current_members is not None
            else pa.array([], pa.int64())
        )
        left = pc.filter(left, pc.invert(pc.is_in(left, value_set=joined))) if len(left) else left
        fetched.append(members_rows)
    else:
        joined, left = _ids_of(pop_changes.upserts), _ids_of(pop_changes.deleted)
        if pop_changes.upserts.num_rows:
            fetched.append(pop_changes.upserts)
    new_deleted, _ = _changed_ids(tombstones, int(meta.get("tombstones_version", 0)), "id")
    new_losers, new_merges = _changed_ids(merges, int(meta.get("merges_version", 0)), "loser_id")
    fetched_ids = (
        pc.unique(pa.concat_arrays([_ids_of(t) for t in fetched])) if fetched else pa.array([], pa.int64())
    )
    mentioned = key_table("id", fetched_ids)
    removed_fetched = [
        _ids_of(tombstones.lookup(mentioned, ["id"])),
        _ids_of(merges.lookup(mentioned.rename_columns(["loser_id"]), ["loser_id"]), "loser_id"),
    ]
    removed = pc.unique(pa.concat_arrays([new_deleted, new_losers, *removed_fetched]))
    winners = _ids_of(merges.read_or_none(["winner_id"]), "winner_id")
    is_member = _ids_of(population.lookup(mentioned, ["id"]))
    everyone = key_table("id", pa.concat_arrays([fetched_ids, joined, left, removed]))
    current = people.lookup(everyone) if not first else None
    refreshed_at = population.meta.get("refreshed_at")
    delta = fold_people(
        fetched=fetched,
        current=current,
        members_joined=joined,
        members_left=left,
        is_member=is_member,
        removed=removed,
        winners=winners,
        list_refreshed_at=parse_iso(refreshed_at) if refreshed_at else None,
    )
    complete = complete_through(lake)
    manifest = people.commit(
        delta.upserts,
        delta.deletes,
        meta={
            "population_version": population.version,
            "tombstones_version": tombstones.version,
            "merges_version": merges.version,
            "updates_seen": written,
            "complete_through": complete.isoformat() if complete else None,
        },
    )
    return {
        "rows": manifest.rows,
        "upserted": delta.upserts.num_rows if delta.upserts is not None else 0,
        "deleted": delta.deletes.num_rows if delta.deletes is not None else 0,
        "update_days_folded": changed_days,
        "population_refolded": pop_changes is None,
        "complete_through": complete,
        "new_merges": new_merges.num_rows if new_merges is not None else 0,
    }


def membership_check(lake: Lake) -> dg.AssetCheckResult:
    """`in_sync_list` marks exactly the smart list's members (minus deleted and merged-away leads)."""
    population = lake.keyed(POPULATION, "id")
    if not population.meta.get("full_at"):
        return dg.AssetCheckResult(
            check_name="smart_list_members",
            passed=False,
            description="the first sync has not loaded the smart list's population yet",
        )
    people = lake.read_current(PEOPLE, ["id", IN_SYNC_LIST])
    members = _ids_of(population.read(["id"]))
    removed = pa.concat_arrays(
        [
            _ids_of(lake.read_current(TOMBSTONES, ["id"])),
            _ids_of(lake.read_current(MERGES, ["loser_id"]), "loser_id"),
        ]
    )
    expected = (
        pc.filter(members, pc.invert(pc.is_in(members, value_set=removed))) if len(removed) else members
    )
    flagged = (
        _ids_of(people.filter(pc.fill_null(people[IN_SYNC_LIST], False)))
        if people is not None
        else members[:0]
    )
    missing = len(pc.filter(expected, pc.invert(pc.is_in(expected, value_set=flagged))))
    extra = len(pc.filter(flagged, pc.invert(pc.is_in(flagged, value_set=expected))))
    return dg.AssetCheckResult(
        check_name="smart_list_members",
        passed=missing == 0 and extra == 0,
        metadata={"members": len(expected), "missing_from_people": missing, "flagged_but_not_members": extra},
    )


@dg.asset(
    name=PEOPLE,
    **computed_step(),
    deps=[POPULATION, UPDATES, TOMBSTONES, MERGES],
    metadata=schema_metadata(
        pa.schema([("id", pa.int64()), (SYNCED_AT, TS), (IN_SYNC_LIST, pa.bool_())]), PEOPLE_COLUMNS
    ),
    check_specs=[
        dg.AssetCheckSpec(
            "smart_list_members",
            asset=PEOPLE,
            blocking=True,
            description="The first sync loaded the smart list, and in_sync_list marks exactly its members "
            "(minus deleted and merged-away leads).",
        ),
        data_fresh_spec(PEOPLE),
    ],
)
def people(context: dg.AssetExecutionContext, lake: LakeResource):
    """Current people, keyed by Marketo lead id: the smart list's members, people Marketo changed since the
    list's last refresh (they may have joined it), and merge winners; never deleted or merged-away leads.
    Each run folds only what changed since the previous one (`sync/people_fold.py`)."""
    outcome = fold_into_people(lake.lake)
    complete = outcome.pop("complete_through")
    schema = lake.lake.keyed(PEOPLE, "id").schema()
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": outcome.pop("rows"),
            **outcome,
            "update_days_folded": dg.MetadataValue.json(outcome["update_days_folded"]),
            **(
                {"dagster/column_schema": column_schema(schema, people_columns(lake.lake))}
                if schema is not None
                else {}
            ),
            "location": lake.lake.location(PEOPLE),
            **data_age_metadata(complete),
        }
    )
    yield membership_check(lake.lake)
    yield data_fresh_check(complete, asset_key=PEOPLE)
