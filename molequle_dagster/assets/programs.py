"""Programs and program types (channels) with their progression statuses, and the history of status changes.

* `marketo_channels` — one row per channel status (name, step, success), re-read each tick (one call;
  written only when something changed), and `channel_status_history`: every status added, removed,
  changed or renamed (a status whose step stayed but whose name changed is a rename). Renames feed the
  membership healing (`sync/healing.py`).
* `marketo_programs` — programs through the Asset API, incrementally by `earliestUpdatedAt`.
"""

from datetime import timedelta
from typing import Any

import dagster as dg
import pyarrow as pa

from molequle_dagster import clock
from molequle_dagster.arrow_ops import SYNCED_AT, TS, stamp
from molequle_dagster.conventions import (
    MARKETO_GROUP,
    MARKETO_POOL,
    MARKETO_RETRY,
    OWNERS,
    accounting,
    data_age_metadata,
    data_fresh_check,
    data_fresh_spec,
    marketo_step,
    parse_iso,
    schema_metadata,
)
from molequle_dagster.lake.keyed import changed_rows
from molequle_dagster.resources import LakeResource, MarketoResource, SettingsResource

CHANNELS = "marketo_channels"
HISTORY = "channel_status_history"
PROGRAMS = "marketo_programs"

CHANNEL_SCHEMA = pa.schema(
    [
        ("channel_id", pa.int64()),
        ("channel", pa.string()),
        ("applicable_program_type", pa.string()),
        ("status_name", pa.string()),
        ("step", pa.int64()),
        ("success", pa.bool_()),
        ("hidden", pa.bool_()),
        (SYNCED_AT, TS),
    ]
)
CHANNEL_COLUMNS = {
    "channel_id": "Marketo channel (program type) id",
    "channel": "channel name, as programs name it",
    "applicable_program_type": "the program type the channel applies to (Default, Event, Engagement, …)",
    "status_name": "a progression status of the channel",
    "hidden": "whether Marketo hides the status from new use (members may still hold it)",
    "step": "the status's position in the progression (0 = Not in Program)",
    "success": "whether reaching the status counts as the program's success",
}
HISTORY_SCHEMA = pa.schema(
    [
        ("channel_id", pa.int64()),
        ("channel", pa.string()),
        ("step", pa.int64()),
        ("change", pa.string()),  # added | removed | renamed | changed
        ("old_name", pa.string()),
        ("new_name", pa.string()),
        ("detected_at", TS),
    ]
)
PROGRAM_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("name", pa.string()),
        ("description", pa.string()),
        ("type", pa.string()),
        ("channel", pa.string()),
        ("status", pa.string()),
        ("workspace", pa.string()),
        ("folder_id", pa.int64()),
        ("createdAt", pa.string()),
        ("updatedAt", pa.string()),
        (SYNCED_AT, TS),
    ]
)
PROGRAM_COLUMNS = {
    "id": "Marketo program id",
    "name": "program name",
    "description": "program description",
    "status": "on/off for programs that run (Engagement, Email); empty for the others",
    "workspace": "the Marketo workspace holding the program",
    "folder_id": "id of the folder (or program) the program sits in",
    "type": "Default, Event, Event with Webinar, Engagement or Email",
    "channel": "the program's channel (program type), which defines its statuses",
    "createdAt": "as Marketo writes it (Asset API format)",
    "updatedAt": "as Marketo writes it (Asset API format)",
}


def channel_rows(channels: list[dict[str, Any]]) -> pa.Table:
    rows = [
        {
            "channel_id": int(c["id"]),
            "channel": c["name"],
            "applicable_program_type": c.get("applicableProgramType"),
            "status_name": s["name"],
            "step": int(s.get("step", 0)),
            "success": bool(s.get("success", False)),
            "hidden": bool(s.get("hidden", False)),
        }
        for c in channels
        for s in c.get("progressionStatuses") or []
    ]
    return pa.Table.from_pylist(rows, CHANNEL_SCHEMA.remove(CHANNEL_SCHEMA.get_field_index(SYNCED_AT)))


def status_changes(previous: pa.Table | None, current: pa.Table, now: Any) -> pa.Table:
    """Statuses added, removed, renamed (same step, new name) or changed (success/hidden) since `previous`."""
    if previous is None:
        return HISTORY_SCHEMA.empty_table()
    before = {(r["channel_id"], r["step"]): r for r in previous.to_pylist()}
    after = {(r["channel_id"], r["step"]): r for r in current.to_pylist()}
    changes = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old and new and old["status_name"] != new["status_name"]:
            kind = "renamed"
        elif old and new and (old["success"], old["hidden"]) != (new["success"], new["hidden"]):
            kind = "changed"
        elif old and not new:
            kind = "removed"
        elif new and not old:
            kind = "added"
        else:
            continue
        ref = new or old
        changes.append(
            {
                "channel_id": key[0],
                "channel": ref["channel"],
                "step": key[1],
                "change": kind,
                "old_name": old["status_name"] if old else None,
                "new_name": new["status_name"] if new else None,
                "detected_at": now,
            }
        )
    return pa.Table.from_pylist(changes, HISTORY_SCHEMA)


