"""Ticks never overlap, a skipped tick is caught up, every current table records its high-water mark, and
`data_fresh` fails when the data (not the run) is older than the promise — against the sandbox over real
HTTP and a real Dagster instance, on the sandbox's virtual clock (MOLEQULE_VIRTUAL_CLOCK), so the tests
choose "now" instead of waiting for it. Schedules and sensors are evaluated as the daemon evaluates them,
and their run requests run as the daemon would run them (same job, tags and run key).

The tests in this module run in order on one environment, onboarded by `marketo_onboarding_sensor`. Its
page budget is one page (300 records) per feed, so a big delta switches a tick from REST to bulk.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest

from molequle_dagster.clock import VIRTUAL_CLOCK_ENV
from molequle_dagster.conventions import (
    HIGH_WATER_MARK,
    MARKETO_GROUP,
    MOLEQULE_GROUP,
    PROMISE_MINUTES,
    UNIFIED_GROUP,
    step_totals,
)
from molequle_dagster.freshness import fresh_tables, recorded_mark
from molequle_dagster.jobs import DAILY_JOB, INITIAL_JOB, SYNC_JOB
from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.schedules import SLOT_TAG, slots_around
from molequle_dagster.sync.run_kind import DAILY, KIND_TAG, TICK
from molequle_dagster_tests.conftest import SyncEnv, fast_settings_dict, open_sync_env
from molequle_dagster_tests.truth_assertions import (
    assert_activities_match_truth,
    assert_memberships_match_truth,
    assert_people_match_truth,
)

# The sandbox's clock, which the sync follows, begins 3 hours ago: the module's ticks may cross midnight.
STARTED = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
SMALL_CHURN = {
    "new_people": 0.01,
    "attribute_updates": 0.02,
    "email_changes": 0.01,
    "merges": 0.01,
    "deletions": 0.01,
    "new_activities_per_person": 0.1,
    "program_status_changes": 0.02,
    "new_programs": 1,
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncEnv]:
    """300 people after their first sync; the sandbox's clock, which the sync follows, began 3 hours ago."""
    config = SandboxConfig.for_profile("fast")
    config.data.people = 300
    config.data.programs = 12
    start = STARTED
    settings = fast_settings_dict(sync__rest_pages=1)
    with (
        open_sync_env(tmp_path_factory.mktemp("fresh"), config, settings, now=start) as synced,
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setenv(VIRTUAL_CLOCK_ENV, synced.sandbox.base_url)
        at(synced, start + timedelta(minutes=1))
        (first,) = sense(synced, "marketo_onboarding_sensor").run_requests
        launch(synced, first, INITIAL_JOB)  # ticks need no history, only the first sync
        yield synced


def at(env: SyncEnv, moment: datetime) -> datetime:
    """Marketo's (and the sync's) time stands still at `moment` until it is moved again."""
    return env.control.freeze(moment)


def next_slot(env: SyncEnv) -> datetime:
    return slots_around(env.control.clock.now(), 10)[1]


def evaluate(env: SyncEnv, schedule: str, when: datetime) -> Any:
    context = dg.build_schedule_context(instance=env.instance, scheduled_execution_time=when)
    return env.defs.resolve_schedule_def(schedule)(context)


def sense(env: SyncEnv, sensor: str) -> Any:
    return env.defs.resolve_sensor_def(sensor)(dg.build_sensor_context(instance=env.instance))


def launch(
    env: SyncEnv,
    request: dg.RunRequest,
    job: str = SYNC_JOB,
    skip: tuple[str, ...] = (),
    done: list[Any] | None = None,
) -> dg.ExecuteInProcessResult:
    """The run the daemon would launch for `request`; `skip` leaves a tick's steps out, as a run whose
    step failed would."""
    keys = None
    if skip:
        tick_assets = dg.AssetSelection.groups(MARKETO_GROUP, MOLEQULE_GROUP, UNIFIED_GROUP) - (
            dg.AssetSelection.assets("marketo_people_population", "marketo_program_members", *skip)
        )
        keys = list(tick_assets.resolve(env.defs.resolve_asset_graph()))
    result = env.defs.resolve_job_def(job).execute_in_process(
        instance=env.instance,
        tags={**request.tags, "dagster/run_key": request.run_key or ""},
        asset_selection=keys,
        raise_on_error=False,
    )
    if done is not None:
        done.append(result)
    assert result.success, result.get_run_failure_event()
    return result


def tick(env: SyncEnv, when: datetime, skip: tuple[str, ...] = ()) -> dg.ExecuteInProcessResult:
    at(env, when)
    request = evaluate(env, "marketo_sync_schedule", when)
    assert isinstance(request, dg.RunRequest), request
    return launch(env, request, skip=skip)


def assert_lake_is_marketo(env: SyncEnv) -> None:
    state = env.control.state
    # Everyone changed since the first sync is in (not only since the latest tick's midnight: between
    # 00:00 and 03:00 UTC the module's first sync was yesterday).
    assert_people_match_truth(env.lake, state, STARTED)
    assert_activities_match_truth(env.lake, state, env.control.clock.now())
    assert_memberships_match_truth(env.lake, state)


def shown(env: SyncEnv, table: str) -> bool | None:
    """What the UI shows for the table's data_fresh check: passed, failed, or never evaluated (None)."""
    record = env.instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(dg.AssetKey(table), "data_fresh")
    )
    return getattr(record.evaluation, "passed", None) if record is not None else None


