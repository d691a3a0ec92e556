"""The automation evaluated as the daemon evaluates it (`evaluate_tick`, which also resolves each run
request's target): what a fresh production deployment sees before and during its first sync."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
import pytest

from molequle_dagster.conventions import REUSE_SCOPE_TAG
from molequle_dagster.definitions import build_definitions
from molequle_dagster.jobs import INITIAL_JOB
from molequle_dagster.lake import Lake
from molequle_dagster.schedules import IN_PROCESS_TAG, fail_dead_runs, run_claim
from molequle_dagster.settings import parse_settings
from molequle_dagster.sync.plan import (
    POPULATION,
    RANGE_END,
    RANGE_START,
    first_sync_done,
    mark_first_sync_done,
)
from molequle_dagster.sync.run_kind import INITIAL, KIND_TAG
from molequle_dagster_tests.conftest import fast_settings_dict


@pytest.fixture
def defs(monkeypatch: pytest.MonkeyPatch, tmp_path) -> dg.Definitions:
    monkeypatch.setenv("MOLEQULE_LAKE_URI", str(tmp_path / "lake"))
    return build_definitions(parse_settings(fast_settings_dict(sync__automation=True)))


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def _tick(defs: dg.Definitions, instance: dg.DagsterInstance, name: str) -> dg.SensorExecutionData:
    sensor = defs.resolve_sensor_def(name)
    context = dg.build_sensor_context(instance=instance, sensor_name=name, definitions=defs)
    return sensor.evaluate_tick(context)


def test_automation_turns_the_sensors_on(defs: dg.Definitions) -> None:
    for name in ("marketo_onboarding_sensor", "marketo_data_freshness_sensor"):
        assert defs.resolve_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING, name


def test_the_onboarding_sensor_requests_the_first_sync_on_an_empty_lake(defs, instance) -> None:
    data = _tick(defs, instance, "marketo_onboarding_sensor")
    assert data.skip_message is None, data.skip_message
    (request,) = data.run_requests
    assert request.job_name == INITIAL_JOB
    today = request.tags[RANGE_END]
    assert request.tags[KIND_TAG] == INITIAL and request.tags[RANGE_START] == today


def test_freshness_and_the_blocking_check_say_incomplete_before_the_first_sync(defs, instance) -> None:
    data = _tick(defs, instance, "marketo_data_freshness_sensor")
    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e for e in data.asset_events
    }  # AssetCheckEvaluation
    for table in ("people", "memberships", "marketo_programs"):
        fresh = evaluations[(table, "data_fresh")]
        assert not fresh.passed and "first sync" in (fresh.description or ""), fresh
    members = evaluations[("people", "smart_list_members")]
    assert not members.passed and "first sync" in (members.description or ""), members


def _population_loaded(lake: Lake) -> None:
    """What the first sync's population step leaves: the smart list exported whole (`full_at`)."""
    lake.keyed(POPULATION, "id").commit(meta={"full_at": datetime.now(UTC).isoformat()})


def _first_sync_complete(lake: Lake) -> None:
    """What the onboarding plan records once a first-sync run succeeded."""
    _population_loaded(lake)
    mark_first_sync_done(lake, "initial-run", datetime.now(UTC))


def test_the_onboarding_sensor_finishes_a_failed_first_sync_in_its_scope_then_marks_it(
    defs, instance
) -> None:
    """A first sync that died once its smart list was in is not done: the next one takes over its reuse
    scope (its exports are read, not paid again); once a first-sync run succeeded the lake says so."""
    lake = defs.resources["lake"].lake
    _population_loaded(lake)
    dead = instance.add_run(
        dg.DagsterRun(INITIAL_JOB, status=dg.DagsterRunStatus.FAILURE, tags={KIND_TAG: INITIAL})
    )
    (request,) = _tick(defs, instance, "marketo_onboarding_sensor").run_requests
    assert request.job_name == INITIAL_JOB and request.tags[REUSE_SCOPE_TAG] == dead.run_id
    assert not first_sync_done(lake)
    instance.add_run(
        dg.DagsterRun(
            INITIAL_JOB,
            status=dg.DagsterRunStatus.SUCCESS,
            tags={KIND_TAG: INITIAL, REUSE_SCOPE_TAG: dead.run_id},
        )
    )
    data = _tick(defs, instance, "marketo_onboarding_sensor")
    assert first_sync_done(lake)
    assert all(r.job_name != INITIAL_JOB for r in data.run_requests), data.run_requests


