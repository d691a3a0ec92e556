"""The sync end to end against the sandbox over real HTTP: the lake must equal Marketo's ground truth after
the initial sync, after churn and a tick, and the cost of ticks and backfills is bounded and asserted.

The tests in this module run in order on one synced environment (module-scoped fixture).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pyarrow.compute as pc
import pytest

from molequle_dagster.sandbox import truth
from molequle_dagster.sync_runner import run_sync
from molequle_dagster_tests.truth_assertions import (
    TICK_CHURN,
    assert_accounts_match_truth,
    assert_activities_match_truth,
    assert_memberships_match_truth,
    assert_people_match_truth,
)


@pytest.fixture(scope="module")
def initial(sync_env):
    started = datetime.now(UTC).replace(microsecond=0)
    report = run_sync(sync_env.defs, sync_env.instance)
    assert report.success, report.failures
    assert report.kind == "initial"
    return started


def test_initial_sync_equals_ground_truth(sync_env, initial) -> None:
    today = initial.replace(hour=0, minute=0, second=0)
    assert_people_match_truth(sync_env.lake, sync_env.control.state, today)
    assert_activities_match_truth(sync_env.lake, sync_env.control.state, datetime.now(UTC))
    assert_memberships_match_truth(sync_env.lake, sync_env.control.state)
    accounts = sync_env.lake.read_current("accounts")
    companies = sync_env.control.state.companies
    assert set(accounts.filter(pc.equal(accounts["source"], "company"))["account_id"].to_pylist()) <= {
        f"company:{i}" for i in companies["id"].to_pylist()
    }
    assert sync_env.lake.read_current("unified_people").num_rows > 0
    # 62 days of history is within every type's retention: nothing to report
    from molequle_dagster.conventions import step_totals

    event = sync_env.instance.get_latest_materialization_event(dg.AssetKey("marketo_activities"))
    run = sync_env.instance.get_run_by_id(event.run_id)
    assert step_totals(run)["marketo_activities"]["retention"]["notes"] == []


MAIN_TABLES = ("people", "accounts", "activities", "memberships", "marketo_programs", "marketo_channels",
               "unified_people", "person_unified_links", "unified_accounts", "account_unified_links")


@pytest.mark.parametrize("table", MAIN_TABLES)
def test_main_tables_describe_every_column_in_the_ui(sync_env, initial, table) -> None:
    """The UI shows a materialization's column schema, else the one declared on the asset."""
    key = dg.AssetKey(table)
    event = sync_env.instance.get_latest_materialization_event(key)
    assert event is not None, f"{table} was never materialized"
    declared = sync_env.defs.resolve_assets_def(key).specs_by_key[key].metadata
    materialized = event.asset_materialization.metadata.get("dagster/column_schema")
    schema = materialized.schema if materialized is not None else declared["dagster/column_schema"]
    undescribed = [c.name for c in schema.columns if not c.description]
    assert schema.columns and not undescribed, f"{table}: columns without a description: {undescribed}"


def test_tick_after_churn_equals_ground_truth(sync_env, initial) -> None:
    control = sync_env.control
    state = control.state
    before_ids = set(state.people["id"].to_pylist())
    report = control.apply_churn(TICK_CHURN, seed=7)
    assert report.email_changed_ids and report.merges and report.deleted_lead_ids
    people_table = sync_env.lake.keyed("people", "id")
    people_version, people_rows = people_table.version, people_table.manifest().rows
    exports_before = {j["exportId"] for j in control.export_jobs()}
    control.reset_counters()
    result = run_sync(sync_env.defs, sync_env.instance)
    assert result.success, result.failures
    assert result.kind == "tick"
    # Cost follows change: no program-member export (status changes and the new program's members come
    # from the activity feed); the people table gets a delta of the changed people, not a rewrite.
    counts = control.call_counts()
    pm_exports = [j for j in control.export_jobs()
                  if j["exportId"] not in exports_before and j["entity"] == "program/members"]
    assert pm_exports == [] and report.status_changes and report.new_program_ids
    assert sum(n for k, n in counts.items() if "/export/create.json" in k) <= 1, counts  # people, if any
    changes = people_table.changes_since(people_version)
    touched = report.counts()
    bound = sum(touched[k] for k in ("new_people", "attribute_updates", "email_changes", "merged_away",
                                     "deletions")) + len(report.merges)
    assert 0 < changes.upserts.num_rows + changes.deleted.num_rows <= bound < people_rows
    today = initial.replace(hour=0, minute=0, second=0)
    people = assert_people_match_truth(sync_env.lake, sync_env.control.state, today)
    # identity is the lead id: a changed email updated the same row
    changed = report.email_changed_ids[0]
    row = people.filter(pc.equal(people["id"], changed)).to_pylist()
    assert (
        row
        and row[0]["email"] == state.people.filter(pc.equal(state.people["id"], changed))["email"][0].as_py()
    )
    # deletions and merges are reflected: tombstones and the merge map hold them; people no longer do
    tombstones = set(sync_env.lake.read_current("person_tombstones")["id"].to_pylist())
    assert set(report.deleted_lead_ids) <= tombstones
    merges = sync_env.lake.read_current("person_merges")
    losers = {loser for _winner, ls in report.merges for loser in ls}
    assert losers <= set(merges["loser_id"].to_pylist())
    assert not (losers | set(report.deleted_lead_ids)) & set(people["id"].to_pylist())
    assert set(report.new_lead_ids) <= set(people["id"].to_pylist()) | (set(report.new_lead_ids) - before_ids)
    assert_activities_match_truth(sync_env.lake, sync_env.control.state, datetime.now(UTC))
    assert_memberships_match_truth(sync_env.lake, sync_env.control.state)


