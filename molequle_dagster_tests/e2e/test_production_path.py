"""The production path end to end (issue 14 items 1, 2 and 8): PostgreSQL, `dagster-daemon` and
`dagster-webserver` as real processes against the project with `sync.automation: true`, driven through
GraphQL as the UI drives them, checked against the sandbox's ground truth.

The first test must see the deployment as it comes up, before any test launches anything: the automation
alone runs the first sync and the history; no test and no CLI does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from math import ceil
from typing import Any

import pytest

from molequle_dagster.assets.activities import MARKETO_ACTIVITIES as ACTIVITIES_TABLE
from molequle_dagster.jobs import HISTORY_JOB, INITIAL_JOB
from molequle_dagster.partitions import partition_window
from molequle_dagster.sync.plan import RANGE_END, RANGE_START, export_windows
from molequle_dagster.sync.run_kind import KIND_TAG, TICK
from molequle_dagster_tests.e2e.conftest import FIRST_SYNC_TIMEOUT_S, ONBOARDING_SENSOR, Backfill, Synced
from molequle_dagster_tests.e2e.deployment import (
    LAUNCHED_BY_TAG,
    SYNC_INTERVAL_MINUTES,
    Deployment,
    partition_keys,
    tick_schedule_name,
)
from molequle_dagster_tests.e2e.processes import wait_until
from molequle_dagster_tests.truth_assertions import (
    assert_activities_match_truth,
    assert_memberships_match_truth,
    assert_people_match_truth,
)

FIRST_SYNC_START_S = 120.0  # the onboarding sensor ticks every minute once the daemon is up
TICK_RUN_TIMEOUT_S = 300.0
FRESHNESS_SENSOR_S = 120 + 60  # its interval, and the daemon's loop
WAITING_FOR_FIRST_SYNC = "waiting for the first sync"  # how the tick schedule says why it skips
AUTOMATION = {"marketo_onboarding_sensor", "marketo_data_freshness_sensor", "marketo_sync_schedule"}


def _running_instigators(deployment: Deployment) -> set[str]:
    """Schedules and sensors that are on without anyone turning them on."""
    running = {s["name"] for s in deployment.schedules() if s["scheduleState"]["status"] == "RUNNING"}
    running |= {s["name"] for s in deployment.sensors() if s["sensorState"]["status"] == "RUNNING"}
    return running


def _lake_equals_truth(deployment: Deployment) -> bool:
    """People, every activity day of the history and memberships equal the sandbox (AssertionError if not)."""
    state = deployment.sandbox.state()
    assert_people_match_truth(deployment.lake, state, deployment.came_up)
    assert_activities_match_truth(deployment.lake, state, datetime.now(UTC), partition_keys(deployment))
    assert_memberships_match_truth(deployment.lake, state)
    return True


def _days(start: str, end: str) -> list[str]:
    first, last = (datetime.fromisoformat(d).date() for d in (start, end))
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def _activity_export_days(jobs: list[dict[str, Any]]) -> list[str]:
    """The days the sandbox's activity export jobs covered, one entry per job and day."""
    covered: list[str] = []
    for job in jobs:
        if job["entity"] == "activities":
            window = job["filter"]["createdAt"]
            covered += _days(window["startAt"][:10], window["endAt"][:10])
    return covered


# --- the first sync, by the automation alone --------------------------------------------------------------
def test_first_sync_happens_with_only_the_daemon_and_webserver(deployment: Deployment) -> None:
    ours = [r["runId"] for r in deployment.runs() if LAUNCHED_BY_TAG in r["tags"]]
    assert not ours, f"this test must run before any test launches a run; launched: {ours}"
    on = _running_instigators(deployment)
    assert on >= AUTOMATION, f"sync.automation must turn these on by default; running: {sorted(on)}"
    # The UI's "Test schedule" before the first sync is in: the tick waits, and says so.
    dry_run = deployment.schedule_dry_run(tick_schedule_name(deployment))
    assert WAITING_FOR_FIRST_SYNC in (dry_run["skipReason"] or ""), dry_run
    wait_until(lambda: deployment.runs(), FIRST_SYNC_START_S, f"{sorted(on)} to launch a first sync")
    wait_until(lambda: _lake_equals_truth(deployment), FIRST_SYNC_TIMEOUT_S, "a complete first sync")
    failed = [(r["runId"], r["jobName"]) for r in deployment.runs() if r["status"] == "FAILURE"]
    assert not failed, f"runs of the first sync failed: {failed}"


