"""Schedules: the tick every `sync.interval_minutes`, the daily close, and write-back between ticks; and the
sensor that runs a skipped tick as soon as it can.

Runs that fold into the current tables (a tick, the daily close, the first sync) never overlap: two folds
of one table at once could each commit what the other did not see. A tick due while one of them is in
progress is skipped with the reason shown in the UI; `marketo_tick_catch_up_sensor` runs it as soon as the
run that held it back ends (it reads from every table's cursor, so it covers the gap), instead of leaving
the data to age until the next slot. The close of yesterday starts at 01:02 UTC, just after a tick, and is
tried again while it has to wait (a run in progress, a quota stop, a failed close) until it is done. Ticks
wait for the first sync, and everything waits out a used-up Marketo quota. History runs (old days of
activities) may run beside ticks: they write only days the ticks do not touch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import dagster as dg

from molequle_dagster import clock
from molequle_dagster.conventions import iso, parse_iso
from molequle_dagster.coordination import CoordinationStore
from molequle_dagster.jobs import DAILY_JOB, SYNC_JOB, WRITE_BACK_JOB, write_back_enabled
from molequle_dagster.lake import Lake
from molequle_dagster.quota import quota_paused_until
from molequle_dagster.settings import MolequleSettings
from molequle_dagster.sync.plan import (
    RANGE_END,
    RANGE_START,
    first_sync_done,
    mark_first_sync_done,
    population_loaded,
    tick_range,
)
from molequle_dagster.sync.run_kind import DAILY, INITIAL, KIND_TAG, TICK

LAKE_FOLDERS = (TICK, DAILY, INITIAL)  # runs that fold into the current tables: never two at once
PARTITION_TAG = "dagster/partition"
SLOT_TAG = "molequle/tick_slot"  # the schedule slot a tick stands for (a catch-up: the one it makes up)
# The catch-up sensor keeps away from the schedule's own evaluations, so the two never miss each other's
# run: the schedule's run exists 90 s after its slot, and 60 s before the next one the schedule ticks anyway.
CATCH_UP_AFTER = timedelta(seconds=90)
CATCH_UP_BEFORE = timedelta(seconds=60)
# After 01:00, not right after midnight: Marketo makes some records visible minutes late. Two minutes past
# a tick, so the close holds back as few ticks as can be; every 10 minutes until 02:00, then hourly.
CLOSE_CRON = ["2-59/10 1 * * *", "2 2-23 * * *"]
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def running(instance: dg.DagsterInstance, kind: str | Sequence[str]) -> list[dg.DagsterRun]:
    """Runs of this kind (or kinds) queued or in progress, newest first."""
    kinds = kind if isinstance(kind, str) else list(kind)
    return list(
        instance.get_runs(filters=dg.RunsFilter(tags={KIND_TAG: kinds}, statuses=IN_PROGRESS), limit=5)
    )


# Runs `molequle sync` executes in its own process (`execute_in_process`): that process holds the run's claim
# in the coordination store while it runs, and a dead process's claims are free at once.
IN_PROCESS_TAG = "molequle/in_process"
CLAIM_TAG = "molequle/claim"  # the coordination-store claim its process holds while the run lasts


def run_claim(key: str) -> str:
    return f"dagster-run:{key}"


def fail_dead_runs(instance: dg.DagsterInstance, store: CoordinationStore) -> list[str]:
    """Mark failed the runs whose `molequle sync` process died (kill -9): left 'started' in the instance,
    they would hold back the first sync and the ticks for ever (run monitoring does this for the daemon's
    runs). A failed first sync is then finished by the next one, which takes over its reuse scope."""
    dead = []
    candidates = instance.get_runs(
        filters=dg.RunsFilter(tags={IN_PROCESS_TAG: "true"}, statuses=IN_PROGRESS), limit=20
    )
    for run in candidates:
        claim = store.try_claim(run_claim(run.tags.get(CLAIM_TAG, run.run_id)))
        if claim is None:
            continue  # its process is alive
        with claim:
            # Its process ends a run before releasing the claim: still in progress now means it died.
            latest = instance.get_run_by_id(run.run_id)
            if latest is not None and latest.status in IN_PROGRESS:
                instance.report_run_failed(latest, "the `molequle sync` process running it died")
                dead.append(run.run_id)
    return dead


def newest_first_sync(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={KIND_TAG: INITIAL}), limit=1)
    return runs[0] if runs else None


def first_sync_complete(lake: Lake, instance: dg.DagsterInstance) -> bool:
    """The lake's first-sync marker; without it, written now if the newest first-sync run succeeded (with
    the smart list in this lake, not one emptied since): whoever asks first after that run, the onboarding
    sensor or a schedule, records it, so ticks never wait for a sensor that may be off."""
    if first_sync_done(lake):
        return True
    last = newest_first_sync(instance)
    if last is None or last.status != dg.DagsterRunStatus.SUCCESS or not population_loaded(lake):
        return False
    mark_first_sync_done(lake, last.run_id, clock.now())
    return True


def in_progress_reason(busy: list[dg.DagsterRun]) -> str:
    run = busy[0]
    kind = run.tags.get(KIND_TAG, "sync")
    state = f"run {run.run_id}, {run.status.value.lower()}"
    if kind == INITIAL:
        return f"waiting for the first sync ({state}) to finish"
    what = "the previous tick" if kind == TICK else f"the {kind} run"
    return f"{what} ({state}) is still in progress"


def slots_around(now: datetime, interval_minutes: int) -> tuple[datetime, datetime]:
    """The tick slot at or before `now`, and the next one (the cron `*/interval` of each hour)."""
    slot = now.replace(minute=now.minute - now.minute % interval_minutes, second=0, microsecond=0)
    return slot, slot + timedelta(minutes=interval_minutes)


def tick_of_slot(instance: dg.DagsterInstance, slot: datetime) -> dg.DagsterRun | None:
    """The newest tick run that stands for `slot` or a later one, if there is one."""
    for run in instance.get_runs(filters=dg.RunsFilter(tags={KIND_TAG: TICK}), limit=5):
        stands_for = run.tags.get(SLOT_TAG)
        if stands_for and parse_iso(stands_for) >= slot:
            return run
    return None


def close_done(instance: dg.DagsterInstance, key: str) -> dg.DagsterRun | None:
    """The successful close of day `key`, if there is one."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            tags={KIND_TAG: DAILY, PARTITION_TAG: key}, statuses=[dg.DagsterRunStatus.SUCCESS]
        ),
        limit=1,
    )
    return runs[0] if runs else None


