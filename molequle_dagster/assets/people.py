"""People: the smart-list population, daily lead updates, deletions and merges, and the current table.

Identity is the Marketo lead `id`, never the email: every table here is keyed by `id`, so a changed email
updates the same row. The flow:

* `marketo_people_population` — everyone in the smart list named in the settings, in one bulk lead export
  (the fewest API calls). Refreshed by the daily job to reconcile list membership. If the instance refuses
  smart-list filters (1035, no "Corona"), it falls back to `createdAt` sweeps over the history and says so
  in its metadata.
* `marketo_people_updates` — daily partitions of the leads whose last change falls on that day (bulk
  `updatedAt` filter). A tick exports only what changed since the last tick.
* `marketo_people_lifecycle` — deletions (Get Deleted Leads) and merges (Merge Leads activities) since the
  last run, into the `person_tombstones` and `person_merges` tables.
* `people` — the current state Molequle reads: the population, upserted with every update fetched since,
  minus tombstoned ids and merged-away (losing) ids.
"""

from datetime import timedelta
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.assets.common import (
    BULK_POOL,
    MARKETO_GROUP,
    MARKETO_POOL,
    MARKETO_RETRY,
    MOLEQULE_GROUP,
    OWNERS,
    SYNCED_AT,
    accounting,
    column_schema,
    dedupe_latest,
    fetched_from_marketo,
    iso,
    or_empty,
    run_scope,
    schema_metadata,
    stamp,
    utcnow,
)
from molequle_dagster.assets.daily_bulk import DailyBulkSpec, sync_days
from molequle_dagster.marketo.errors import UnsupportedFilterError
from molequle_dagster.marketo.timeutil import parse_marketo_datetime as _parse
from molequle_dagster.marketo.timeutil import split_windows
from molequle_dagster.resources import LakeResource, MarketoResource
from molequle_dagster.settings import MolequleSettings

POPULATION_TABLE = "people_population"
UPDATES_TABLE = "people_updates"
PEOPLE_TABLE = "people"
TOMBSTONES_TABLE = "person_tombstones"
MERGES_TABLE = "person_merges"
MERGE_LEADS_TYPE = 32
DELETED_LEADS_LOOKBACK = timedelta(days=14)  # Marketo prunes deletions older than 14 days

# `recorded_at`: when we learned of it; downstream steps (activities, memberships) consume by it.
TOMBSTONE_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("deleted_at", pa.timestamp("s", tz="UTC")),
        ("recorded_at", pa.timestamp("s", tz="UTC")),
    ]
)
MERGE_SCHEMA = pa.schema(
    [
        ("loser_id", pa.int64()),
        ("winner_id", pa.int64()),
        ("merged_at", pa.timestamp("s", tz="UTC")),
        ("recorded_at", pa.timestamp("s", tz="UTC")),
    ]
)


def _people_columns(settings: MolequleSettings, *extra: tuple[str, str]) -> dict[str, Any]:
    """Definition-time column schema: the configured fields (exact types come from describe at run time
    and are recorded on each materialization)."""
    fixed = {"id": "int64", "createdAt": "timestamp[s, UTC]", "updatedAt": "timestamp[s, UTC]"}
    fields = settings.people.export_fields
    columns = [dg.TableColumn(name=f, type=fixed.get(f, "from Marketo describe")) for f in fields]
    columns += [dg.TableColumn(name=n, type=t) for n, t in extra]
    return {"dagster/column_schema": dg.TableSchema(columns=columns)}


