"""Rename healing: memberships are keyed by status *name*, and a name that does not (yet) resolve is held,
never dropped, until it does.

A membership's status name resolves when it is one of its program's channel statuses (which gives the
step and success). It may not resolve for a while after a status is renamed in Marketo: an activity
logged before the rename carries the old name, or our channel snapshot predates a new status. Such rows
are first translated through the renames we saw (old → new, following chains); what still does not
resolve is held in `membership_retry` with the reason and the time it was first held, and retried every
run; it is released into `memberships` as soon as the name resolves.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.arrow_ops import TS, conform
from molequle_dagster.sync.memberships_fold import KEY, MEMBER_SCHEMA

MEMBERSHIP_SCHEMA = (
    MEMBER_SCHEMA.append(pa.field("channel", pa.string()))
    .append(pa.field("step", pa.int64()))
    .append(pa.field("success", pa.bool_()))
)
RETRY_SCHEMA = MEMBER_SCHEMA.append(pa.field("reason", pa.string())).append(pa.field("held_since", TS))


def status_lookup(programs: pa.Table, channels: pa.Table) -> pa.Table:
    """(program_id, status_name) → channel, step, success, from the programs' channels."""
    program_channel = programs.select(["id", "channel"]).rename_columns(["program_id", "channel"])
    statuses = channels.select(["channel", "status_name", "step", "success"])
    return program_channel.join(statuses, "channel", join_type="inner")


def rename_map(history: pa.Table, programs: pa.Table) -> pa.Table:
    """(program_id, old name) → current name, from the renames seen (chains followed: A→B, B→C gives A→C)."""
    renames = history.filter(pc.equal(history["change"], "renamed")).sort_by("detected_at")
    final: dict[tuple[str, str], str] = {}
    for channel, old, new in zip(
        renames["channel"].to_pylist(),
        renames["old_name"].to_pylist(),
        renames["new_name"].to_pylist(),
        strict=True,
    ):
        for key, target in list(final.items()):
            if key[0] == channel and target == old:
                final[key] = new
        final[(channel, old)] = new
    if not final:
        return pa.table(
            {
                "program_id": pa.array([], pa.int64()),
                "old_name": pa.array([], pa.string()),
                "new_name": pa.array([], pa.string()),
            }
        )
    by_channel = pa.table(
        {
            "channel": [k[0] for k in final],
            "old_name": [k[1] for k in final],
            "new_name": list(final.values()),
        }
    )
    program_channel = programs.select(["id", "channel"]).rename_columns(["program_id", "channel"])
    return program_channel.join(by_channel, "channel", join_type="inner").select(
        ["program_id", "old_name", "new_name"]
    )


@dataclass
class Resolution:
    resolved: pa.Table  # MEMBERSHIP_SCHEMA
    held: pa.Table  # RETRY_SCHEMA
    released: pa.Table  # keys of previously held rows that resolved (delete from the retry table)


def resolve(
    candidates: pa.Table, lookup: pa.Table, renames: pa.Table, held_before: pa.Table | None, now: pa.Scalar
) -> Resolution:
    """Split candidate rows into resolved ones (with channel, step, success) and held ones (with reason)."""
    rows = conform(candidates, MEMBER_SCHEMA)
    if rows.num_rows and renames.num_rows:
        mapped = rows.join(
            renames.rename_columns(["program_id", "status_name", "__new"]),
            ["program_id", "status_name"],
            join_type="left outer",
        )
        rows = conform(
            mapped.set_column(
                mapped.column_names.index("status_name"),
                "status_name",
                pc.coalesce(mapped["__new"], mapped["status_name"]),
            ),
            MEMBER_SCHEMA,
        )
    joined = rows.join(lookup, ["program_id", "status_name"], join_type="left outer")
    ok = pc.is_valid(joined["step"])
    resolved = conform(joined.filter(ok), MEMBERSHIP_SCHEMA)
    unresolved = joined.filter(pc.invert(ok))
    known_programs = set(lookup["program_id"].to_pylist())
    reasons = [
        f"status {s!r} is not (yet) among the statuses of program {p}'s channel"
        if p in known_programs
        else f"program {p} is unknown (not synced yet)"
        for p, s in zip(
            unresolved["program_id"].to_pylist(), unresolved["status_name"].to_pylist(), strict=True
        )
    ]
    since = _held_since(unresolved, held_before, now)
    held = conform(
        unresolved.append_column("reason", pa.array(reasons, pa.string())).append_column("held_since", since),
        RETRY_SCHEMA,
    )
    released = resolved.select(KEY)
    if held_before is not None and held_before.num_rows:
        released = released.join(held_before.select(KEY), KEY, join_type="left semi")
    else:
        released = released.slice(0, 0)
    return Resolution(resolved, held, released)


def _held_since(unresolved: pa.Table, held_before: pa.Table | None, now: pa.Scalar) -> pa.Array:
    if held_before is None or held_before.num_rows == 0 or unresolved.num_rows == 0:
        return pa.repeat(now, unresolved.num_rows).cast(TS)
    before = held_before.select([*KEY, "held_since"]).rename_columns([*KEY, "__since"])
    keyed = unresolved.select(KEY).append_column("__row", pa.array(range(unresolved.num_rows), pa.int64()))
    joined = keyed.join(before, KEY, join_type="left outer").sort_by("__row")
    return pc.coalesce(joined["__since"], pa.repeat(now, joined.num_rows).cast(TS)).combine_chunks()
