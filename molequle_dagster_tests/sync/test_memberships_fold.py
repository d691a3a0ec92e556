"""The membership fold, alone: status events (newest wins, joining sets the membership date, success is
sticky), export snapshots, and merges that move memberships as Marketo does."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa

from molequle_dagster.arrow_ops import TS
from molequle_dagster.sync.memberships_fold import (
    MEMBER_SCHEMA,
    apply_events,
    events_from_activities,
    move_merged,
)

SYNCED = pa.scalar(datetime(2026, 11, 9, tzinfo=UTC), TS)


def at(day: int) -> datetime:
    return datetime(2026, 11, day, tzinfo=UTC)


def activity(guid: str, lead: int, program: int, new: str, day: int, success: bool = False) -> dict:
    return {
        "marketoGUID": guid,
        "leadId": lead,
        "activityDate": at(day),
        "activityTypeId": 104,
        "primaryAttributeValueId": str(program),
        "attributes": json.dumps({"New Status": new, "Success": success, "Acquired By": False}),
    }


def activities(*rows: dict) -> pa.Table:
    schema = pa.schema(
        [
            ("marketoGUID", pa.string()),
            ("leadId", pa.int64()),
            ("activityDate", TS),
            ("activityTypeId", pa.int32()),
            ("primaryAttributeValueId", pa.string()),
            ("attributes", pa.string()),
        ]
    )
    return pa.Table.from_pylist(list(rows), schema)


def test_the_newest_event_wins_and_joining_and_success_are_remembered() -> None:
    events = events_from_activities(
        activities(
            activity("1", 7, 10, "Registered", 1),
            activity("2", 7, 10, "Attended", 3, success=True),
            activity("3", 7, 10, "Follow-up", 4),
            activity("4", 8, 10, "Registered", 2),
        )
    )
    rows = {r["lead_id"]: r for r in apply_events(None, events, SYNCED).to_pylist()}
    assert rows[7]["status_name"] == "Follow-up" and rows[7]["reached_success"] is True
    assert rows[7]["membership_date"] == at(1)  # joined at the first event
    assert rows[8]["status_name"] == "Registered"
    current = apply_events(None, events, SYNCED)
    older = events_from_activities(activities(activity("5", 8, 10, "Invited", 1)))
    assert apply_events(current, older, SYNCED).num_rows == 0  # older than our row: no change


def test_a_merge_moves_the_losers_memberships_unless_the_winner_is_a_member() -> None:
    rows = pa.Table.from_pylist(
        [
            {"program_id": 10, "lead_id": 1, "status_name": "Attended", "updated_at": at(1)},  # loser
            {"program_id": 11, "lead_id": 1, "status_name": "Sent", "updated_at": at(1)},  # loser
            {"program_id": 11, "lead_id": 2, "status_name": "Opened", "updated_at": at(1)},  # winner
        ],
        MEMBER_SCHEMA,
    )
    moved, gone = move_merged(
        rows, pa.array([1], pa.int64()), pa.array([2], pa.int64()), pa.array([at(5)], TS)
    )
    assert {(r["program_id"], r["lead_id"], r["status_name"]) for r in moved.to_pylist()} == {
        (10, 2, "Attended")
    }
    assert moved["updated_at"].to_pylist() == [at(5)]
    assert sorted((r["program_id"], r["lead_id"]) for r in gone.to_pylist()) == [(10, 1), (11, 1)]