def build_people_assets(settings: MolequleSettings, partitions: dg.DailyPartitionsDefinition) -> list[Any]:
    fields = settings.people.export_fields
    smart_list = settings.people.smart_list
    window_days = settings.marketo.bulk.window_days

    @dg.asset(
        name="marketo_people_population",
        **fetched_from_marketo(BULK_POOL),
        metadata={
            "smart_list": smart_list.name or str(smart_list.id),
            **_people_columns(settings, (SYNCED_AT, "timestamp[s, UTC]")),
        },
    )
    def marketo_people_population(
        context: dg.AssetExecutionContext, marketo: MarketoResource, lake: LakeResource
    ) -> dg.MaterializeResult:
        """Everyone in the settings' smart list, through one bulk lead export (the initial people sync).

        The daily job refreshes it to reconcile list membership. On 1035 (smart-list filters unsupported on
        this instance) it sweeps `createdAt` windows over the history instead and says so in metadata.
        """
        client = marketo.client
        now = utcnow()
        flt = {"smartListName": smart_list.name} if smart_list.name else {"smartListId": smart_list.id}
        method = "smart list export"
        scope = run_scope(context)
        path = lake.lake.current_path(POPULATION_TABLE)

        def write(requests: list[dict[str, Any]]) -> int:
            rows = 0
            with lake.lake.writer(path, written) as writer:
                exports = client.bulk_export_many("leads", requests, schema=schema, reuse_scope=scope)
                for _i, result in exports:
                    as_of = min(result.started_at or now, now)  # reused exports are as old as they are
                    for batch in result.batches():
                        table = stamp(pa.Table.from_batches([batch]), as_of).select(written.names)
                        writer.write_table(table.cast(written))
                        rows += table.num_rows
            return rows

        with accounting(client, lake.lake) as spent:
            schema = client.lead_schema(fields)  # types from describe
            written = schema.append(pa.field(SYNCED_AT, pa.timestamp("s", tz="UTC")))
            try:
                rows = write([{"fields": fields, "filter": flt}])
            except UnsupportedFilterError:
                method = "createdAt sweeps (smart-list filter unsupported: 1035)"
                context.log.warning(f"Smart-list filter refused by Marketo (1035); falling back to {method}")
                rows = write(_created_at_sweeps(fields, settings.people.sweep_start, now, window_days))
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "method": method,
                "dagster/column_schema": column_schema(written),
                "synced_at": iso(now),
                "location": lake.lake.location(POPULATION_TABLE),
                **spent.metadata(),
            }
        )

    @dg.asset(
        name="marketo_people_updates",
        partitions_def=partitions,
        **fetched_from_marketo(BULK_POOL),
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=window_days),
        metadata=_people_columns(settings, (SYNCED_AT, "timestamp[s, UTC]")),
        check_specs=[
            dg.AssetCheckSpec(
                "row_count_matches_marketo",
                asset="marketo_people_updates",
                blocking=True,
                description="Rows read from the export files equal Marketo's numberOfRecords.",
            )
        ],
    )
    def marketo_people_updates(
        context: dg.AssetExecutionContext, marketo: MarketoResource, lake: LakeResource
    ):
        """Leads whose last change falls on the partition's day (bulk lead export, `updatedAt` filter).

        A 30-minute tick on today exports only what changed since the previous tick; a backfill exports
        its range in ≤ 31-day windows (⌈days/31⌉ exports) and writes one file per day.
        """
        client = marketo.client
        keys = list(context.partition_keys)
        method = "bulk export (updatedAt)"
        with accounting(client, lake.lake) as spent:
            spec = DailyBulkSpec(
                table=UPDATES_TABLE,
                entity="leads",
                time_filter="updatedAt",
                fields=fields,
                extra_filter={},
                schema=client.lead_schema(fields),
                key="id",
                day_column="updatedAt",
                transform=lambda t: t.select([*fields, SYNCED_AT]),
                reuse_scope=run_scope(context),
            )
            try:
                outcome = sync_days(client, lake.lake, spec, keys, utcnow(), window_days)
            except UnsupportedFilterError:
                # No "Corona" on this instance: find changed leads through the lead-changes feed
                # (New Lead and Change Data Value activities) and read them by id, 300 per call.
                method = "REST lead changes + leads by id (bulk updatedAt filter unsupported: 1035)"
                context.log.warning(f"Bulk updatedAt filter refused by Marketo (1035); using {method}")
                spec.fetch = rest_lead_updates(client, fields, spec.schema)
                outcome = sync_days(client, lake.lake, spec, keys, utcnow(), window_days)
        yield dg.MaterializeResult(
            metadata={
                "method": method,
                "dagster/row_count": outcome.rows,
                "new_rows": outcome.new_rows,
                "mode": outcome.mode,
                "windows": dg.MetadataValue.json(outcome.windows),
                "location": lake.lake.location(UPDATES_TABLE),
                **spent.metadata(),
            }
        )
        yield dg.AssetCheckResult(
            check_name="row_count_matches_marketo",
            passed=outcome.parsed_rows == outcome.exported_records,
            metadata={"parsed_rows": outcome.parsed_rows, "number_of_records": outcome.exported_records},
        )

    @dg.multi_asset(
        name="marketo_people_lifecycle",
        group_name=MARKETO_GROUP,
        pool=MARKETO_POOL,
        retry_policy=MARKETO_RETRY,
        specs=[
            dg.AssetSpec(
                TOMBSTONES_TABLE,
                description="Deleted Marketo leads: id and deletion time (Get Deleted Leads).",
                kinds={"marketo", "parquet"},
                owners=OWNERS,
                metadata=schema_metadata(TOMBSTONE_SCHEMA),
            ),
            dg.AssetSpec(
                MERGES_TABLE,
                description="Merged Marketo leads: each losing id and the winner it was folded into.",
                kinds={"marketo", "parquet"},
                owners=OWNERS,
                metadata=schema_metadata(MERGE_SCHEMA),
            ),
        ],
    )
    def marketo_people_lifecycle(marketo: MarketoResource, lake: LakeResource):
        """Deletions and merges since the last run, appended to the tombstone table and the merge map."""
        client = marketo.client
        store = lake.lake
        now = utcnow()
        state = store.read_state("people_lifecycle")
        since = state.get("since")
        since_dt = _parse(since) if since else now - DELETED_LEADS_LOOKBACK
        with accounting(client, lake.lake) as spent:
            deleted = [
                (int(r["leadId"]), _parse(r["activityDate"])) for r in client.deleted_leads_since(since_dt)
            ]
            merges = []
            for activity in client.activities_since(since_dt, [MERGE_LEADS_TYPE]):
                winner = int(activity["leadId"])
                for loser in _merge_ids(activity):
                    merges.append((loser, winner, _parse(activity["activityDate"])))
        tombstones = _append(
            store.read_current(TOMBSTONES_TABLE),
            pa.table(
                {
                    "id": [d[0] for d in deleted],
                    "deleted_at": [d[1] for d in deleted],
                    "recorded_at": [now] * len(deleted),
                },
                TOMBSTONE_SCHEMA,
            ),
            "id",
        )
        merge_map = _append(
            store.read_current(MERGES_TABLE),
            pa.table(
                {
                    "loser_id": [m[0] for m in merges],
                    "winner_id": [m[1] for m in merges],
                    "merged_at": [m[2] for m in merges],
                    "recorded_at": [now] * len(merges),
                },
                MERGE_SCHEMA,
            ),
            "loser_id",
        )
        store.write_current(TOMBSTONES_TABLE, tombstones)
        store.write_current(MERGES_TABLE, merge_map)
        store.write_state("people_lifecycle", {"since": now.isoformat()})
        common = {"since": iso(since_dt), **spent.metadata()}
        yield dg.MaterializeResult(
            asset_key=TOMBSTONES_TABLE,
            metadata={"dagster/row_count": tombstones.num_rows, "new_rows": len(deleted), **common},
        )
        yield dg.MaterializeResult(
            asset_key=MERGES_TABLE,
            metadata={"dagster/row_count": merge_map.num_rows, "new_rows": len(merges), **common},
        )

    @dg.asset(
        name=PEOPLE_TABLE,
        group_name=MOLEQULE_GROUP,
        kinds={"parquet", "pyarrow"},
        owners=OWNERS,
        deps=[marketo_people_population, marketo_people_updates, TOMBSTONES_TABLE, MERGES_TABLE],
        metadata=_people_columns(settings, (SYNCED_AT, "timestamp[s, UTC]"), ("in_sync_list", "bool")),
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=30)),
        check_specs=[
            dg.AssetCheckSpec(
                "ids_unique",
                asset=PEOPLE_TABLE,
                blocking=True,
                description="Every Marketo lead id appears once.",
            ),
        ],
    )
    def people(lake: LakeResource):
        """Current people, keyed by Marketo lead id: the smart list's members, plus people Marketo changed
        since the list's last refresh (they may have joined it), without deleted and merged-away leads.

        Each row is the newest version fetched (`_synced_at`), whatever order runs finished in: the fold
        takes the previous table, the population when it was refreshed, and every updates day written
        since the last fold, and keeps the newest row per id. `in_sync_list` is true exactly for the
        members at the last refresh (daily). A refresh drops the non-members again, except merge winners
        (their activities and memberships moved to them) and people changed after the snapshot.
        """
        store = lake.lake
        fold = store.read_state("people/fold")
        previous = store.read_current(PEOPLE_TABLE)
        population = store.read_current(POPULATION_TABLE)
        population_at = iso_or_none(_max_time(population))
        refreshed = population is not None and population_at != fold.get("population")
        consumed = fold.get("consumed", {})
        written = store.partition_mtimes(UPDATES_TABLE)
        changed_days = [k for k, at in written.items() if consumed.get(k) != at]
        updates = store.read_partitions(UPDATES_TABLE, changed_days)

        parts = [t for t in (previous, population if refreshed else None, updates) if t is not None]
        if not parts:
            raise dg.Failure("No people synced yet: materialize marketo_people_population first")
        # Columns are typed from Marketo's describe (by the client): the schema comes from the data.
        schema = (
            parts[0].schema.remove(parts[0].schema.get_field_index("in_sync_list"))
            if "in_sync_list" in parts[0].schema.names
            else parts[0].schema
        )
        rows = pa.concat_tables([t.select(schema.names).cast(schema) for t in parts])
        current = dedupe_latest(rows, "id", SYNCED_AT)
        if refreshed:
            members = population.column("id").combine_chunks()
        elif previous is not None:
            members = previous.filter(pc.fill_null(previous.column("in_sync_list"), False)).column("id")
            members = members.combine_chunks()
        else:
            members = pa.array([], pa.int64())
        current = current.append_column("in_sync_list", pc.is_in(current.column("id"), value_set=members))
        if refreshed:
            current = current.filter(_kept_at_refresh(store, current, population_at))
        removed = _removed_ids(store)
        if removed is not None and len(removed):
            current = current.filter(pc.invert(pc.is_in(current.column("id"), value_set=removed)))
        current = current.sort_by("id")
        store.write_current(PEOPLE_TABLE, current)
        store.write_state("people/fold", {"population": population_at, "consumed": written})
        ids = current.column("id")
        duplicates = len(ids) - len(pc.unique(ids))
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": current.num_rows,
                "dagster/column_schema": column_schema(current.schema),
                "population_refreshed": refreshed,
                "update_days_folded": dg.MetadataValue.json(changed_days),
                "in_sync_list": int(pc.sum(current.column("in_sync_list")).as_py() or 0),
                "location": store.location(PEOPLE_TABLE),
            }
        )
        yield dg.AssetCheckResult(
            check_name="ids_unique", passed=duplicates == 0, metadata={"duplicates": duplicates}
        )

    return [marketo_people_population, marketo_people_updates, marketo_people_lifecycle, people]


