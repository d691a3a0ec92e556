"""Activities: the configured types through bulk activity exports, one Parquet file per day.

All configured types go into ONE export per ≤ 31-day window (never one export per type, the mistake of the
best-known connectors). Rows are deduplicated by `marketoGUID` and carry the type's group from the
settings. Types the instance lacks (Interesting Moment on some instances) are skipped with a warning;
types whose Marketo retention is shorter than the requested history are reported in metadata
("Email Sent available since …"), never left as a silent gap.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from molequle_dagster.assets.common import (
    BULK_POOL,
    MARKETO_POOL,
    MOLEQULE_GROUP,
    OWNERS,
    SYNCED_AT,
    accounting,
    fetched_from_marketo,
    or_empty,
    run_scope,
    schema_metadata,
    utcnow,
)
from molequle_dagster.assets.daily_bulk import DailyBulkSpec, mark_covered, sync_days
from molequle_dagster.assets.people import (
    MERGES_TABLE,
    TOMBSTONES_TABLE,
    lifecycle_since,
    save_lifecycle_mark,
)
from molequle_dagster.partitions import partition_window
from molequle_dagster.resources import LakeResource, MarketoResource
from molequle_dagster.settings import MolequleSettings

ACTIVITIES_TABLE = "activities"
ACTIVITY_TYPES_TABLE = "activity_types"
TYPES_CACHE_TTL = timedelta(days=1)
# Activities come from every lead, people only from the smart list: activities of people outside the list
# are expected (unsubscribed people's bounces, say). Above this share the people sync is probably behind.
UNKNOWN_PERSON_THRESHOLD = 0.10  # Marketo's advice: cache activity types for at least a day

TS = pa.timestamp("s", tz="UTC")
ACTIVITY_CSV_SCHEMA = pa.schema(
    [
        ("marketoGUID", pa.string()),
        ("leadId", pa.int64()),
        ("activityDate", TS),
        ("activityTypeId", pa.int32()),
        ("campaignId", pa.int64()),
        ("primaryAttributeValueId", pa.string()),  # text in exports; not every type's PAV id is numeric
        ("primaryAttributeValue", pa.string()),
        ("attributes", pa.string()),  # the JSON object, as Marketo wrote it
    ]
)
ACTIVITY_SCHEMA = ACTIVITY_CSV_SCHEMA.append(pa.field(SYNCED_AT, TS)).append(
    pa.field("activity_group", pa.string())
)
ACTIVITY_TYPES_SCHEMA = pa.schema(
    [("id", pa.int32()), ("name", pa.string()), ("description", pa.string()), (SYNCED_AT, TS)]
)


def build_activity_assets(settings: MolequleSettings, partitions: dg.DailyPartitionsDefinition) -> list[Any]:
    groups = settings.activities.group_of()
    window_days = settings.marketo.bulk.window_days

    @dg.asset(
        name="marketo_activity_types",
        **fetched_from_marketo(MARKETO_POOL),
        metadata=schema_metadata(ACTIVITY_TYPES_SCHEMA),
    )
    def marketo_activity_types(
        context: dg.AssetExecutionContext, marketo: MarketoResource, lake: LakeResource
    ) -> dg.MaterializeResult:
        """The instance's activity types (types.json), and which configured types it lacks."""
        with accounting(marketo.client, lake.lake) as spent:
            table = _fetch_types(marketo.client, lake.lake)
        missing = _missing_types(settings, table)
        for name in missing:
            context.log.warning(f"Activity type {name!r} is configured but this Marketo instance lacks it")
        return dg.MaterializeResult(
            metadata={"dagster/row_count": table.num_rows, "missing_types": missing, **spent.metadata()}
        )

    def add_group(table: pa.Table) -> pa.Table:
        type_ids = table.column("activityTypeId")
        keys = pa.array(list(groups), pa.int32())
        values = pa.array(list(groups.values()), pa.string())
        index = pc.index_in(type_ids, value_set=keys)
        group = pc.take(values, index)
        return table.select([*ACTIVITY_CSV_SCHEMA.names, SYNCED_AT]).append_column("activity_group", group)

    @dg.asset(
        name=ACTIVITIES_TABLE,
        key_prefix=None,
        partitions_def=partitions,
        **fetched_from_marketo(BULK_POOL),
        deps=[marketo_activity_types],
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=window_days),
        metadata=schema_metadata(ACTIVITY_SCHEMA),
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=30)),
        check_specs=[
            dg.AssetCheckSpec(
                "row_count_matches_marketo",
                asset=ACTIVITIES_TABLE,
                blocking=True,
                description="Rows read from the export files equal Marketo's numberOfRecords.",
            ),
            dg.AssetCheckSpec(
                "known_people",
                asset=ACTIVITIES_TABLE,
                blocking=False,
                description=f"At most {UNKNOWN_PERSON_THRESHOLD:.0%} of this run's activities "
                "belong to people missing from the people table.",
            ),
        ],
    )
    def activities(context: dg.AssetExecutionContext, marketo: MarketoResource, lake: LakeResource):
        """Marketo activities of the configured types, per day (bulk activity export, createdAt windows).

        One export per ≤ 31-day window covers all types; a tick on today exports only what is new since the
        previous tick; rows are deduplicated by marketoGUID and carry `activity_group` from the settings.
        """
        client = marketo.client
        now = utcnow()
        with accounting(client, lake.lake) as spent:
            types = _cached_types(client, lake.lake, now)
            available = set(types.column("id").to_pylist())
            missing = _missing_types(settings, types)
            for name in missing:
                context.log.warning(f"Skipping activity type {name!r}: this Marketo instance lacks it")
            type_ids = [t for t in settings.activities.type_ids if t in available]
            spec = DailyBulkSpec(
                table=ACTIVITIES_TABLE,
                entity="activities",
                time_filter="createdAt",
                fields=None,  # the 8 default columns
                extra_filter={"activityTypeIds": type_ids},
                schema=ACTIVITY_CSV_SCHEMA,
                key="marketoGUID",
                day_column="activityDate",
                transform=add_group,
                reuse_scope=run_scope(context),
                exact_days=True,
            )
            keys = list(context.partition_keys)
            outcome = sync_days(client, lake.lake, spec, keys, now, window_days) if type_ids else None
            if outcome is None:  # nothing to export: the days are still covered (no re-close loops)
                for key in keys:
                    mark_covered(lake.lake, spec, key, min(partition_window(key)[1], now))
        retention = retention_notes(settings, now, keys)
        for note in retention["notes"]:
            context.log.info(note)
        added = types_added_since_history(lake.lake, type_ids, now)
        for type_id, since in added.items():
            context.log.warning(
                f"Activity type {type_id} is synced since {since}: earlier days lack it until backfilled"
            )
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": outcome.rows if outcome else 0,
                "new_rows": outcome.new_rows if outcome else 0,
                "mode": outcome.mode if outcome else "skipped",
                "windows": dg.MetadataValue.json(outcome.windows if outcome else []),
                "missing_types": missing,
                "retention": dg.MetadataValue.json(retention),
                "types_added_later": dg.MetadataValue.json({str(k): v for k, v in added.items()}),
                "location": lake.lake.location(ACTIVITIES_TABLE),
                **spent.metadata(),
            }
        )
        yield dg.AssetCheckResult(
            check_name="row_count_matches_marketo",
            passed=outcome is None or outcome.parsed_rows == outcome.exported_records,
            metadata={
                "parsed_rows": outcome.parsed_rows if outcome else 0,
                "number_of_records": outcome.exported_records if outcome else 0,
            },
        )
        unknown, total = unknown_people(lake.lake, keys)
        yield dg.AssetCheckResult(
            check_name="known_people",
            passed=total == 0 or unknown / total <= UNKNOWN_PERSON_THRESHOLD,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"activities": total, "unknown_person": unknown},
        )

    @dg.asset(
        name="activities_reconciled",
        group_name=MOLEQULE_GROUP,
        kinds={"parquet", "pyarrow"},
        owners=OWNERS,
        deps=[activities, TOMBSTONES_TABLE, MERGES_TABLE],
    )
    def activities_reconciled(lake: LakeResource) -> dg.MaterializeResult:
        """Apply Marketo deletions and merges to the stored activities, as Marketo does to its own: the
        activities of deleted leads disappear, those of merged-away leads move to the (final) winner.

        Two cheap passes: deletions and merges learned since the last run are looked up in every day
        (one scan of the `leadId` column, only when there are any); days written since the last run (a
        tick, or a backfill whose export predates a deletion) are checked against all of them. Only the
        affected files are rewritten.
        """
        store = lake.lake
        new_tombstones, new_merges, mark = lifecycle_since(store, "activities")
        result = reconcile_activities(store, new_tombstones, new_merges)
        if not result.skipped:  # a day rewritten concurrently is retried by the next run
            save_lifecycle_mark(store, "activities", mark)
        return dg.MaterializeResult(
            metadata={
                "new_deleted_leads": new_tombstones.num_rows,
                "new_merged_leads": new_merges.num_rows,
                "days_checked": len(result.checked),
                "rewritten_partitions": dg.MetadataValue.json(result.rewritten),
                "skipped_partitions": dg.MetadataValue.json(result.skipped),
            }
        )

    return [marketo_activity_types, activities, activities_reconciled]


