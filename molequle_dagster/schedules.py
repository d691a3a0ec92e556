"""Schedules: a tick every sync interval (30 minutes by default) and a daily job that closes yesterday."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from molequle_dagster.assets.common import quota_paused_until
from molequle_dagster.assets.write_back import WRITE_BACK_JOB, write_back_enabled
from molequle_dagster.jobs import marketo_daily_job, marketo_sync_job
from molequle_dagster.lake import Lake
from molequle_dagster.resources import lake_uri
from molequle_dagster.settings import MolequleSettings


def build_schedules(
    settings: MolequleSettings, partitions: dg.DailyPartitionsDefinition
) -> list[dg.ScheduleDefinition]:
    # A sync step that hit Marketo's daily quota records it in the lake; ticks pause until the reset
    # rather than fail every 30 minutes and spend more of the customer's quota.
    lake = Lake(lake_uri(settings))

    @dg.schedule(
        name="marketo_sync_schedule",
        cron_schedule=settings.sync.cron_schedule,
        job=marketo_sync_job,
        execution_timezone="UTC",
        description=f"Every {settings.sync.interval_minutes} min: people, accounts and today's activities.",
    )
    def marketo_sync_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        when = context.scheduled_execution_time
        if paused := quota_paused_until(lake, when):
            return dg.SkipReason(f"Marketo quota used up until {paused[0].isoformat()}: {paused[1]}")
        key = partitions.get_partition_key_for_timestamp(when.timestamp())
        return dg.RunRequest(run_key=f"tick-{when:%Y-%m-%dT%H%M}", partition_key=key)

    @dg.schedule(
        name="marketo_daily_schedule",
        # 01:15, not right after midnight: the hour-long lookback of the close also catches yesterday's
        # records that Marketo made visible after midnight.
        cron_schedule="15 1 * * *",
        job=marketo_daily_job,
        execution_timezone="UTC",
        description="01:15 UTC: close yesterday and refresh the smart-list population.",
    )
    def marketo_daily_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        if paused := quota_paused_until(lake, context.scheduled_execution_time):
            return dg.SkipReason(f"Marketo quota used up until {paused[0].isoformat()}: {paused[1]}")
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
