"""Program memberships, keyed by (program, lead), with the status by *name*, healed after renames.

* `marketo_program_members` — bulk program-member exports (≤ 10 programs per job), only for programs the
  lake has never exported and for the rolling reconciliation: each program is re-exported once per
  `reconciliation.memberships_days`, a slice a day (the daily job), within the export budget.
* `memberships` / `membership_retry` — folded from what the tick already reads: Change Status in
  Progression activities (104) in `marketo_activities`, the program-member exports, deletions and merges
  (Marketo drops a deleted lead's memberships and moves a merged-away lead's to the winner), and channel
  renames. A status name that does not resolve among the program's channel statuses is held in
  `membership_retry`, never dropped, and released when it resolves (`sync/healing.py`).
"""

import math
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster import clock
from molequle_dagster.arrow_ops import TS, dedupe_latest, stamp
from molequle_dagster.budget import budget_of
from molequle_dagster.conventions import (
    BULK_POOL,
    MOLEQULE_GROUP,
    OWNERS,
    accounting,
    data_age_metadata,
    data_fresh_check,
    data_fresh_spec,
    marketo_step,
    oldest_mark,
    run_scope,
    schema_metadata,
)
from molequle_dagster.lake import Lake
from molequle_dagster.marketo.batching import batches
from molequle_dagster.resources import LakeResource, MarketoResource, SettingsResource
from molequle_dagster.sync import healing
from molequle_dagster.sync.memberships_fold import (
    KEY,
    MEMBER_SCHEMA,
    PM_EXPORT_SCHEMA,
    apply_events,
    apply_snapshot,
    events_from_activities,
    members_from_export,
    move_merged,
    rename,
)
from molequle_dagster.sync.windows import ReadReport, bulk_results
from molequle_dagster.views import lifecycle_maps

PROGRAM_MEMBERS = "marketo_program_members"
MEMBERSHIPS = "memberships"
RETRY = "membership_retry"
PROGRAMS = "marketo_programs"
CHANNELS = "marketo_channels"
HISTORY = "channel_status_history"
MARKETO_ACTIVITIES = "marketo_activities"
PROGRAMS_PER_EXPORT = 10  # Marketo: filter.programIds takes at most 10
PM_FIELDS = ["leadId", "statusName", "membershipDate", "reachedSuccess", "acquiredBy", "updatedAt"]
PM_KEY = ["programId", "leadId"]
MEMBERSHIP_COLUMNS = {
    "program_id": "Marketo program id",
    "lead_id": "Marketo lead id",
    "status_name": "the member's progression status, by name (as Marketo keeps it)",
    "membership_date": "when the lead joined the program",
    "reached_success": "whether the member ever reached a success status",
    "acquired_by": "whether this program acquired the lead (Marketo's Acquired By)",
    "updated_at": "Marketo time of the membership's last change",
    "channel": "the program's channel (program type)",
    "step": "position of the status in the channel's progression",
    "success": "whether the current status is a success status",
}


# --- program-member exports --------------------------------------------------------------------------------
def programs_to_export(lake: Lake, days: int) -> tuple[list[int], dict[str, Any]]:
    """Never-exported programs, then the next reconciliation slice (programs in id order, wrapping)."""
    members = lake.keyed(PROGRAM_MEMBERS, PM_KEY)
    programs = lake.read_current(PROGRAMS, ["id"])
    all_ids = sorted(programs["id"].to_pylist()) if programs is not None else []
    meta = dict(members.meta)
    exported = set(int(p) for p in meta.get("exported", {}))
    fresh = [p for p in all_ids if p not in exported]
    slice_size = math.ceil(len(all_ids) / days) if all_ids else 0
    after = int(meta.get("reconciled_through", 0))
    ring = [p for p in all_ids if p > after] + [p for p in all_ids if p <= after]
    reconcile = [p for p in ring if p in exported][:slice_size]
    return fresh + [p for p in reconcile if p not in fresh], {
        "new": len(fresh),
        "reconciled": len(reconcile),
        "reconciled_through": reconcile[-1] if reconcile else after,
        "previous_through": after,
    }


PM_ROW_BYTES = 100  # a program-member export row of PM_FIELDS is about this long (measured on the sandbox)


def estimated_export_bytes(lake: Lake, program_ids: list[int]) -> int:
    """What exporting these programs' members will meter: their known members times a row's size."""
    if not program_ids:
        return 0
    members = lake.read_current(PROGRAM_MEMBERS, ["programId"])
    if members is None:
        return 0
    mine = pc.sum(pc.is_in(members["programId"], value_set=pa.array(program_ids, pa.int64()))).as_py() or 0
    return int(mine) * PM_ROW_BYTES