def test_the_first_sync_then_the_history_newest_first_each_day_exported_once(synced: Synced) -> None:
    deployment = synced.deployment
    keys = partition_keys(deployment)
    initial = synced.initial_run
    assert initial["jobName"] == INITIAL_JOB
    assert (initial["tags"][RANGE_START], initial["tags"][RANGE_END]) == (keys[-1], keys[-1])  # today
    assert synced.history_runs, "no history run followed the first sync"
    assert {r["jobName"] for r in synced.history_runs} == {HISTORY_JOB}
    ranges = [(r["tags"][RANGE_START], r["tags"][RANGE_END]) for r in synced.history_runs]
    assert ranges == sorted(ranges, reverse=True), f"history must run newest first: {ranges}"
    history_days = sorted(d for start, end in ranges for d in _days(start, end))
    assert history_days == keys[:-1], "the history runs must cover every day before today exactly once"
    # Counted by the sandbox: every day (history and today) exported exactly once, ≤ 31 days a job.
    activity_jobs = [j for j in synced.export_jobs if j["entity"] == "activities"]
    assert {j["status"] for j in activity_jobs} == {"Completed"}, activity_jobs
    assert sorted(_activity_export_days(activity_jobs)) == keys, "a day exported twice, or never"
    window_days = deployment.settings["marketo"]["bulk"]["window_days"]
    # Each history run cuts its days into as few windows as fit, an even number so both slots work.
    per_run = [len(export_windows(_days(start, end)[::-1], window_days)) for start, end in ranges]
    assert len(activity_jobs) == 1 + sum(per_run), activity_jobs  # today's, then the history's windows
    assert max(len(_activity_export_days([j])) for j in activity_jobs) <= window_days


def test_freshness_and_the_blocking_check_said_incomplete_until_the_first_sync(synced: Synced) -> None:
    """Before the first sync had loaded the people, nothing said Passing: the freshness sensor failed
    `people`'s data_fresh, naming the first sync, and its blocking smart_list_members check was either
    failed the same way (before the first-sync run was launched) or pending in that run. Once the first
    sync is in, both pass."""
    deployment = synced.deployment
    initial = synced.initial_run["runId"]
    first_people = min(
        float(m["timestamp"]) / 1000  # materialization timestamps are in milliseconds
        for m in deployment.materializations("people")
        if m["runId"] == initial
    )
    for check in ("data_fresh", "smart_list_members"):
        executions = deployment.check_executions("people", check)
        evaluated = [e for e in executions if e["evaluation"]]
        before = [e for e in evaluated if e["evaluation"]["timestamp"] < first_people]
        wrong = [
            e
            for e in before
            if e["evaluation"]["success"] or "first sync" not in (e["evaluation"]["description"] or "")
        ]
        assert not wrong, f"people/{check} before the first sync must fail naming it: {wrong}"
        assert {e["runId"] for e in before} <= {""}, f"only the freshness sensor evaluates {check} then"
        if check == "data_fresh":  # the sensor evaluates it from the start, every 2 minutes
            assert before, "the freshness sensor said nothing before the first sync was in"
        ours = [e for e in evaluated if e["runId"] == initial]
        assert ours and ours[0]["evaluation"]["success"], f"the first sync's people/{check}: {ours}"

        def latest_passes(name: str = check) -> bool:
            # a tick in progress has planned the check and not evaluated it yet: its last result counts
            done = [e for e in deployment.check_executions("people", name, limit=10) if e["evaluation"]]
            assert done and done[0]["evaluation"]["success"], f"people/{name} latest: {done[:1]}"
            return True

        # what the UI shows now (Dagster's latest evaluation): passing
        wait_until(latest_passes, FRESHNESS_SENSOR_S, f"people/{check} to pass after the first sync")


# --- a backfill as the UI launches it -----------------------------------------------------------------------
def test_backfill_through_graphql_is_split_by_the_backfill_policy(deployment: Deployment, backfill: Backfill):
    assert backfill.status["status"] == "COMPLETED_SUCCESS", backfill.status
    assert backfill.status["numPartitions"] == len(backfill.days) == 62
    per_run = deployment.asset_node(ACTIVITIES_TABLE)["backfillPolicy"]["maxPartitionsPerRun"]
    assert per_run and per_run >= 62, "62 days fit in one run of the activities' multi-run policy"
    assert [r["status"] for r in backfill.runs] == ["SUCCESS"] * ceil(len(backfill.days) / per_run)
    covered: list[str] = []
    for run in sorted(backfill.runs, key=lambda r: r["tags"][RANGE_START]):
        days = _days(run["tags"][RANGE_START], run["tags"][RANGE_END])
        assert len(days) <= per_run, run
        covered += days
    assert covered == backfill.days  # every day exactly once