# --- helpers -----------------------------------------------------------------------------------------
LEAD_BATCH = 300


def rest_lead_updates(client: Any, fields: list[str], schema: pa.Schema):
    """A `DailyBulkSpec.fetch` that reads leads changed in each window without bulk `updatedAt`."""
    watched = [f for f in fields if f not in ("id", "createdAt", "updatedAt")] or ["email"]

    def fetch(requests: list[dict[str, Any]]):
        for request in requests:
            window = request["filter"]["updatedAt"]
            start, end = _parse(window["startAt"]), _parse(window["endAt"])
            ids = sorted({int(a["leadId"]) for a in client.lead_changes_since(start, watched, until=end)})
            rows: list[dict[str, Any]] = []
            for offset in range(0, len(ids), LEAD_BATCH):
                rows.extend(client.leads_by_filter("id", ids[offset : offset + LEAD_BATCH], fields))
            columns = {f: pa.array([r.get(f) for r in rows]) if rows else pa.nulls(0) for f in fields}
            yield pa.table({f: columns[f].cast(schema.field(f).type) for f in fields})

    return fetch


def _created_at_sweeps(fields: list[str], start: Any, now: Any, window_days: int) -> list[dict[str, Any]]:
    from molequle_dagster.partitions import partition_window

    begin = partition_window(start.strftime("%Y-%m-%d"))[0]
    return [
        {"fields": fields, "filter": {"createdAt": {"startAt": iso(a), "endAt": iso(b)}}}
        for a, b in split_windows(begin, now, window_days)
    ]