def export_program_members(context: Any, client: Any, lake: Lake, program_ids: list[int]) -> ReadReport:
    """Export the programs' members and replace those programs' rows (members who left disappear)."""
    table = lake.keyed(PROGRAM_MEMBERS, PM_KEY)
    now = clock.now()
    report = ReadReport()
    requests = [
        {"fields": PM_FIELDS, "filter": {"programIds": list(chunk)}}
        for chunk in batches(program_ids, PROGRAMS_PER_EXPORT)
    ]
    exported = dict(table.meta.get("exported", {}))
    for index, stream in bulk_results(
        client, "program/members", requests, report, now, PM_EXPORT_SCHEMA, run_scope(context)
    ):
        parts = [stamp(s.table, s.as_of) for s in stream]
        rows = pa.concat_tables(parts) if parts else stamp(PM_EXPORT_SCHEMA.empty_table(), now)
        chunk = requests[index]["filter"]["programIds"]
        before = table.read_or_none(PM_KEY)
        gone = None
        if before is not None and before.num_rows:
            mine = before.filter(pc.is_in(before["programId"], value_set=pa.array(chunk, pa.int64())))
            gone = mine.join(rows.select(PM_KEY), PM_KEY, join_type="left anti")
        exported |= {str(p): now.isoformat() for p in chunk}
        table.commit(rows, gone if gone is not None and gone.num_rows else None, meta={"exported": exported})
    return report


@dg.asset(
    name=PROGRAM_MEMBERS,
    **marketo_step(BULK_POOL),
    deps=[PROGRAMS],
    metadata=schema_metadata(PM_EXPORT_SCHEMA),
)
def marketo_program_members(
    context: dg.AssetExecutionContext,
    marketo: MarketoResource,
    lake: LakeResource,
    settings: SettingsResource,
) -> dg.MaterializeResult:
    """Program members as Marketo exports them, for never-exported programs and the day's reconciliation
    slice (every program once per `reconciliation.memberships_days`); ≤ 10 programs per bulk job."""
    store = lake.lake
    program_ids, plan = programs_to_export(store, settings.settings.reconciliation.memberships_days)
    # The budget asks Marketo for today's usage: inside the accounting, so a quota or auth error there
    # fails on purpose too.
    with accounting(marketo.client, context) as spent:
        budget = budget_of(marketo.client, settings.settings.budget)
        reconcile = program_ids[plan["new"] :]
        allowed, why = budget.allows("reconcile", export_bytes=estimated_export_bytes(store, reconcile))
        if not allowed:  # new programs still go; the reconciliation slice waits for a day with room
            context.log.info(why)
            program_ids = program_ids[: plan["new"]]
            plan = {**plan, "reconciled": 0, "reconciled_through": plan["previous_through"]}
        report = export_program_members(context, marketo.client, store, program_ids)
    spent.export_bytes = report.export_bytes
    table = store.keyed(PROGRAM_MEMBERS, PM_KEY)
    table.commit(meta={"reconciled_through": plan["reconciled_through"]})
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": table.manifest().rows,
            "programs_exported": len(program_ids),
            "new_programs": plan["new"],
            "reconciled_programs": plan["reconciled"],
            "deferred": why,
            **budget.metadata(),
            **spent.metadata(),
        }
    )