def unknown_people(store: Any, keys: list[str]) -> tuple[int, int]:
    """(activities whose leadId is not a known person, activities) over the given days."""
    table = store.read_partitions(ACTIVITIES_TABLE, keys, columns=["leadId"])
    people = store.read_current("people", columns=["id"])
    if table is None or people is None:
        return 0, 0 if table is None else table.num_rows
    known = pc.is_in(table.column("leadId"), value_set=people.column("id").combine_chunks())
    return int(table.num_rows - pc.sum(known).as_py()), table.num_rows


@dataclass
class Reconciled:
    checked: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def reconcile_activities(store: Any, new_tombstones: pa.Table, new_merges: pa.Table) -> Reconciled:
    result = Reconciled()
    keys = store.partition_keys(ACTIVITIES_TABLE)
    if not keys:
        return result
    tombstones = or_empty(store.read_current(TOMBSTONES_TABLE), new_tombstones.schema)
    merges = or_empty(store.read_current(MERGES_TABLE), new_merges.schema)
    deleted = tombstones.column("id").combine_chunks().cast(pa.int64())
    losers, winners = _final_winners(merges)
    everyone = pa.concat_arrays([deleted, losers])
    newly = pa.concat_arrays(
        [
            new_tombstones.column("id").combine_chunks().cast(pa.int64()),
            new_merges.column("loser_id").combine_chunks().cast(pa.int64()),
        ]
    )
    state = store.read_state("activities_reconciled")
    written = store.partition_mtimes(ACTIVITIES_TABLE)
    fresh = [k for k in keys if state.get("checked", {}).get(k) != written.get(k)]
    result.checked = fresh
    touched = set(_days_with_leads(store, None, newly)) if len(newly) else set()
    if fresh and len(everyone):
        touched |= set(_days_with_leads(store, fresh, everyone))
    for key in sorted(touched):
        path = store.partition_path(ACTIVITIES_TABLE, key)
        seen = store.fs.get_file_info(path).mtime
        table = store.read_partition(ACTIVITIES_TABLE, key)
        # Remap first, then drop: a loser whose winner was deleted later is gone too.
        index = pc.index_in(table.column("leadId"), value_set=losers)
        remapped = pc.if_else(pc.is_valid(index), pc.take(winners, index), table.column("leadId"))
        table = table.set_column(table.column_names.index("leadId"), "leadId", remapped)
        table = table.filter(pc.invert(pc.is_in(table.column("leadId"), value_set=deleted)))
        if store.fs.get_file_info(path).mtime != seen:  # rewritten meanwhile by another run
            result.skipped.append(key)
            continue
        store.write_partition(ACTIVITIES_TABLE, key, table)
        result.rewritten.append(key)
    after = store.partition_mtimes(ACTIVITIES_TABLE)  # our own rewrites are checked already
    checked = {k: after.get(k, "") for k in keys if k not in result.skipped}
    store.write_state("activities_reconciled", {"checked": checked})
    return result


