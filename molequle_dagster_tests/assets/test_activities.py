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


def test_deletions_and_merges_apply_on_read_following_merge_chains(tmp_path) -> None:
    """A merged into B, B merged into C; D merged into E, then E deleted (Marketo deletes E's history,
    which by then holds D's activities too)."""
    from molequle_dagster.lake import Lake
    from molequle_dagster.sync import overlay

    lake = Lake(str(tmp_path))
    day = pa.table(
        {"marketoGUID": ["1", "2", "3", "4", "5"], "leadId": pa.array([10, 20, 30, 40, 99], pa.int64())}
    )
    losers, winners = overlay.final_winners(
        pa.array([10, 20, 40], pa.int64()), pa.array([20, 30, 50], pa.int64())
    )
    rows = overlay.apply(day, pa.array([50], pa.int64()), losers, winners).to_pylist()
    assert {(r["marketoGUID"], r["leadId"]) for r in rows} == {("1", 30), ("2", 30), ("3", 30), ("5", 99)}
    assert lake.uri  # the overlay needs no lake writes


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


def test_known_people_never_passes_with_nothing_to_check_against() -> None:
    """Issue 14 item 3: 0 unknown of 5,883 activities with no people table was reported as a pass."""
    from molequle_dagster.assets.activities import UNKNOWN_PERSON_THRESHOLD, known_people_check

    activities = pa.table({"leadId": pa.array(list(range(1, 101)), pa.int64())})
    no_people = known_people_check(activities, None)
    assert not no_people.passed and "people table is not synced yet" in (no_people.description or "")
    no_activities = known_people_check(pa.table({"leadId": pa.array([], pa.int64())}), None)
    assert not no_activities.passed and "no activities" in (no_activities.description or "")
    some = int(100 * UNKNOWN_PERSON_THRESHOLD) + 1  # just past the threshold
    people = pa.table({"id": pa.array(list(range(some + 1, 101)), pa.int64())})
    behind = known_people_check(activities, people)
    assert not behind.passed and behind.metadata["unknown_person"].value == some
    assert known_people_check(activities, pa.table({"id": pa.array(list(range(1, 101)), pa.int64())})).passed