# --- memberships ----------------------------------------------------------------------------------------
def fold_memberships(lake: Lake) -> dict[str, Any]:
    """Fold everything that changed since the last run into `memberships` and `membership_retry`."""
    memberships = lake.keyed(MEMBERSHIPS, KEY)
    retry = lake.keyed(RETRY, KEY)
    meta = dict(memberships.meta)
    now = clock.now()
    synced = pa.scalar(now, TS)
    current = memberships.read_or_none()
    candidates: list[pa.Table] = []
    deletes: list[pa.Table] = []

    # 1. Program-member exports (snapshots) since our cursor; all of them on a first run.
    pm = lake.keyed(PROGRAM_MEMBERS, PM_KEY)
    pm_seen = int(meta.get("program_members_version", 0))
    pm_changes = pm.changes_since(pm_seen) if pm_seen else None
    pm_rows = pm_changes.upserts if pm_changes is not None else pm.read_or_none()
    if pm_rows is not None and pm_rows.num_rows:
        candidates.append(apply_snapshot(current, members_from_export(pm_rows)))
    if pm_changes is not None and pm_changes.deleted.num_rows:
        deletes.append(pm_changes.deleted.rename_columns(KEY))

    # 2. Status changes (104) in the activity days written since.
    days = lake.days(MARKETO_ACTIVITIES)
    written = days.written()
    seen = meta.get("activity_days_seen", {})
    changed_days = [d for d, stamp_ in written.items() if seen.get(d) != stamp_]
    acts = days.read_days(
        changed_days,
        ["marketoGUID", "leadId", "activityDate", "activityTypeId", "primaryAttributeValueId", "attributes"],
    )
    if acts is not None and acts.num_rows:
        # Events of deleted and merged-away leads never apply: re-reading a day must not bring a removed
        # membership back, and a merge moves the loser's memberships as they stood (step 3), not its events.
        deleted, losers, _ = lifecycle_maps(lake)
        removed = pa.concat_arrays([deleted, losers])
        if len(removed):
            acts = acts.filter(pc.invert(pc.fill_null(pc.is_in(acts["leadId"], value_set=removed), False)))
    events = events_from_activities(acts) if acts is not None else None
    if events is not None and events.num_rows:
        base = (
            pa.concat_tables([current, *candidates], promote_options="default")
            if current is not None
            else (candidates[0] if candidates else None)
        )
        candidates.append(apply_events(base, events, synced))

    # 3. Deletions and merges since.
    tomb = lake.keyed("person_tombstones", "id")
    merges = lake.keyed("person_merges", "loser_id")
    new_deleted = _new_keys(tomb, int(meta.get("tombstones_version", 0)), "id")
    merge_rows = _new_rows(merges, int(meta.get("merges_version", 0)))
    pool = (
        pa.concat_tables([t for t in [current, *candidates] if t is not None], promote_options="default")
        if current is not None or candidates
        else None
    )
    if pool is not None and pool.num_rows:
        if len(new_deleted):
            deletes.append(pool.filter(pc.is_in(pool["lead_id"], value_set=new_deleted)).select(KEY))
        if merge_rows is not None and merge_rows.num_rows:
            losers = merge_rows["loser_id"].combine_chunks()
            involved = pa.concat_arrays([losers, merge_rows["winner_id"].combine_chunks()])
            rows = pool.filter(pc.is_in(pool["lead_id"], value_set=involved))
            moved, gone = move_merged(
                rows,
                losers,
                merge_rows["winner_id"].combine_chunks(),
                merge_rows["merged_at"].combine_chunks(),
            )
            candidates.append(moved)
            deletes.append(gone)

    # 4. Renames since: existing rows carry the new name.
    programs = lake.read_current(PROGRAMS, ["id", "channel"]) or pa.table(
        {"id": pa.array([], pa.int64()), "channel": pa.array([], pa.string())}
    )
    channels = lake.read_current(CHANNELS) or pa.table(
        {
            "channel": pa.array([], pa.string()),
            "status_name": pa.array([], pa.string()),
            "step": pa.array([], pa.int64()),
            "success": pa.array([], pa.bool_()),
        }
    )
    history = lake.read_current(HISTORY)
    renames = (
        healing.rename_map(history, programs)
        if history is not None
        else healing.rename_map(
            pa.table(
                {
                    "change": pa.array([], pa.string()),
                    "channel": pa.array([], pa.string()),
                    "old_name": pa.array([], pa.string()),
                    "new_name": pa.array([], pa.string()),
                    "detected_at": pa.array([], TS),
                }
            ),
            programs,
        )
    )
    hist = lake.keyed(HISTORY, ["channel_id", "step", "detected_at"])
    new_history = _new_rows(hist, int(meta.get("history_version", 0)))
    if current is not None and new_history is not None and new_history.num_rows:
        fresh_renames = healing.rename_map(new_history, programs)
        candidates.append(rename(current, fresh_renames))

    # 5. Held rows are retried with everything else.
    held = retry.read_or_none()
    if held is not None and held.num_rows:
        candidates.append(held.select(MEMBER_SCHEMA.names))
    pending = (
        pa.concat_tables([t.select(MEMBER_SCHEMA.names).cast(MEMBER_SCHEMA) for t in candidates])
        if candidates
        else MEMBER_SCHEMA.empty_table()
    )
    if deletes and pending.num_rows:
        gone_keys = pa.concat_tables([d.cast(pa.schema([(k, pa.int64()) for k in KEY])) for d in deletes])
        pending = pending.join(gone_keys, KEY, join_type="left anti")
    pending = _latest(pending)
    outcome = healing.resolve(pending, healing.status_lookup(programs, channels), renames, held, synced)
    delete_keys = (
        pa.concat_tables([d.cast(pa.schema([(k, pa.int64()) for k in KEY])) for d in deletes])
        if deletes
        else None
    )
    complete = _complete_through(lake)
    cursors = {
        "program_members_version": pm.version,
        "activity_days_seen": written,
        "tombstones_version": tomb.version,
        "merges_version": merges.version,
        "history_version": hist.version,
        "complete_through": complete.isoformat() if complete else None,
    }
    manifest = memberships.commit(
        outcome.resolved,
        delete_keys if delete_keys is not None and delete_keys.num_rows else None,
        meta=cursors,
    )
    held_delete = (
        pa.concat_tables([outcome.released, *([delete_keys] if delete_keys is not None else [])])
        if outcome.released.num_rows or delete_keys is not None
        else None
    )
    retry_manifest = retry.commit(
        outcome.held, held_delete if held_delete is not None and held_delete.num_rows else None
    )
    return {
        "rows": manifest.rows,
        "held": retry_manifest.rows,
        "upserted": outcome.resolved.num_rows,
        "events": events.num_rows if events is not None else 0,
        "complete_through": complete,
        "held_table": retry.read_or_none(),
    }


