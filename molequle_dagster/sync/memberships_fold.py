"""Program memberships folded from what the sync already reads: Change Status in Progression activities
(104), program-member exports (new programs, the rolling reconciliation), deletions and merges.

Pure: Arrow in, Arrow out; the asset reads and commits. Keys are (program_id, lead_id). A change applies
when it is at least as new as our row (`updated_at`), so the order runs finish in does not matter and
re-applying the same day's events changes nothing.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.arrow_ops import SYNCED_AT, TS, conform, dedupe_latest
from molequle_dagster.sync.activity_rows import attributes_of

KEY = ["program_id", "lead_id"]
CHANGE_STATUS = 104
MEMBER_SCHEMA = pa.schema(
    [
        ("program_id", pa.int64()),
        ("lead_id", pa.int64()),
        ("status_name", pa.string()),
        ("membership_date", TS),
        ("reached_success", pa.bool_()),
        ("acquired_by", pa.bool_()),
        ("updated_at", TS),
        (SYNCED_AT, TS),
    ]
)
EVENT_SCHEMA = pa.schema(
    [
        ("program_id", pa.int64()),
        ("lead_id", pa.int64()),
        ("status_name", pa.string()),
        ("success", pa.bool_()),
        ("acquired_by", pa.bool_()),
        ("at", TS),
        ("guid", pa.string()),
    ]
)
PM_EXPORT_SCHEMA = pa.schema(
    [
        ("programId", pa.int64()),
        ("leadId", pa.int64()),
        ("statusName", pa.string()),
        ("membershipDate", TS),
        ("reachedSuccess", pa.string()),  # true/false or 0/1 depending on the instance [UNCONFIRMED]
        ("acquiredBy", pa.string()),
        ("updatedAt", TS),
    ]
)


def _bool(value: object) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1")


def events_from_activities(activities: pa.Table) -> pa.Table:
    """Status changes from 104 activity rows (program = primaryAttributeValueId)."""
    rows = activities.filter(pc.equal(activities["activityTypeId"].cast(pa.int32()), CHANGE_STATUS))
    if rows.num_rows == 0:
        return EVENT_SCHEMA.empty_table()
    attributes = attributes_of(rows["attributes"].to_pylist())
    return pa.table(
        {
            "program_id": pc.cast(rows["primaryAttributeValueId"], pa.int64()),
            "lead_id": rows["leadId"].cast(pa.int64()),
            "status_name": pa.array([a.get("New Status") for a in attributes], pa.string()),
            "success": pa.array([_bool(a.get("Success")) for a in attributes], pa.bool_()),
            "acquired_by": pa.array([_bool(a.get("Acquired By")) for a in attributes], pa.bool_()),
            "at": rows["activityDate"].cast(TS),
            "guid": rows["marketoGUID"].cast(pa.string()),
        },
        schema=EVENT_SCHEMA,
    )


def members_from_export(rows: pa.Table, synced_at: pa.Scalar | None = None) -> pa.Table:
    """Program-member export rows (Marketo's names) in the membership layout."""
    truthy = pa.array(["true", "1"])
    table = pa.table(
        {
            "program_id": rows["programId"].cast(pa.int64()),
            "lead_id": rows["leadId"].cast(pa.int64()),
            "status_name": rows["statusName"].cast(pa.string()),
            "membership_date": rows["membershipDate"].cast(TS),
            "reached_success": pc.is_in(
                pc.utf8_lower(rows["reachedSuccess"].cast(pa.string())), value_set=truthy
            ),
            "acquired_by": pc.is_in(pc.utf8_lower(rows["acquiredBy"].cast(pa.string())), value_set=truthy),
            "updated_at": rows["updatedAt"].cast(TS),
            SYNCED_AT: rows[SYNCED_AT].cast(TS)
            if SYNCED_AT in rows.column_names
            else pa.nulls(rows.num_rows, TS),
        }
    )
    return conform(table, MEMBER_SCHEMA)


def _newer(candidates: pa.Table, current: pa.Table | None) -> pa.Table:
    """Candidates (one per key) that are new keys or at least as new as our row."""
    if current is None or current.num_rows == 0 or candidates.num_rows == 0:
        return candidates
    ours = current.select([*KEY, "updated_at"]).rename_columns([*KEY, "__ours"])
    joined = candidates.join(ours, KEY, join_type="left outer")
    keep = pc.or_(
        pc.is_null(joined["__ours"]),
        pc.fill_null(pc.greater_equal(joined["updated_at"], joined["__ours"]), True),
    )
    return joined.filter(keep).drop_columns(["__ours"])


def apply_events(current: pa.Table | None, events: pa.Table, synced_at: pa.Scalar) -> pa.Table:
    """The membership rows the newest event per key produces (a joining member starts at the event)."""
    if events.num_rows == 0:
        return MEMBER_SCHEMA.empty_table()
    ordered = events.sort_by(
        [("program_id", "ascending"), ("lead_id", "ascending"), ("at", "ascending"), ("guid", "ascending")]
    )
    latest = dedupe_latest(
        ordered.append_column("__order", pa.array(range(ordered.num_rows), pa.int64())), KEY, "__order"
    ).drop_columns(["__order"])
    grouped = events.group_by(KEY).aggregate([("success", "max"), ("at", "min")])
    ever_success = pa.table(
        {
            **{k: grouped[k] for k in KEY},
            "__any_success": grouped["success_max"],
            "__first_at": grouped["at_min"],
        }
    )
    latest = latest.join(ever_success, KEY, join_type="left outer")
    if current is not None and current.num_rows:
        ours = current.select([*KEY, "membership_date", "reached_success", "acquired_by", "updated_at"])
        ours = ours.rename_columns([*KEY, "__date", "__reached", "__acquired", "__updated"])
        latest = latest.join(ours, KEY, join_type="left outer")
    else:
        for name, type_ in (
            ("__date", TS),
            ("__reached", pa.bool_()),
            ("__acquired", pa.bool_()),
            ("__updated", TS),
        ):
            latest = latest.append_column(name, pa.nulls(latest.num_rows, type_))
    newer = pc.or_(
        pc.is_null(latest["__updated"]),
        pc.fill_null(pc.greater_equal(latest["at"], latest["__updated"]), True),
    )
    latest = latest.filter(newer)
    rows = pa.table(
        {
            "program_id": latest["program_id"],
            "lead_id": latest["lead_id"],
            "status_name": latest["status_name"],
            "membership_date": pc.coalesce(latest["__date"], latest["__first_at"]),
            "reached_success": pc.or_(
                pc.fill_null(latest["__reached"], False), pc.fill_null(latest["__any_success"], False)
            ),
            "acquired_by": pc.coalesce(latest["__acquired"], latest["acquired_by"]),
            "updated_at": latest["at"],
            SYNCED_AT: pa.repeat(synced_at, latest.num_rows).cast(TS),
        }
    )
    return conform(rows, MEMBER_SCHEMA)


def apply_snapshot(current: pa.Table | None, exported: pa.Table) -> pa.Table:
    """Exported member rows that are at least as new as ours (an export is a snapshot of the program)."""
    return conform(_newer(dedupe_latest(exported, KEY, "updated_at"), current), MEMBER_SCHEMA)


def move_merged(
    rows: pa.Table, losers: pa.Array, winners: pa.Array, merged_at: pa.Array
) -> tuple[pa.Table, pa.Table]:
    """Marketo moves a merged-away lead's memberships to the winner unless the winner is already a member
    of that program. `rows` holds every membership of the losers and winners. Returns (upserts, deletes)."""
    if rows.num_rows == 0 or len(losers) == 0:
        return MEMBER_SCHEMA.empty_table(), pa.table({k: pa.array([], pa.int64()) for k in KEY})
    index = pc.index_in(rows["lead_id"], value_set=losers)
    of_loser = rows.filter(pc.is_valid(index))
    loser_index = pc.index_in(of_loser["lead_id"], value_set=losers)
    target = pc.take(winners, loser_index)
    moved = of_loser.set_column(of_loser.column_names.index("lead_id"), "lead_id", target)
    moved = moved.set_column(
        moved.column_names.index("updated_at"), "updated_at", pc.take(merged_at, loser_index).cast(TS)
    )
    winner_keys = rows.filter(pc.invert(pc.is_valid(index))).select(KEY)
    moved = moved.join(winner_keys, KEY, join_type="left anti") if winner_keys.num_rows else moved
    moved = dedupe_latest(moved, KEY, "updated_at")
    return conform(moved, MEMBER_SCHEMA), of_loser.select(KEY)


def rename(rows: pa.Table, renames: pa.Table) -> pa.Table:
    """Rows whose status was renamed since (renames: program_id, old_name, new_name), with the new name."""
    if rows.num_rows == 0 or renames.num_rows == 0:
        return MEMBER_SCHEMA.empty_table()
    joined = rows.join(
        renames.rename_columns(["program_id", "status_name", "__new"]),
        ["program_id", "status_name"],
        join_type="inner",
    )
    renamed = joined.set_column(joined.column_names.index("status_name"), "status_name", joined["__new"])
    return conform(renamed.drop_columns(["__new"]), MEMBER_SCHEMA)