def ticks(env: SyncEnv) -> list[dg.DagsterRun]:
    return list(env.instance.get_runs(filters=dg.RunsFilter(tags={KIND_TAG: TICK})))


def skip_message(answer: Any) -> str:
    assert isinstance(answer, dg.SkipReason), answer
    return answer.skip_message or ""


def test_a_tick_due_while_one_runs_is_skipped_and_the_next_covers_the_gap(env: SyncEnv) -> None:
    first = next_slot(env)
    at(env, first - timedelta(minutes=1))
    env.control.apply_churn(SMALL_CHURN, seed=1)
    # The tick's channel read is held by the sandbox until the test lets go: the run stays in progress.
    env.control.inject_fault("GET /rest/asset/v1/channels.json", "slow", seconds=120)
    at(env, first)
    request = evaluate(env, "marketo_sync_schedule", first)
    results: list[Any] = []
    held = threading.Thread(target=launch, args=(env, request), kwargs={"done": results})
    held.start()
    try:
        assert env.control.wait_for_in_flight(1, timeout=60), "the tick never called Marketo"
        (in_progress,) = [r for r in ticks(env) if not r.is_finished]
        second = first + timedelta(minutes=10)
        reason = skip_message(evaluate(env, "marketo_sync_schedule", second))
        assert f"the previous tick (run {in_progress.run_id}, started) is still in progress" in reason
        # The daily close waits for it too: they fold into the same tables.
        close = evaluate(env, "marketo_daily_schedule", second.replace(hour=1, minute=2))
        assert in_progress.run_id in skip_message(close)
        at(env, first + timedelta(minutes=5))
        during = env.control.apply_churn(SMALL_CHURN, seed=2)  # Marketo keeps changing meanwhile
    finally:
        env.control.clear_faults()
        held.join(timeout=120)
    assert not held.is_alive() and results and results[0].success
    before = len(ticks(env))
    tick(env, first + timedelta(minutes=20))
    assert len(ticks(env)) == before + 1  # the skipped slot made no run
    assert during.email_changed_ids and during.deleted_lead_ids and during.merges
    assert_lake_is_marketo(env)


