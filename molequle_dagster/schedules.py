"""Schedules: the tick every `sync.interval_minutes`, the daily close, and write-back between ticks.

The tick never overlaps itself: while one runs, the next is skipped with the reason shown in the UI, and
the one after covers the gap (each table reads from its own cursor). Ticks wait for the first sync, and
everything waits out a used-up Marketo quota.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import dagster as dg

from molequle_dagster.jobs import DAILY_JOB, SYNC_JOB, WRITE_BACK_JOB, write_back_enabled
from molequle_dagster.lake import Lake
from molequle_dagster.quota import quota_paused_until
from molequle_dagster.settings import MolequleSettings
from molequle_dagster.sync.plan import RANGE_END, RANGE_START, first_sync_done, tick_range
from molequle_dagster.sync.run_kind import INITIAL, KIND_TAG, TICK

IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def running(instance: dg.DagsterInstance, kind: str) -> list[dg.DagsterRun]:
    return list(
        instance.get_runs(filters=dg.RunsFilter(tags={KIND_TAG: kind}, statuses=IN_PROGRESS), limit=5)
    )


def automation_status(settings: MolequleSettings) -> dg.DefaultScheduleStatus:
    return dg.DefaultScheduleStatus.RUNNING if settings.sync.automation else dg.DefaultScheduleStatus.STOPPED


def build_schedules(
    settings: MolequleSettings, partitions: dg.DailyPartitionsDefinition, resources: dict[str, Any]
) -> list[dg.ScheduleDefinition]:
    """`resources` are the definitions' resources: the lake and the coordination store open only when a
    schedule is evaluated (never at import: no I/O at load)."""

    def lake_of() -> Lake:
        return resources["lake"].lake

    def paused(context: Any, when: Any) -> tuple[Any, str] | None:
        return quota_paused_until(resources["marketo"], context.instance, when)

    @dg.schedule(
        name="marketo_sync_schedule",
        cron_schedule=settings.sync.cron_schedule,
        job_name=SYNC_JOB,
        execution_timezone="UTC",
        default_status=automation_status(settings),
        description=f"Every {settings.sync.interval_minutes} min: what changed in Marketo, into every table.",
    )
    def marketo_sync_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        lake: Lake = lake_of()
        when = context.scheduled_execution_time
        if stop := paused(context, when):
            return dg.SkipReason(f"Marketo quota used up until {stop[0].isoformat()}: {stop[1]}")
        if not first_sync_done(lake):
            return dg.SkipReason("waiting for the first sync (marketo_onboarding_sensor starts it)")
        if initial := running(context.instance, INITIAL):
            # The smart list is in before the first sync's other steps are: a tick now would fold the same
            # tables beside them.
            return dg.SkipReason(f"waiting for the first sync (run {initial[0].run_id}) to finish")
        if busy := running(context.instance, TICK):
            return dg.SkipReason(
                f"the previous tick (run {busy[0].run_id}) is still running; the next tick covers the gap"
            )
        with dg.partition_loading_context(effective_dt=when):
            keys = partitions.get_partition_keys()
        start, end = tick_range(lake, keys)
        return dg.RunRequest(run_key=f"tick-{when:%Y-%m-%dT%H%M}", tags={RANGE_START: start, RANGE_END: end})

    @dg.schedule(
        name="marketo_daily_schedule",
        # 01:15, not right after midnight: Marketo makes some records visible minutes late.
        cron_schedule="15 1 * * *",
        job_name=DAILY_JOB,
        execution_timezone="UTC",
        default_status=automation_status(settings),
        description="01:15 UTC: close yesterday in bulk, refresh the smart list, reconciliation slices.",
    )
    def marketo_daily_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        lake: Lake = lake_of()
        if stop := paused(context, context.scheduled_execution_time):
            return dg.SkipReason(f"Marketo quota used up until {stop[0].isoformat()}: {stop[1]}")
        if not first_sync_done(lake):
            return dg.SkipReason("waiting for the first sync (marketo_onboarding_sensor starts it)")
        yesterday = context.scheduled_execution_time - timedelta(days=1)
        key = partitions.get_partition_key_for_timestamp(yesterday.timestamp())
        return dg.RunRequest(run_key=f"close-{key}", partition_key=key)

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
        if stop := paused(context, context.scheduled_execution_time):
            return dg.SkipReason(f"Marketo quota used up until {stop[0].isoformat()}: {stop[1]}")
        if not first_sync_done(lake_of()) or running(context.instance, INITIAL):
            return dg.SkipReason("waiting for the first sync (marketo_onboarding_sensor starts it)")
        return dg.RunRequest(run_key=f"write-back-{context.scheduled_execution_time:%Y-%m-%dT%H%M}")

    schedules = [marketo_sync_schedule, marketo_daily_schedule]
    if write_back_enabled(settings):
        schedules.append(marketo_write_back_schedule)
    return schedules