def _final_winners(merges: pa.Table) -> tuple[pa.Array, pa.Array]:
    """Each losing id and the winner it ends with, following chains (A→B then B→C gives A→C)."""
    pairs = dict(
        zip(merges.column("loser_id").to_pylist(), merges.column("winner_id").to_pylist(), strict=True)
    )
    final = {}
    for loser in pairs:
        winner, hops = pairs[loser], 0
        while winner in pairs and hops < len(pairs):  # hops bound: a cycle cannot loop forever
            winner, hops = pairs[winner], hops + 1
        final[loser] = winner
    return pa.array(list(final), pa.int64()), pa.array(list(final.values()), pa.int64())


def _days_with_leads(store: Any, keys: list[str] | None, lead_ids: pa.Array) -> list[str]:
    """Days (all, or just `keys`) whose activities mention any of `lead_ids`, reading only `leadId`."""
    if keys is not None:
        days = []
        for key in keys:
            ids = store.read_partition(ACTIVITIES_TABLE, key, columns=["leadId"])
            if ids is not None and pc.any(pc.is_in(ids.column("leadId"), value_set=lead_ids)).as_py():
                days.append(key)
        return days
    dataset = ds.dataset(
        store.path(ACTIVITIES_TABLE),
        filesystem=store.fs,
        format="parquet",
        partitioning="hive",
        exclude_invalid_files=True,
    )
    hits = dataset.to_table(columns=["date"], filter=pc.is_in(pc.field("leadId"), value_set=lead_ids))
    return sorted(set(pc.unique(pc.cast(hits.column("date"), pa.string())).to_pylist()))


