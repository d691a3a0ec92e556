"""Programs, program types (channels) with their statuses, and memberships that heal after status renames.

Memberships are keyed by (program id, lead id) and carry the status by **name** (as Marketo's program
member export does), joined with the program's channel statuses (step, success). After a status is renamed
in Marketo, a membership's name may for a while not be among its channel's statuses — our channel snapshot
or our membership rows are older than the rename. Such memberships are never dropped and never fail the
sync: they are held in `membership_retry` with the reason, their programs are re-exported on the next tick
(after channels refreshed), and they are released as soon as the name resolves. An asset check warns while
any are held, naming the programs and statuses.

Per tick only the programs whose memberships changed are exported: those with Change Status in Progression
activities (type 104) since the last tick, new programs, and programs with held memberships — up to 10
programs per bulk job (Marketo's limit), never every program on every tick.
"""

from datetime import timedelta
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.assets.common import (
    BULK_POOL,
    MARKETO_POOL,
    MARKETO_RETRY,
    MOLEQULE_GROUP,
    OWNERS,
    SYNCED_AT,
    accounting,
    fetched_from_marketo,
    iso,
    or_empty,
    run_scope,
    schema_metadata,
    stamp,
    utcnow,
)
from molequle_dagster.assets.people import lifecycle_since, save_lifecycle_mark
from molequle_dagster.marketo.timeutil import parse_marketo_datetime as _parse
from molequle_dagster.resources import LakeResource, MarketoResource
from molequle_dagster.settings import MolequleSettings