def test_backfill_spends_one_activity_export_per_31_day_window(deployment: Deployment, backfill: Backfill):
    """Counted by the sandbox: the bulk activity exports of the backfilled days, all types in one job per
    ≤ 31-day window (never one job per type or per day)."""
    first, last = partition_window(backfill.days[0])[0], partition_window(backfill.days[-1])[1]
    ours = [
        job
        for job in backfill.export_jobs
        if job["entity"] == "activities"
        and first <= datetime.fromisoformat(job["filter"]["createdAt"]["startAt"]) < last
    ]
    window_days = deployment.settings["marketo"]["bulk"]["window_days"]
    assert len(ours) == ceil(len(backfill.days) / window_days), ours
    assert {job["status"] for job in ours} == {"Completed"}, ours
    assert sorted(_activity_export_days(ours)) == backfill.days  # each day in exactly one export


def test_backfilled_days_equal_the_sandbox_truth(deployment: Deployment, backfill: Backfill) -> None:
    state = deployment.sandbox.state()
    assert_activities_match_truth(deployment.lake, state, datetime.now(UTC), backfill.days)
    materialized = deployment.partition_materializations(ACTIVITIES_TABLE, backfill.days)
    backfill_runs = {r["runId"] for r in backfill.runs}
    assert sorted(materialized) == backfill.days  # each day is its own materialization, shown per partition
    assert {m["runId"] for m in materialized.values()} <= backfill_runs


def test_each_partition_reports_the_rows_of_its_own_file(deployment: Deployment, backfill: Backfill) -> None:
    materialized = deployment.partition_materializations(ACTIVITIES_TABLE, backfill.days)
    reported = {day: materialized[day]["metadata"].get("dagster/row_count") for day in backfill.days}
    in_file = {}
    for day in backfill.days:
        table = deployment.lake.days(ACTIVITIES_TABLE).read(day)
        in_file[day] = table.num_rows if table is not None else 0
    wrong = {day: (reported[day], in_file[day]) for day in backfill.days if reported[day] != in_file[day]}
    assert not wrong, f"(dagster/row_count, rows in the file) per partition: {wrong}"
    assert len(set(in_file.values())) > 1, "the days differ in size: a run total repeated would show"
    # the run's totals live on the run (one tag per step), not on every partition
    assert all("api_calls" not in materialized[day]["metadata"] for day in backfill.days)


# --- the tick, on by default ------------------------------------------------------------------------------
@pytest.mark.wall_clock
def test_a_schedule_tick_fires_and_its_run_succeeds(synced: Synced) -> None:
    """The tick schedule is on from the start (sync.automation) and skips, saying why, until the first
    sync's run is over; the first tick after it launches a tick run, which succeeds."""
    deployment = synced.deployment
    interval_s = SYNC_INTERVAL_MINUTES * 60
    initial_end = float(synced.initial_run["endTime"])
    # the first cron boundary after the first sync, then one more in case that tick was skipped (a
    # previous tick still running), and the daemon's loop and the run's launch
    due = (int(initial_end) // interval_s + 1) * interval_s
    wait_s = max(0.0, due + interval_s - datetime.now(UTC).timestamp()) + 120

    def fired() -> dict | None:
        deployment.assert_healthy()
        ticks = deployment.schedule_ticks(synced.schedule, limit=50)
        done = [t for t in ticks if float(t["timestamp"]) >= initial_end and t["status"] == "SUCCESS"]
        return min(done, key=lambda t: float(t["timestamp"])) if done else None

    tick = wait_until(fired, wait_s, f"{synced.schedule} to tick after the first sync")
    deployment.stop_schedule(synced.schedule)  # one tick is the test; no more runs beside the teardown
    # A tick is evaluated a moment after its boundary: one due a minute before the first sync ended saw it.
    before = initial_end - 60
    early = [
        t for t in deployment.schedule_ticks(synced.schedule, limit=50) if float(t["timestamp"]) < before
    ]
    assert all(
        t["status"] == "SKIPPED" and WAITING_FOR_FIRST_SYNC in (t["skipReason"] or "") for t in early
    ), f"ticks before the first sync must skip, saying why: {early}"
    assert tick["runIds"], tick
    assert int(float(tick["timestamp"])) % interval_s == 0  # the settings' cron, evaluated by the daemon
    run = deployment.wait_for_run(tick["runIds"][0], TICK_RUN_TIMEOUT_S)
    assert run["status"] == "SUCCESS", run
    assert run["tags"]["dagster/schedule_name"] == synced.schedule
    assert run["tags"][KIND_TAG] == TICK
    assert run["tags"][RANGE_END] == datetime.fromtimestamp(float(tick["timestamp"]), UTC).date().isoformat()


def test_the_onboarding_sensor_is_idle_once_done(synced: Synced) -> None:
    """After the history, the sensor launches nothing more: it says the onboarding is complete."""
    ticks = synced.deployment.sensor_ticks(ONBOARDING_SENSOR)
    after = [t for t in ticks if float(t["timestamp"]) > synced.done_at]
    assert all(not t["runIds"] for t in after), after