def test_tick_with_nothing_changed_spends_few_calls(sync_env, initial) -> None:
    sync_env.control.reset_counters()
    result = run_sync(sync_env.defs, sync_env.instance)
    assert result.success, result.failures
    counts = sync_env.control.call_counts()
    total = sum(counts.values())
    bulk_creates = sum(v for k, v in counts.items() if k.endswith("/export/create.json"))
    # A quiet tick reads its (empty) delta through REST: no export at all; the feeds (activities in two
    # groups of ≤ 10 types, lead changes, deleted leads), channels and programs: 13 calls in the demo run.
    assert bulk_creates == 0, counts
    assert total <= 15, counts
    assert counts.get("POST /bulk/v1/program/members/export/create.json", 0) == 0, counts


def test_rename_heals_within_two_ticks(sync_env, initial) -> None:
    control = sync_env.control
    state = control.state
    members = truth.memberships_truth(state)
    programs = {r["id"]: r["channel"] for r in state.programs.select(["id", "channel"]).to_pylist()}
    used = [
        (programs[r["programId"]], r["statusName"])
        for r in members.to_pylist()
        if r["statusName"] != "Not in Program"
    ]
    channel, status = used[0]
    control.rename_status(channel, status, status + " (renamed)")
    for _ in range(2):
        result = run_sync(sync_env.defs, sync_env.instance)
        assert result.success, result.failures
    held = sync_env.lake.read_current("membership_retry")
    assert held.num_rows == 0
    assert_memberships_match_truth(sync_env.lake, sync_env.control.state)
    history = sync_env.lake.read_current("channel_status_history")
    assert "renamed" in history["change"].to_pylist()


def test_backfill_of_62_days_spends_at_most_two_exports_per_entity(sync_env, initial) -> None:
    """Dagster splits a backfill into runs of ≤ max_partitions_per_run days; each run is one export."""
    import dagster as dg

    from molequle_dagster.jobs import HISTORY_JOB
    from molequle_dagster.sync.plan import RANGE_END, RANGE_START

    asset = sync_env.defs.resolve_assets_def("marketo_activities")
    per_run = asset.backfill_policy.max_partitions_per_run
    with dg.partition_loading_context(effective_dt=datetime.now(UTC)):
        keys = asset.partitions_def.get_partition_keys()[-63:-1]  # the 62 days before today
    assert len(keys) == 62 and per_run == 93
    sync_env.control.reset_counters()
    job = sync_env.defs.resolve_job_def(HISTORY_JOB)
    for start in range(0, len(keys), per_run):
        chunk = keys[start : start + per_run]
        result = job.execute_in_process(
            instance=sync_env.instance, tags={RANGE_START: chunk[0], RANGE_END: chunk[-1]}
        )
        assert result.success
        materialized = {e.partition for e in result.get_asset_materialization_events()}
        assert materialized == set(chunk)  # each day's partition is written separately
    counts = sync_env.control.call_counts()
    assert counts.get("POST /bulk/v1/activities/export/create.json", 0) <= 2, counts
    assert all(sync_env.lake.days("marketo_activities").read(k) is not None for k in keys)