CHANNELS_TABLE = "channels"
CHANNEL_HISTORY_TABLE = "channel_status_history"
PROGRAMS_TABLE = "programs"
MEMBERSHIPS_TABLE = "memberships"
RETRY_TABLE = "membership_retry"
PROGRAM_STATUS_CHANGE = 104
PROGRAMS_PER_EXPORT = 10  # Marketo: filter.programIds takes at most 10
TS = pa.timestamp("s", tz="UTC")

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
PM_FIELDS = ["leadId", "statusName", "membershipDate", "reachedSuccess", "acquiredBy", "updatedAt"]
PM_CSV_SCHEMA = pa.schema(
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
MEMBERSHIP_SCHEMA = pa.schema(
    [
        ("program_id", pa.int64()),
        ("lead_id", pa.int64()),
        ("status_name", pa.string()),
        ("membership_date", TS),
        ("reached_success", pa.bool_()),
        ("acquired_by", pa.bool_()),
        ("updated_at", TS),
        ("channel", pa.string()),
        ("step", pa.int64()),
        ("success", pa.bool_()),
        (SYNCED_AT, TS),
    ]
)
RETRY_SCHEMA = MEMBERSHIP_SCHEMA.append(pa.field("reason", pa.string())).append(pa.field("held_since", TS))


def build_program_assets(settings: MolequleSettings) -> list[Any]:
    @dg.asset(
        name="marketo_channels",
        **fetched_from_marketo(MARKETO_POOL),
        metadata=schema_metadata(CHANNEL_SCHEMA),
    )
    def marketo_channels(marketo: MarketoResource, lake: LakeResource) -> dg.MaterializeResult:
        """Program types (channels) with their progression statuses, plus a history of status changes
        and renames (a status whose step stayed but whose name changed is a rename)."""
        store = lake.lake
        now = utcnow()
        with accounting(marketo.client, lake.lake) as spent:
            channels = list(marketo.client.channels())
        table = stamp(_channel_rows(channels), now)
        previous = store.read_current(CHANNELS_TABLE)
        changes = _status_changes(previous, table, now)
        history = store.read_current(CHANNEL_HISTORY_TABLE)
        if changes.num_rows:
            history = pa.concat_tables([history, changes]) if history is not None else changes
            store.write_current(CHANNEL_HISTORY_TABLE, history)
        elif history is None:
            store.write_current(CHANNEL_HISTORY_TABLE, HISTORY_SCHEMA.empty_table())
        store.write_current(CHANNELS_TABLE, table)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": table.num_rows,
                "channels": len(channels),
                "status_changes": changes.num_rows,
                "renames": dg.MetadataValue.json(
                    [
                        f"{r['channel']}: {r['old_name']} → {r['new_name']}"
                        for r in changes.to_pylist()
                        if r["change"] == "renamed"
                    ]
                ),
                **spent.metadata(),
            }
        )

    @dg.asset(
        name="marketo_programs",
        **fetched_from_marketo(MARKETO_POOL),
        deps=[marketo_channels],
        metadata=schema_metadata(PROGRAM_SCHEMA),
    )
    def marketo_programs(marketo: MarketoResource, lake: LakeResource) -> dg.MaterializeResult:
        """Programs (Asset API browse), incrementally by `earliestUpdatedAt` since the last run."""
        store = lake.lake
        now = utcnow()
        state = store.read_state("programs")
        since = state.get("since")
        with accounting(marketo.client, lake.lake) as spent:
            if since:
                rows = list(marketo.client.programs(earliest_updated_at=_parse(since), latest_updated_at=now))
            else:
                rows = list(marketo.client.programs())
        fetched = stamp(_program_rows(rows), now)
        existing = store.read_current(PROGRAMS_TABLE)
        if existing is not None:
            keep = existing.filter(pc.invert(pc.is_in(existing.column("id"), value_set=fetched.column("id"))))
            table = pa.concat_tables([keep, fetched.cast(keep.schema)])
        else:
            table = fetched
        table = table.sort_by("id")
        store.write_current(PROGRAMS_TABLE, table)
        new_ids = sorted(set(fetched.column("id").to_pylist()))
        store.write_state("programs", {"since": iso(now), "changed": new_ids})
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": table.num_rows,
                "fetched": len(rows),
                "since": since or "",
                **spent.metadata(),
            }
        )

    @dg.multi_asset(
        name="marketo_memberships",
        group_name=MOLEQULE_GROUP,
        pool=BULK_POOL,
        retry_policy=MARKETO_RETRY,
        specs=[
            dg.AssetSpec(
                MEMBERSHIPS_TABLE,
                description="Program memberships keyed by (program_id, lead_id), status by name, joined with "
                "the channel's statuses (step, success).",
                deps=[marketo_programs, marketo_channels, "people"],
                kinds={"marketo", "parquet"},
                owners=OWNERS,
                metadata=schema_metadata(MEMBERSHIP_SCHEMA),
                freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=30)),
            ),
            dg.AssetSpec(
                RETRY_TABLE,
                description="Memberships held because their status name is not (yet) among the channel's "
                "statuses (e.g. just renamed); retried every tick, released when they resolve.",
                deps=[marketo_programs, marketo_channels],
                kinds={"parquet"},
                owners=OWNERS,
                metadata=schema_metadata(RETRY_SCHEMA),
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                "no_held_memberships",
                asset=MEMBERSHIPS_TABLE,
                blocking=False,
                description="Warns while memberships wait for a status name to resolve.",
            ),
        ],
    )
    def marketo_memberships(context: dg.AssetExecutionContext, marketo: MarketoResource, lake: LakeResource):
        """Memberships of programs whose members changed since the last tick, via bulk program-member
        exports (≤ 10 programs per job); rows whose status name does not resolve are held, not dropped."""
        store = lake.lake
        client = marketo.client
        now = utcnow()
        state = store.read_state("memberships")
        channels = or_empty(store.read_current(CHANNELS_TABLE), CHANNEL_SCHEMA)
        programs = or_empty(store.read_current(PROGRAMS_TABLE), PROGRAM_SCHEMA)
        current = store.read_current(MEMBERSHIPS_TABLE)
        held = store.read_current(RETRY_TABLE)
        since = state.get("since")
        tombstones, merges, mark = lifecycle_since(store, "memberships")
        with accounting(client, lake.lake) as spent:
            to_export = _programs_to_export(client, programs, current, held, channels, since, store)
            # Marketo removes deleted leads' memberships and folds merged ones into the winner.
            to_export = sorted(
                set(to_export)
                | _programs_of_leads(
                    current,
                    pa.concat_arrays(
                        [tombstones.column("id").combine_chunks(), merges.column("loser_id").combine_chunks()]
                    ),
                )
            )
            requests = [
                {"fields": PM_FIELDS, "filter": {"programIds": to_export[i : i + PROGRAMS_PER_EXPORT]}}
                for i in range(0, len(to_export), PROGRAMS_PER_EXPORT)
            ]
            exported = [
                pa.Table.from_batches([b]) if b.num_rows else None
                for _i, result in client.bulk_export_many(
                    "program/members", requests, schema=PM_CSV_SCHEMA, reuse_scope=run_scope(context)
                )
                for b in result.batches()
            ]
        fresh = _membership_rows([t for t in exported if t is not None], now)
        # Replace the re-exported programs wholesale: that also removes members who left.
        pending = _combine(
            _without_programs(current, to_export),
            _without_programs(_strip_retry(held), to_export),
            fresh,
        )
        resolved, unresolved = _resolve(pending, channels, programs, held, now)
        store.write_current(MEMBERSHIPS_TABLE, resolved)
        store.write_current(RETRY_TABLE, unresolved)
        store.write_state("memberships", {"since": iso(now)})
        save_lifecycle_mark(store, "memberships", mark)
        common = {"exported_programs": len(to_export), "exports": len(requests), **spent.metadata()}
        yield dg.MaterializeResult(
            asset_key=MEMBERSHIPS_TABLE,
            metadata={"dagster/row_count": resolved.num_rows, "held": unresolved.num_rows, **common},
        )
        yield dg.MaterializeResult(asset_key=RETRY_TABLE, metadata={"dagster/row_count": unresolved.num_rows})
        yield dg.AssetCheckResult(
            check_name="no_held_memberships",
            asset_key=MEMBERSHIPS_TABLE,
            passed=unresolved.num_rows == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "held": unresolved.num_rows,
                "by_program_and_status": dg.MetadataValue.json(_held_summary(unresolved)),
            },
        )

    return [marketo_channels, marketo_programs, marketo_memberships]


