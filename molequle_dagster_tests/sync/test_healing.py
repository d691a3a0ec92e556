"""Rename healing, alone: a status name resolves through the channel, old names are translated through
the renames seen, what still does not resolve is held with its reason and first-held time, and released
when it resolves."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from molequle_dagster.arrow_ops import TS
from molequle_dagster.sync import healing
from molequle_dagster.sync.memberships_fold import MEMBER_SCHEMA

NOW = pa.scalar(datetime(2026, 11, 5, tzinfo=UTC), TS)
BEFORE = datetime(2026, 11, 1, tzinfo=UTC)
PROGRAMS = pa.table({"id": pa.array([10, 11], pa.int64()), "channel": ["Webinar", "Email Blast"]})
CHANNELS = pa.table(
    {
        "channel": ["Webinar", "Webinar", "Webinar", "Email Blast"],
        "status_name": ["Not in Program", "Registered", "Attended (live)", "Sent"],
        "step": pa.array([0, 10, 20, 10], pa.int64()),
        "success": [False, False, True, False],
    }
)
HISTORY = pa.table(
    {
        "channel": ["Webinar", "Webinar"],
        "change": ["renamed", "renamed"],
        "old_name": ["Attended", "Attended now"],
        "new_name": ["Attended now", "Attended (live)"],
        "detected_at": pa.array([datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC)], TS),
    }
)


def members(rows: list[tuple[int, int, str]]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"program_id": p, "lead_id": lead, "status_name": s, "updated_at": BEFORE} for p, lead, s in rows],
        MEMBER_SCHEMA,
    )


def test_names_resolve_renames_chain_and_unknowns_are_held_with_a_reason() -> None:
    renames = healing.rename_map(HISTORY, PROGRAMS)
    assert {(r["program_id"], r["old_name"], r["new_name"]) for r in renames.to_pylist()} == {
        (10, "Attended", "Attended (live)"),
        (10, "Attended now", "Attended (live)"),
    }
    candidates = members([(10, 1, "Registered"), (10, 2, "Attended"), (10, 3, "Waitlisted"), (99, 4, "Sent")])
    outcome = healing.resolve(candidates, healing.status_lookup(PROGRAMS, CHANNELS), renames, None, NOW)
    resolved = {
        (r["lead_id"], r["status_name"], r["step"], r["success"]) for r in outcome.resolved.to_pylist()
    }
    assert resolved == {(1, "Registered", 10, False), (2, "Attended (live)", 20, True)}
    held = {r["lead_id"]: r["reason"] for r in outcome.held.to_pylist()}
    assert "not (yet) among the statuses" in held[3] and "program 99 is unknown" in held[4]
    assert outcome.released.num_rows == 0


def test_a_held_row_keeps_its_first_held_time_and_is_released_once_it_resolves() -> None:
    first = healing.resolve(
        members([(10, 3, "Waitlisted")]),
        healing.status_lookup(PROGRAMS, CHANNELS),
        healing.rename_map(HISTORY, PROGRAMS),
        None,
        NOW,
    )
    held = first.held
    later = pa.scalar(datetime(2026, 11, 6, tzinfo=UTC), TS)
    again = healing.resolve(
        members([(10, 3, "Waitlisted")]),
        healing.status_lookup(PROGRAMS, CHANNELS),
        healing.rename_map(HISTORY, PROGRAMS),
        held,
        later,
    )
    assert again.held["held_since"].to_pylist() == held["held_since"].to_pylist()  # first held, not now
    channels = pa.concat_tables(
        [
            CHANNELS,
            pa.table(
                {
                    "channel": ["Webinar"],
                    "status_name": ["Waitlisted"],
                    "step": pa.array([5], pa.int64()),
                    "success": [False],
                }
            ),
        ]
    )
    released = healing.resolve(
        members([(10, 3, "Waitlisted")]),
        healing.status_lookup(PROGRAMS, channels),
        healing.rename_map(HISTORY, PROGRAMS),
        held,
        later,
    )
    assert released.held.num_rows == 0 and released.released.to_pylist() == [{"program_id": 10, "lead_id": 3}]