@dg.multi_asset(
    name="sync_channels",
    group_name=MARKETO_GROUP,
    pool=MARKETO_POOL,
    retry_policy=MARKETO_RETRY,
    specs=[
        dg.AssetSpec(
            CHANNELS,
            description="Program types (channels) with their progression statuses: one row per status.",
            kinds={"marketo", "parquet"},
            owners=OWNERS,
            metadata=schema_metadata(CHANNEL_SCHEMA, CHANNEL_COLUMNS),
        ),
        dg.AssetSpec(
            HISTORY,
            description="Every channel status added, removed, changed or renamed (same step, new name).",
            kinds={"parquet"},
            owners=OWNERS,
            metadata=schema_metadata(HISTORY_SCHEMA),
        ),
    ],
    check_specs=[data_fresh_spec(CHANNELS)],
)
def sync_channels(context: dg.AssetExecutionContext, marketo: MarketoResource, lake: LakeResource):
    """Re-read the channels (one call) and record what changed."""
    store = lake.lake
    now = clock.now()
    with accounting(marketo.client, context) as spent:
        fetched = list(marketo.client.channels())
    rows = channel_rows(fetched)
    channels = store.keyed(CHANNELS, ["channel_id", "step"])
    previous = channels.read_or_none()
    changes = status_changes(previous, rows, now)
    changed = changed_rows(previous, rows, ["channel_id", "step"], ignore=[SYNCED_AT])
    gone = None
    if previous is not None and previous.num_rows:
        gone = previous.select(["channel_id", "step"]).join(
            rows.select(["channel_id", "step"]), ["channel_id", "step"], join_type="left anti"
        )
    meta = {"complete_through": now.isoformat()}
    manifest = channels.commit(
        stamp(changed, now), gone if gone is not None and gone.num_rows else None, meta=meta
    )
    history = store.keyed(HISTORY, ["channel_id", "step", "detected_at"])
    history_manifest = history.commit(changes, meta=meta)
    renames = [
        f"{r['channel']}: {r['old_name']} → {r['new_name']}"
        for r in changes.to_pylist()
        if r["change"] == "renamed"
    ]
    yield dg.MaterializeResult(
        asset_key=CHANNELS,
        metadata={
            "dagster/row_count": manifest.rows,
            "channels": len(fetched),
            "status_changes": changes.num_rows,
            "renames": dg.MetadataValue.json(renames),
            **data_age_metadata(now, now),
            **spent.metadata(),
        },
    )
    yield dg.MaterializeResult(asset_key=HISTORY, metadata={"dagster/row_count": history_manifest.rows})
    yield data_fresh_check(now, now, asset_key=CHANNELS)


def program_rows(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "id": int(r["id"]),
                "name": r.get("name"),
                "description": r.get("description"),
                "type": r.get("type"),
                "channel": r.get("channel"),
                "status": r.get("status"),
                "workspace": r.get("workspace"),
                "folder_id": (r.get("folder") or {}).get("value"),
                "createdAt": r.get("createdAt"),
                "updatedAt": r.get("updatedAt"),
            }
            for r in rows
        ],
        PROGRAM_SCHEMA.remove(PROGRAM_SCHEMA.get_field_index(SYNCED_AT)),
    )


@dg.asset(
    name=PROGRAMS,
    **marketo_step(),
    deps=[CHANNELS],
    metadata=schema_metadata(PROGRAM_SCHEMA, PROGRAM_COLUMNS),
    check_specs=[data_fresh_spec(PROGRAMS)],
)
def marketo_programs(
    context: dg.AssetExecutionContext,
    marketo: MarketoResource,
    lake: LakeResource,
    settings: SettingsResource,
):
    """Programs (Asset API browse), incrementally: those created or updated since the last run."""
    store = lake.lake
    table = store.keyed(PROGRAMS, "id")
    now = clock.now()
    since = table.meta.get("read_through")
    late = timedelta(minutes=settings.settings.sync.late_minutes)
    with accounting(marketo.client, context) as spent:
        if since:
            fetched = list(
                marketo.client.programs(earliest_updated_at=parse_iso(since) - late, latest_updated_at=now)
            )
        else:
            fetched = list(marketo.client.programs())
    rows = program_rows(fetched)
    changed = changed_rows(table.read_or_none(), rows, ["id"], ignore=[SYNCED_AT])
    manifest = table.commit(
        stamp(changed, now), meta={"read_through": now.isoformat(), "complete_through": now.isoformat()}
    )
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": manifest.rows,
            "fetched": len(fetched),
            "changed": changed.num_rows,
            "since": since or "",
            **data_age_metadata(now, now),
            **spent.metadata(),
        }
    )
    yield data_fresh_check(now, now)


def programs_added_since(store: Any, version: int) -> pa.Array:
    """Program ids created since `version` of marketo_programs (all programs when the history is gone)."""
    table = store.keyed(PROGRAMS, "id")
    changes = table.changes_since(version) if version else None
    rows = changes.upserts if changes is not None else table.read_or_none(["id"])
    return rows["id"].combine_chunks() if rows is not None and rows.num_rows else pa.array([], pa.int64())