def test_a_run_whose_sync_process_died_is_failed_and_a_living_one_left_alone(defs, instance) -> None:
    """`molequle sync` holds its run's claim while it runs: a free claim under a 'started' run means
    that process died (kill -9), and the run would otherwise hold back every later run for ever."""
    store = defs.resources["marketo"].store_for(instance)
    tags = {KIND_TAG: INITIAL, IN_PROCESS_TAG: "true"}
    dead = instance.add_run(dg.DagsterRun(INITIAL_JOB, status=dg.DagsterRunStatus.STARTED, tags=tags))
    alive = instance.add_run(dg.DagsterRun(INITIAL_JOB, status=dg.DagsterRunStatus.STARTED, tags=tags))
    claim = store.try_claim(run_claim(alive.run_id))
    assert claim is not None
    with claim:
        assert fail_dead_runs(instance, store) == [dead.run_id]
    assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED


def test_the_blocking_check_is_left_to_a_first_sync_run_in_progress(defs, instance) -> None:
    starting = dg.DagsterRunStatus.STARTING
    instance.add_run(dg.DagsterRun(INITIAL_JOB, status=starting, tags={KIND_TAG: INITIAL}))
    data = _tick(defs, instance, "marketo_data_freshness_sensor")
    checks = {(e.asset_key.to_user_string(), e.check_name) for e in data.asset_events}
    assert ("people", "smart_list_members") not in checks
    assert ("people", "data_fresh") in checks


def test_the_blocking_check_is_left_to_the_people_step_once_the_smart_list_is_in(defs, instance) -> None:
    _population_loaded(defs.resources["lake"].lake)
    data = _tick(defs, instance, "marketo_data_freshness_sensor")
    checks = {(e.asset_key.to_user_string(), e.check_name) for e in data.asset_events}
    assert ("people", "smart_list_members") not in checks
    assert ("people", "data_fresh") in checks


def test_the_tick_waits_for_the_first_sync_run_to_finish(defs, instance) -> None:
    schedule = defs.resolve_schedule_def("marketo_sync_schedule")
    when = datetime.now(UTC).replace(second=0, microsecond=0)

    def evaluate() -> dg.ScheduleExecutionData:
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as context:
            return schedule.evaluate_tick(context)

    assert "waiting for the first sync" in (evaluate().skip_message or "")
    _population_loaded(defs.resources["lake"].lake)  # the smart list alone: not a finished first sync
    assert "waiting for the first sync" in (evaluate().skip_message or "")
    _first_sync_complete(defs.resources["lake"].lake)
    first_sync = instance.add_run(
        dg.DagsterRun(INITIAL_JOB, status=dg.DagsterRunStatus.STARTED, tags={KIND_TAG: INITIAL})
    )
    skipped = evaluate().skip_message or ""
    assert "waiting for the first sync" in skipped and first_sync.run_id in skipped, skipped
    instance.report_run_canceled(first_sync)
    (request,) = evaluate().run_requests
    assert request.tags[RANGE_END] >= request.tags[RANGE_START]


def test_the_tick_marks_a_succeeded_first_sync_itself(defs, instance) -> None:
    """Ticks need not wait for the onboarding sensor (it may be off) once a first-sync run succeeded."""
    schedule = defs.resolve_schedule_def("marketo_sync_schedule")
    when = datetime.now(UTC).replace(second=0, microsecond=0)
    lake = defs.resources["lake"].lake
    _population_loaded(lake)
    instance.add_run(
        dg.DagsterRun(INITIAL_JOB, status=dg.DagsterRunStatus.SUCCESS, tags={KIND_TAG: INITIAL})
    )
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as context:
        (request,) = schedule.evaluate_tick(context).run_requests
    assert request.tags[RANGE_END] >= request.tags[RANGE_START] and first_sync_done(lake)


def test_write_back_waits_for_the_first_sync(defs, instance) -> None:
    """Before the first sync the tables it pushes from are missing: it skips instead of failing runs."""
    schedule = defs.resolve_schedule_def("marketo_write_back_schedule")
    when = datetime.now(UTC).replace(minute=5, second=0, microsecond=0)

    def evaluate() -> dg.ScheduleExecutionData:
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=when) as context:
            return schedule.evaluate_tick(context)

    assert "waiting for the first sync" in (evaluate().skip_message or "")
    _first_sync_complete(defs.resources["lake"].lake)
    (request,) = evaluate().run_requests
    assert request.job_name in (None, "marketo_write_back_job")