def iso_or_none(value: Any) -> str | None:
    return iso(value) if value is not None else None


def _max_time(table: pa.Table | None):
    if table is None or table.num_rows == 0:
        return None
    return pc.max(table.column(SYNCED_AT)).as_py()


def _merge_ids(activity: dict[str, Any]) -> list[int]:
    for attribute in activity.get("attributes") or []:
        if attribute.get("name") == "Merge IDs":
            value = attribute.get("value")
            if isinstance(value, str):
                value = [v for v in value.strip("[]").split(",") if v.strip()]
            return [int(v) for v in value or []]
    return []


def _append(existing: pa.Table | None, new: pa.Table, key: str) -> pa.Table:
    """Add newly learned rows; a key seen before keeps its first record (and its recorded_at)."""
    if existing is None:
        return dedupe_latest(new, key, "recorded_at").sort_by(key)
    fresh = new.filter(pc.invert(pc.is_in(new.column(key), value_set=existing.column(key).combine_chunks())))
    return pa.concat_tables([existing.cast(new.schema), fresh]).sort_by(key)


def _kept_at_refresh(store: Any, current: pa.Table, population_at: str | None) -> pa.Array:
    """Members, merge winners, and rows fetched after the population snapshot."""
    keep = pc.fill_null(current.column("in_sync_list"), False)
    merges = store.read_current(MERGES_TABLE, columns=["winner_id"])
    if merges is not None and merges.num_rows:
        keep = pc.or_(
            keep, pc.is_in(current.column("id"), value_set=merges.column("winner_id").combine_chunks())
        )
    if population_at:
        cutoff = pa.scalar(_parse(population_at), pa.timestamp("s", tz="UTC"))
        keep = pc.or_(keep, pc.fill_null(pc.greater(current.column(SYNCED_AT), cutoff), False))
    return keep


