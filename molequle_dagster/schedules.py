"""Schedules: a tick every sync interval (30 minutes by default) and a daily job that closes yesterday."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from molequle_dagster.assets.write_back import WRITE_BACK_JOB, write_back_enabled
from molequle_dagster.jobs import marketo_daily_job, marketo_sync_job
from molequle_dagster.settings import MolequleSettings


def build_schedules(
    settings: MolequleSettings, partitions: dg.DailyPartitionsDefinition
) -> list[dg.ScheduleDefinition]:
    @dg.schedule(
        name="marketo_sync_schedule",
        cron_schedule=settings.sync.cron_schedule,
        job=marketo_sync_job,
        execution_timezone="UTC",
        description=f"Every {settings.sync.interval_minutes} min: people, accounts and today's activities.",
    )
    def marketo_sync_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        when = context.scheduled_execution_time
        key = partitions.get_partition_key_for_timestamp(when.timestamp())
        return dg.RunRequest(run_key=f"tick-{when:%Y-%m-%dT%H%M}", partition_key=key)

    @dg.schedule(
        name="marketo_daily_schedule",
        cron_schedule="15 0 * * *",
        job=marketo_daily_job,
        execution_timezone="UTC",
        description="Shortly after midnight UTC: close yesterday and refresh the smart-list population.",
    )
    def marketo_daily_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        yesterday = context.scheduled_execution_time - timedelta(days=1)
        key = partitions.get_partition_key_for_timestamp(yesterday.timestamp())
        return dg.RunRequest(run_key=f"close-{key}", partition_key=key)

    schedules = [marketo_sync_schedule, marketo_daily_schedule]
    if write_back_enabled(settings):
        # Between ticks, so the values pushed are those of the freshly unified tables.
        schedules.append(
            dg.ScheduleDefinition(
                name="marketo_write_back_schedule",
                cron_schedule="20,50 * * * *",
                job_name=WRITE_BACK_JOB,
                execution_timezone="UTC",
                description="Push changed Molequle attributes to Marketo (Sync Leads, updateOnly by id).",
            )
        )
    return schedules