# --- helpers -----------------------------------------------------------------------------------------


def _channel_rows(channels: list[dict[str, Any]]) -> pa.Table:
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
    schema = CHANNEL_SCHEMA.remove(CHANNEL_SCHEMA.get_field_index(SYNCED_AT))
    return pa.Table.from_pylist(rows, schema)


def _status_changes(previous: pa.Table | None, current: pa.Table, now: Any) -> pa.Table:
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


def _program_rows(rows: list[dict[str, Any]]) -> pa.Table:
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


def _programs_to_export(client, programs, current, held, channels, since, store) -> list[int]:
    """Programs whose memberships must be (re-)exported this tick."""
    all_ids = set(programs.column("id").to_pylist())
    if current is None:  # first sync: every program
        return sorted(all_ids)
    wanted: set[int] = set()
    known = set(pc.unique(current.column("program_id")).to_pylist())
    wanted |= set(store.read_state("programs").get("changed", [])) - known  # new programs
    if since:
        for activity in client.activities_since(_parse(since), [PROGRAM_STATUS_CHANGE]):
            pav = activity.get("primaryAttributeValueId")
            if pav is not None:
                wanted.add(int(pav))
    if held is not None and held.num_rows:
        wanted |= set(held.column("program_id").to_pylist())
    # Memberships whose status no longer resolves (the channel was renamed since): re-export their programs.
    stale = _unresolvable(current, channels, programs)
    wanted |= set(stale.column("program_id").to_pylist())
    return sorted(wanted & all_ids)


def _programs_of_leads(current: pa.Table | None, lead_ids: pa.Array) -> set[int]:
    if current is None or len(lead_ids) == 0:
        return set()
    rows = current.filter(pc.is_in(current.column("lead_id"), value_set=lead_ids))
    return set(pc.unique(rows.column("program_id")).to_pylist())


def _membership_rows(parts: list[pa.Table], now: Any) -> pa.Table:
    schema = MEMBERSHIP_SCHEMA
    if not parts:
        return schema.empty_table()
    raw = pa.concat_tables(parts)
    truthy = pa.array(["true", "1"])
    table = pa.table(
        {
            "program_id": raw.column("programId"),
            "lead_id": raw.column("leadId"),
            "status_name": raw.column("statusName"),
            "membership_date": raw.column("membershipDate"),
            "reached_success": pc.is_in(pc.utf8_lower(raw.column("reachedSuccess")), value_set=truthy),
            "acquired_by": pc.is_in(pc.utf8_lower(raw.column("acquiredBy")), value_set=truthy),
            "updated_at": raw.column("updatedAt"),
            "channel": pa.nulls(raw.num_rows, pa.string()),
            "step": pa.nulls(raw.num_rows, pa.int64()),
            "success": pa.nulls(raw.num_rows, pa.bool_()),
        }
    )
    return stamp(table, now).cast(schema)