def close_attempted(instance: dg.DagsterInstance, key: str) -> bool:
    return bool(instance.get_run_ids(filters=dg.RunsFilter(tags={KIND_TAG: DAILY, PARTITION_TAG: key})))


def automation_status(settings: MolequleSettings) -> dg.DefaultScheduleStatus:
    return dg.DefaultScheduleStatus.RUNNING if settings.sync.automation else dg.DefaultScheduleStatus.STOPPED


def quota_stop_reason(resources: dict[str, Any], instance: dg.DagsterInstance, when: datetime) -> str | None:
    stop = quota_paused_until(resources["marketo"], instance, when)
    return f"Marketo quota used up until {stop[0].isoformat()}: {stop[1]}" if stop else None


def tick_request(
    resources: dict[str, Any],
    partitions: dg.DailyPartitionsDefinition,
    instance: dg.DagsterInstance,
    slot: datetime,
    prefix: str,
) -> dg.RunRequest | dg.SkipReason:
    """A tick standing for the schedule slot `slot`, unless it must wait (quota, first sync, a run that
    folds into the same tables)."""
    lake: Lake = resources["lake"].lake
    if stopped := quota_stop_reason(resources, instance, slot):
        return dg.SkipReason(stopped)
    if not first_sync_complete(lake, instance):
        return dg.SkipReason("waiting for the first sync (marketo_onboarding_sensor starts it)")
    fail_dead_runs(instance, resources["marketo"].store_for(instance))
    if busy := running(instance, LAKE_FOLDERS):
        return dg.SkipReason(
            f"{in_progress_reason(busy)}; marketo_tick_catch_up_sensor runs this tick when it ends"
        )
    with dg.partition_loading_context(effective_dt=slot):
        keys = partitions.get_partition_keys()
    start, end = tick_range(lake, keys)
    tags = {RANGE_START: start, RANGE_END: end, SLOT_TAG: iso(slot)}
    return dg.RunRequest(run_key=f"{prefix}-{slot:%Y-%m-%dT%H%M}", tags=tags)