def test_a_close_holds_ticks_back_and_the_skipped_tick_is_caught_up_as_it_ends(env: SyncEnv) -> None:
    skipped = next_slot(env)
    # A close the daemon has created and not started yet (waiting in its queue) counts as in progress.
    yesterday = (skipped - timedelta(days=1)).date().isoformat()
    close = env.instance.create_run_for_job(
        env.defs.resolve_job_def(DAILY_JOB), tags={KIND_TAG: DAILY, "dagster/partition": yesterday}
    )
    reason = skip_message(evaluate(env, "marketo_sync_schedule", skipped))
    assert f"the daily run (run {close.run_id}, not_started) is still in progress" in reason
    at(env, skipped + timedelta(minutes=3))
    assert close.run_id in skip_message(sense(env, "marketo_tick_catch_up_sensor"))
    env.instance.report_run_canceled(close)
    caught_up = sense(env, "marketo_tick_catch_up_sensor")
    assert isinstance(caught_up, dg.RunRequest), caught_up
    assert caught_up.tags[SLOT_TAG] == skipped.strftime("%Y-%m-%dT%H:%M:%SZ")  # it stands for that slot
    assert caught_up.run_key == f"catch-up-{skipped:%Y-%m-%dT%H%M}"
    launch(env, caught_up)
    assert "tick ran" in skip_message(sense(env, "marketo_tick_catch_up_sensor"))
    # Next to the schedule's own slots it never runs one: the two would not see each other's run.
    for moment in (skipped + timedelta(minutes=10, seconds=30), skipped + timedelta(minutes=19, seconds=30)):
        at(env, moment)
        assert "too close" in skip_message(sense(env, "marketo_tick_catch_up_sensor"))


def test_a_big_delta_switches_to_bulk_and_every_table_records_its_high_water_mark(env: SyncEnv) -> None:
    slot = next_slot(env)
    at(env, slot - timedelta(minutes=2))
    changed = env.control.apply_churn(
        {**SMALL_CHURN, "attribute_updates": 0.9, "new_people": 0.2, "new_activities_per_person": 3}, seed=4
    )
    assert len(changed.updated_lead_ids) + len(changed.new_lead_ids) > 300  # more than the one page
    result = tick(env, slot)
    totals = step_totals(env.instance.get_run_by_id(result.run_id))
    assert totals["marketo_activities"]["read"] == "rest+bulk", totals
    assert totals["marketo_people_updates"]["read"] == "rest+bulk", totals
    assert_lake_is_marketo(env)
    tables = fresh_tables(env.defs.resources["settings"].settings)
    assert {"people", "activities", "memberships", "marketo_programs", "accounts"} <= set(tables)
    for table in tables:
        event = env.instance.get_latest_materialization_event(dg.AssetKey(table))
        metadata = event.asset_materialization.metadata
        assert isinstance(metadata[HIGH_WATER_MARK], dg.TimestampMetadataValue), table  # numeric: plotted
        assert isinstance(metadata["data_age_s"], dg.FloatMetadataValue), table
        # Marketo's clock stood at the slot for the whole tick: every table is complete through it.
        assert recorded_mark(env.instance, table) == slot, table
        assert metadata["data_age_s"].value == 0.0 and shown(env, table) is True, table


def test_a_table_is_only_as_complete_as_its_least_complete_feed(env: SyncEnv) -> None:
    previous = recorded_mark(env.instance, "people")
    later = next_slot(env)
    # A tick that did not get to read deleted leads: people and all that reads through them claim no more.
    tick(env, later, skip=("person_tombstones",))
    assert recorded_mark(env.instance, "marketo_programs") == later
    for table in ("people", "activities", "memberships", "accounts", "unified_people"):
        assert recorded_mark(env.instance, table) == previous, table


def test_the_check_fails_when_the_data_is_older_than_the_promise_with_no_run_at_all(env: SyncEnv) -> None:
    mark = recorded_mark(env.instance, "people")
    assert mark is not None
    at(env, mark + timedelta(minutes=PROMISE_MINUTES - 1))
    assert not sense(env, "marketo_data_freshness_sensor").asset_events  # passing, as recorded: nothing new
    at(env, mark + timedelta(minutes=PROMISE_MINUTES + 1))
    result = sense(env, "marketo_data_freshness_sensor")
    failed = {e.asset_key.to_user_string(): e for e in result.asset_events if not e.passed}
    assert "people" in failed and "marketo_programs" not in failed  # the programs' data is 10 minutes newer
    people = failed["people"]
    assert people.metadata["data_age_min"].value == PROMISE_MINUTES + 1
    assert f"{PROMISE_MINUTES + 1} minutes old" in (people.description or "")
    for event in result.asset_events:  # what the daemon does with a sensor's asset events: the UI shows them
        env.instance.report_runless_asset_event(event)
    assert shown(env, "people") is False
    assert not sense(env, "marketo_data_freshness_sensor").asset_events  # a failure repeats every 10 min
    tick(env, next_slot(env))  # the data moves again: the check passes
    assert shown(env, "people") is True