def _without_programs(table: pa.Table | None, program_ids: list[int]) -> pa.Table | None:
    if table is None or not program_ids:
        return table
    return table.filter(
        pc.invert(pc.is_in(table.column("program_id"), value_set=pa.array(program_ids, pa.int64())))
    )


def _strip_retry(held: pa.Table | None) -> pa.Table | None:
    return held.select(MEMBERSHIP_SCHEMA.names) if held is not None else None


def _combine(*tables: pa.Table | None) -> pa.Table:
    parts = [t.select(MEMBERSHIP_SCHEMA.names).cast(MEMBERSHIP_SCHEMA) for t in tables if t is not None]
    return pa.concat_tables(parts) if parts else MEMBERSHIP_SCHEMA.empty_table()


def _lookup(channels: pa.Table, programs: pa.Table) -> pa.Table:
    """(program_id, status_name) → channel, step, success."""
    program_channel = programs.select(["id", "channel"]).rename_columns(["program_id", "channel"])
    statuses = channels.select(["channel", "status_name", "step", "success"])
    return program_channel.join(statuses, "channel", join_type="inner")


def _unresolvable(memberships: pa.Table, channels: pa.Table, programs: pa.Table) -> pa.Table:
    keys = memberships.select(["program_id", "status_name"])
    matched = keys.join(_lookup(channels, programs), ["program_id", "status_name"], join_type="left anti")
    return matched


def _resolve(pending: pa.Table, channels: pa.Table, programs: pa.Table, held: pa.Table | None, now: Any):
    base = pending.drop_columns(["channel", "step", "success"])
    joined = base.join(_lookup(channels, programs), ["program_id", "status_name"], join_type="left outer")
    joined = joined.select(MEMBERSHIP_SCHEMA.names).cast(MEMBERSHIP_SCHEMA)
    ok = pc.is_valid(joined.column("step"))
    resolved = joined.filter(ok).sort_by([("program_id", "ascending"), ("lead_id", "ascending")])
    unresolved = joined.filter(pc.invert(ok))
    program_channel = dict(
        zip(programs.column("id").to_pylist(), programs.column("channel").to_pylist(), strict=True)
    )
    reasons = [
        f"status {s!r} is not among the statuses of channel {program_channel.get(p)!r}"
        if p in program_channel
        else f"program {p} is unknown (not synced yet)"
        for p, s in zip(
            unresolved.column("program_id").to_pylist(),
            unresolved.column("status_name").to_pylist(),
            strict=True,
        )
    ]
    since = _held_since(unresolved, held, now)
    unresolved = unresolved.append_column("reason", pa.array(reasons, pa.string())).append_column(
        "held_since", since
    )
    return resolved, unresolved.sort_by([("program_id", "ascending"), ("lead_id", "ascending")])


def _held_since(unresolved: pa.Table, held: pa.Table | None, now: Any) -> pa.Array:
    first_seen: dict[tuple[int, int], Any] = {}
    if held is not None:
        for p, lead, t in zip(
            held.column("program_id").to_pylist(),
            held.column("lead_id").to_pylist(),
            held.column("held_since").to_pylist(),
            strict=True,
        ):
            first_seen[(p, lead)] = t
    values = [
        first_seen.get((p, lead), now)
        for p, lead in zip(
            unresolved.column("program_id").to_pylist(), unresolved.column("lead_id").to_pylist(), strict=True
        )
    ]
    return pa.array(values, TS)


def _held_summary(unresolved: pa.Table) -> list[dict[str, Any]]:
    if unresolved.num_rows == 0:
        return []
    grouped = unresolved.group_by(["program_id", "status_name"]).aggregate([("lead_id", "count")])
    return [
        {"program_id": r["program_id"], "status": r["status_name"], "memberships": r["lead_id_count"]}
        for r in grouped.to_pylist()
    ]