def test_daily_job_closes_yesterday_and_refreshes_the_population(sync_env, initial) -> None:
    from molequle_dagster.jobs import DAILY_JOB

    now = datetime.now(UTC)
    request = sync_env.defs.resolve_schedule_def("marketo_daily_schedule")(
        dg.build_schedule_context(scheduled_execution_time=now, instance=sync_env.instance)
    )
    yesterday = request.partition_key
    assert yesterday == (now - timedelta(days=1)).date().isoformat()
    result = sync_env.defs.resolve_job_def(DAILY_JOB).execute_in_process(
        instance=sync_env.instance, partition_key=yesterday
    )
    assert result.success
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for table in ("marketo_activities", "marketo_people_updates"):
        cursor = sync_env.lake.days(table).cursor(yesterday)
        assert cursor["covered_until"] == midnight.isoformat() and cursor["closed"]
    population = sync_env.instance.get_latest_materialization_event(dg.AssetKey("marketo_people_population"))
    assert population.run_id == result.run_id  # the smart list was re-exported: membership reconciled
    # Rebased on the fresh population: `in_sync_list` marks exactly the smart list's members; leads
    # fetched after the snapshot (yesterday's updates) are there too, marked as outside the list.
    people = sync_env.lake.read_current("people")
    state = sync_env.control.state
    smart_list = next(s for s in state.smart_lists if s["name"] == "All People for Molequle")
    members = set(truth.smart_list_lead_ids(state, smart_list).to_pylist())
    flagged = {r["id"] for r in people.select(["id", "in_sync_list"]).to_pylist() if r["in_sync_list"]}
    assert flagged == members
    assert members <= set(people["id"].to_pylist())


ONLY_ACCOUNT_EDITS = {
    "new_people": 0, "attribute_updates": 0, "email_changes": 0, "merges": 0, "deletions": 0,
    "new_activities_per_person": 0, "program_status_changes": 0, "new_programs": 0, "campaign_updates": 0,
    "account_updates": 0.3,
}


def test_account_edits_reach_accounts_through_the_daily_slice_not_every_tick(sync_env, initial) -> None:
    """Marketo cannot filter companies or named accounts by update time: a tick reads only new ones, and
    the daily job's rolling slice (every account once per `reconciliation.accounts_days`) re-reads them."""
    from molequle_dagster.jobs import DAILY_JOB

    report = sync_env.control.apply_churn(ONLY_ACCOUNT_EDITS, seed=5)
    assert report.updated_company_ids and report.updated_named_account_ids
    accounts = sync_env.lake.keyed("accounts", "account_id")
    version = accounts.version
    sync_env.control.reset_counters()
    assert run_sync(sync_env.defs, sync_env.instance).success
    counts = sync_env.control.call_counts()
    assert not any("companies" in k or "namedaccounts" in k for k in counts), counts
    quiet = accounts.changes_since(version)  # nothing a tick can see changed: no row written
    assert quiet.upserts.num_rows == 0 and quiet.deleted.num_rows == 0
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    result = sync_env.defs.resolve_job_def(DAILY_JOB).execute_in_process(
        instance=sync_env.instance, partition_key=yesterday
    )
    assert result.success
    assert_accounts_match_truth(sync_env.lake, sync_env.control.state)
    changes = accounts.changes_since(version)
    edited = {f"company:{i}" for i in report.updated_company_ids}
    edited |= {f"named:{g}" for g in report.updated_named_account_ids}
    assert edited <= set(changes.upserts["account_id"].to_pylist())
    assert changes.upserts.num_rows < accounts.manifest().rows  # writes follow change


def test_daily_quota_stops_the_sync_and_pauses_the_schedules(sync_env, initial) -> None:
    """607: a clear failure naming the reset time, no retries, and the schedules skip until the reset.
    (Last in this module: the sandbox's quota stays used up.)"""
    sync_env.control.exhaust_daily_quota()
    result = run_sync(sync_env.defs, sync_env.instance)
    assert not result.success
    assert any("daily quota exhausted, resets at" in f for f in result.failures), result.failures
    schedule = sync_env.defs.resolve_schedule_def("marketo_sync_schedule")
    now = datetime.now(UTC)
    skipped = schedule(dg.build_schedule_context(scheduled_execution_time=now, instance=sync_env.instance))
    assert isinstance(skipped, dg.SkipReason) and "quota used up until" in skipped.skip_message
    from molequle_dagster.quota import quota_paused_until

    resets_at, _reason = quota_paused_until(sync_env.defs.resources["marketo"], sync_env.instance, now)
    after_reset = resets_at + timedelta(minutes=1)
    resumed = schedule(
        dg.build_schedule_context(scheduled_execution_time=after_reset, instance=sync_env.instance)
    )
    assert isinstance(resumed, dg.RunRequest)