def build_schedules(
    settings: MolequleSettings, partitions: dg.DailyPartitionsDefinition, resources: dict[str, Any]
) -> list[dg.ScheduleDefinition]:
    """`resources` are the definitions' resources: the lake and the coordination store open only when a
    schedule is evaluated (never at import: no I/O at load)."""

    @dg.schedule(
        name="marketo_sync_schedule",
        cron_schedule=settings.sync.cron_schedule,
        job_name=SYNC_JOB,
        execution_timezone="UTC",
        default_status=automation_status(settings),
        description=f"Every {settings.sync.interval_minutes} min: what changed in Marketo, into every table. "
        "Skipped, with the reason, while a tick, the daily close or the first sync runs.",
    )
    def marketo_sync_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        return tick_request(resources, partitions, context.instance, context.scheduled_execution_time, "tick")

    @dg.schedule(
        name="marketo_daily_schedule",
        cron_schedule=CLOSE_CRON,
        job_name=DAILY_JOB,
        execution_timezone="UTC",
        default_status=automation_status(settings),
        description="01:02 UTC (tried again every 10 minutes until 02:00, then hourly, until done): close "
        "yesterday in bulk, refresh the smart list, reconciliation slices. Ticks wait while it runs.",
    )
    def marketo_daily_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        lake: Lake = resources["lake"].lake
        when = context.scheduled_execution_time
        if stopped := quota_stop_reason(resources, context.instance, when):
            return dg.SkipReason(stopped)
        if not first_sync_complete(lake, context.instance):
            return dg.SkipReason("waiting for the first sync (marketo_onboarding_sensor starts it)")
        key = partitions.get_partition_key_for_timestamp((when - timedelta(days=1)).timestamp())
        if done := close_done(context.instance, key):
            return dg.SkipReason(f"{key} is closed (run {done.run_id})")
        fail_dead_runs(context.instance, resources["marketo"].store_for(context.instance))
        if busy := running(context.instance, LAKE_FOLDERS):
            return dg.SkipReason(f"{in_progress_reason(busy)}; closing {key} at the next try")
        # A new run key after a failed close: the daemon never launches a run key twice.
        run_key = f"close-{key}-{when:%H%M}" if close_attempted(context.instance, key) else f"close-{key}"
        return dg.RunRequest(run_key=run_key, partition_key=key)

    @dg.schedule(
        name="marketo_write_back_schedule",
        cron_schedule="5,15,25,35,45,55 * * * *",  # between the 10-minute ticks
        job_name=WRITE_BACK_JOB,
        execution_timezone="UTC",
        default_status=automation_status(settings),
        description="Push changed Molequle attributes to Marketo (Sync Leads, updateOnly by id).",
    )
    def marketo_write_back_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        # Before the first sync the tables it pushes from are missing: its runs would only fail.
        if stopped := quota_stop_reason(resources, context.instance, context.scheduled_execution_time):
            return dg.SkipReason(stopped)
        lake = resources["lake"].lake
        if not first_sync_complete(lake, context.instance) or running(context.instance, INITIAL):
            return dg.SkipReason("waiting for the first sync (marketo_onboarding_sensor starts it)")
        return dg.RunRequest(run_key=f"write-back-{context.scheduled_execution_time:%Y-%m-%dT%H%M}")

    schedules = [marketo_sync_schedule, marketo_daily_schedule]
    if write_back_enabled(settings):
        schedules.append(marketo_write_back_schedule)
    return schedules


def build_catch_up_sensor(
    settings: MolequleSettings, partitions: dg.DailyPartitionsDefinition, resources: dict[str, Any]
) -> dg.SensorDefinition:
    """The tick the schedule skipped because a run was in progress, as soon as that run ends."""
    status = dg.DefaultSensorStatus.RUNNING if settings.sync.automation else dg.DefaultSensorStatus.STOPPED

    @dg.sensor(
        name="marketo_tick_catch_up_sensor",
        job_name=SYNC_JOB,
        minimum_interval_seconds=30,
        default_status=status,
        description="Runs a tick the schedule skipped (while the daily close, a long tick or the first sync "
        "ran) as soon as that run ends, instead of at the next slot: data is then never older than the "
        "longest run plus a few minutes.",
    )
    def marketo_tick_catch_up_sensor(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        now = clock.now()
        slot, next_slot = slots_around(now, settings.sync.interval_minutes)
        if now - slot < CATCH_UP_AFTER or next_slot - now < CATCH_UP_BEFORE:
            return dg.SkipReason(f"the schedule's own slot ({slot:%H:%M} or {next_slot:%H:%M}) is too close")
        if ran := tick_of_slot(context.instance, slot):
            return dg.SkipReason(f"the {slot:%H:%M} tick ran (run {ran.run_id})")
        return tick_request(resources, partitions, context.instance, slot, "catch-up")

    return marketo_tick_catch_up_sensor
