"""Activities: retention is reported, never a silent gap; types get their group."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from molequle_dagster.assets.activities import retention_notes
from molequle_dagster.settings import parse_settings
from molequle_dagster_tests.conftest import fast_settings_dict


def test_types_kept_shorter_than_the_history_are_named_with_their_first_day() -> None:
    settings = parse_settings(fast_settings_dict(sync__history_days=730))
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    report = retention_notes(settings, now, ["2025-01-01", "2025-01-02"])
    notes = report["notes"]
    assert "Email Sent available since 2026-08-30 (Marketo keeps 90 days)" in notes
    assert any(n.startswith("Web Page Visit available since 2026-08-30") for n in notes)
    assert not any(n.startswith("Email Open") for n in notes)  # kept 25 months
    assert report["types_truncated_in_this_run"]["Score Change"] == "2026-08-30"
    recent = retention_notes(settings, now, ["2026-11-01"])
    assert recent["types_truncated_in_this_run"] == {}


def test_short_history_needs_no_retention_notes() -> None:
    settings = parse_settings(fast_settings_dict(sync__history_days=62))
    assert retention_notes(settings, datetime.now(UTC), [])["notes"] == []


def test_every_configured_type_has_its_group() -> None:
    groups = parse_settings(fast_settings_dict()).activities.group_of()
    assert groups == {
        10: "email",
        11: "email",
        8: "email",
        27: "email",
        6: "email",
        7: "email",
        46: "moments",
        2: "forms",
        1: "web",
        3: "web",
        22: "scoring",
    }


def test_reconciliation_follows_merge_chains_then_drops_deleted_people(tmp_path) -> None:
    """A merged into B, B merged into C; D merged into E, then E deleted (Marketo deletes E's history,
    which by then holds D's activities too)."""
    from molequle_dagster.assets.activities import ACTIVITIES_TABLE, reconcile_activities
    from molequle_dagster.assets.people import MERGE_SCHEMA, MERGES_TABLE, TOMBSTONE_SCHEMA, TOMBSTONES_TABLE
    from molequle_dagster.lake import Lake

    lake = Lake(str(tmp_path))
    day = pa.table(
        {"marketoGUID": ["1", "2", "3", "4", "5"], "leadId": pa.array([10, 20, 30, 40, 99], pa.int64())}
    )
    lake.write_partition(ACTIVITIES_TABLE, "2026-11-01", day)
    at = datetime(2026, 11, 2, tzinfo=UTC)
    merges = pa.table(
        {"loser_id": [10, 20, 40], "winner_id": [20, 30, 50], "merged_at": [at] * 3, "recorded_at": [at] * 3},
        MERGE_SCHEMA,
    )
    tombstones = pa.table({"id": [50], "deleted_at": [at], "recorded_at": [at]}, TOMBSTONE_SCHEMA)
    lake.write_current(MERGES_TABLE, merges)
    lake.write_current(TOMBSTONES_TABLE, tombstones)
    result = reconcile_activities(lake, tombstones, merges)
    assert result.rewritten == ["2026-11-01"]
    rows = lake.read_partition(ACTIVITIES_TABLE, "2026-11-01").to_pylist()
    assert {(r["marketoGUID"], r["leadId"]) for r in rows} == {("1", 30), ("2", 30), ("3", 30), ("5", 99)}
    # nothing new since: the next run rewrites nothing
    assert reconcile_activities(lake, tombstones.slice(0, 0), merges.slice(0, 0)).rewritten == []


def test_a_type_added_after_the_first_sync_is_reported_with_its_start_day(tmp_path) -> None:
    from molequle_dagster.assets.activities import types_added_since_history
    from molequle_dagster.lake import Lake

    lake = Lake(str(tmp_path))
    first = datetime(2026, 11, 1, tzinfo=UTC)
    assert types_added_since_history(lake, [10, 11], first) == {}  # the baseline
    assert types_added_since_history(lake, [10, 11], first) == {}
    later = datetime(2026, 11, 20, tzinfo=UTC)
    assert types_added_since_history(lake, [10, 11, 46], later) == {46: "2026-11-20"}
    assert types_added_since_history(lake, [10, 11, 46], datetime(2026, 11, 21, tzinfo=UTC)) == {
        46: "2026-11-20"
    }