def _removed_ids(store: Any) -> pa.Array | None:
    parts = []
    tombstones = store.read_current(TOMBSTONES_TABLE, columns=["id"])
    if tombstones is not None:
        parts.append(tombstones.column("id").combine_chunks())
    merges = store.read_current(MERGES_TABLE, columns=["loser_id"])
    if merges is not None:
        parts.append(merges.column("loser_id").combine_chunks())
    return pa.concat_arrays(parts) if parts else None


def lifecycle_since(store: Any, consumer: str) -> tuple[pa.Table, pa.Table, str | None]:
    """Tombstones and merges recorded after `consumer`'s watermark, and the new watermark to save."""
    state = store.read_state(f"lifecycle_consumers/{consumer}")
    mark = state.get("recorded_through")
    tombstones = or_empty(store.read_current(TOMBSTONES_TABLE), TOMBSTONE_SCHEMA)
    merges = or_empty(store.read_current(MERGES_TABLE), MERGE_SCHEMA)
    if mark:
        from datetime import datetime

        cutoff = pa.scalar(datetime.fromisoformat(mark), pa.timestamp("s", tz="UTC"))
        tombstones = tombstones.filter(pc.greater(tombstones.column("recorded_at"), cutoff))
        merges = merges.filter(pc.greater(merges.column("recorded_at"), cutoff))
    latest = [
        t
        for t in (
            pc.max(tombstones.column("recorded_at")).as_py() if tombstones.num_rows else None,
            pc.max(merges.column("recorded_at")).as_py() if merges.num_rows else None,
        )
        if t
    ]
    return tombstones, merges, (max(latest).isoformat() if latest else mark)


def save_lifecycle_mark(store: Any, consumer: str, mark: str | None) -> None:
    if mark:
        store.write_state(f"lifecycle_consumers/{consumer}", {"recorded_through": mark})