def types_added_since_history(store: Any, type_ids: list[int], now: datetime) -> dict[int, str]:
    """Types exported now that earlier syncs did not export (added to the settings, or new on the
    instance), with the day they started: older days lack them until a backfill, and we say so."""
    state = store.read_state("activity_types_synced")
    first_seen = {int(k): v for k, v in state.get("first_seen", {}).items()}
    if not first_seen:  # the first sync defines the baseline
        baseline = dict.fromkeys(type_ids, "")
        store.write_state("activity_types_synced", {"first_seen": baseline})
        return {}
    new = {t: now.date().isoformat() for t in type_ids if t not in first_seen}
    if new:
        store.write_state("activity_types_synced", {"first_seen": {**first_seen, **new}})
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


def _fetch_types(client: Any, lake: Any) -> pa.Table:
    rows = client.activity_types()
    now = utcnow()
    table = pa.table(
        {
            "id": [int(r["id"]) for r in rows],
            "name": [r.get("name") for r in rows],
            "description": [r.get("description") for r in rows],
            SYNCED_AT: [now] * len(rows),
        },
        ACTIVITY_TYPES_SCHEMA,
    )
    lake.write_current(ACTIVITY_TYPES_TABLE, table)
    return table


def _cached_types(client: Any, lake: Any, now: datetime) -> pa.Table:
    cached = lake.read_current(ACTIVITY_TYPES_TABLE)
    if cached is not None and cached.num_rows:
        fetched = pc.max(cached.column(SYNCED_AT)).as_py()
        if fetched is not None and now - fetched.astimezone(UTC) < TYPES_CACHE_TTL:
            return cached
    return _fetch_types(client, lake)


def _missing_types(settings: MolequleSettings, types: pa.Table) -> list[str]:
    available = set(types.column("id").to_pylist())
    return [t.name for t in settings.activities.types if t.type_id not in available]