def _latest(rows: pa.Table) -> pa.Table:
    if rows.num_rows == 0:
        return rows
    ordered = rows.append_column("__order", pa.array(range(rows.num_rows), pa.int64()))
    ordered = ordered.sort_by(
        [*((k, "ascending") for k in KEY), ("updated_at", "ascending"), ("__order", "ascending")]
    )
    return dedupe_latest(ordered, KEY, "__order").drop_columns(["__order"])


def _new_keys(keyed: Any, seen: int, column: str) -> pa.Array:
    rows = _new_rows(keyed, seen)
    if rows is None or rows.num_rows == 0:
        return pa.array([], pa.int64())
    return rows[column].combine_chunks().cast(pa.int64())


def _new_rows(keyed: Any, seen: int) -> pa.Table | None:
    changes = keyed.changes_since(seen) if seen else None
    return changes.upserts if changes is not None else keyed.read_or_none()


def _complete_through(lake: Lake) -> Any:
    from molequle_dagster.assets.activities import activities_complete_through

    marks = [activities_complete_through(lake)]
    marks += [
        lake.keyed(t, k).meta.get("complete_through")
        for t, k in (("person_tombstones", "id"), ("person_merges", "loser_id"))
    ]
    marks += [lake.keyed(CHANNELS, ["channel_id", "step"]).meta.get("complete_through")]
    marks += [lake.keyed(PROGRAMS, "id").meta.get("complete_through")]  # a new program's statuses resolve
    return oldest_mark(*marks)


def held_summary(held: pa.Table | None) -> list[dict[str, Any]]:
    if held is None or held.num_rows == 0:
        return []
    grouped = held.group_by(["program_id", "status_name"]).aggregate([("lead_id", "count")])
    return [
        {"program_id": r["program_id"], "status": r["status_name"], "memberships": r["lead_id_count"]}
        for r in grouped.to_pylist()
    ]


@dg.multi_asset(
    name="fold_memberships",
    group_name=MOLEQULE_GROUP,
    specs=[
        dg.AssetSpec(
            MEMBERSHIPS,
            description="Program memberships keyed by (program_id, lead_id), status by name, with the "
            "channel's "
            "step and success.",
            deps=[
                PROGRAM_MEMBERS,
                MARKETO_ACTIVITIES,
                PROGRAMS,
                CHANNELS,
                HISTORY,
                "person_tombstones",
                "person_merges",
            ],
            kinds={"parquet", "pyarrow"},
            owners=OWNERS,
            metadata=schema_metadata(healing.MEMBERSHIP_SCHEMA, MEMBERSHIP_COLUMNS),
        ),
        dg.AssetSpec(
            RETRY,
            description="Memberships held because their status name is not (yet) among the channel's "
            "statuses "
            "(e.g. just renamed); retried every run, released when they resolve.",
            deps=[PROGRAMS, CHANNELS, HISTORY],
            kinds={"parquet"},
            owners=OWNERS,
            metadata=schema_metadata(healing.RETRY_SCHEMA),
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "no_held_memberships",
            asset=MEMBERSHIPS,
            description="Warns while memberships wait for a status name to resolve.",
        ),
        data_fresh_spec(MEMBERSHIPS),
    ],
)
def fold_memberships_step(context: dg.AssetExecutionContext, lake: LakeResource):
    """Fold status changes, program-member exports, deletions, merges and renames into memberships."""
    outcome = fold_memberships(lake.lake)
    complete = outcome.pop("complete_through")
    held = outcome.pop("held_table")
    yield dg.MaterializeResult(
        asset_key=MEMBERSHIPS,
        metadata={
            "dagster/row_count": outcome["rows"],
            "held": outcome["held"],
            "upserted": outcome["upserted"],
            "status_events": outcome["events"],
            **data_age_metadata(complete),
        },
    )
    yield dg.MaterializeResult(asset_key=RETRY, metadata={"dagster/row_count": outcome["held"]})
    yield dg.AssetCheckResult(
        check_name="no_held_memberships",
        asset_key=MEMBERSHIPS,
        passed=outcome["held"] == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "held": outcome["held"],
            "by_program_and_status": dg.MetadataValue.json(held_summary(held)),
        },
    )
    yield data_fresh_check(complete, asset_key=MEMBERSHIPS)
