"""Sensors: the onboarding sensor, which runs the first sync and then the activity history newest first
with nothing but the daemon; the data-freshness sensor (`freshness.py`) and the tick catch-up sensor
(`schedules.py`)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from molequle_dagster import clock
from molequle_dagster.freshness import build_freshness_sensor
from molequle_dagster.jobs import HISTORY_JOB, INITIAL_JOB
from molequle_dagster.lake import Lake
from molequle_dagster.quota import quota_paused_until
from molequle_dagster.schedules import build_catch_up_sensor, running
from molequle_dagster.settings import MolequleSettings
from molequle_dagster.sync.plan import Step, Wait, next_onboarding_step
from molequle_dagster.sync.run_kind import HISTORY, INITIAL, KIND_TAG

HISTORY_DAYS_PER_RUN = 93  # three 31-day windows: keeps both export slots busy with few runs


def build_sensors(
    settings: MolequleSettings, partitions: dg.DailyPartitionsDefinition, resources: dict[str, Any]
) -> list[dg.SensorDefinition]:
    """`resources` are the definitions' resources; the lake and the store open only when a sensor runs."""

    def lake_of() -> Lake:
        return resources["lake"].lake

    status = dg.DefaultSensorStatus.RUNNING if settings.sync.automation else dg.DefaultSensorStatus.STOPPED

    @dg.sensor(
        name="marketo_onboarding_sensor",
        minimum_interval_seconds=60,
        default_status=status,
        description="Runs the first sync when none is done, then the activity history newest first, one run "
        "at a time, within the day's export budget; pauses until Marketo's quota resets when it is used up.",
    )
    def marketo_onboarding_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        for kind in (INITIAL, HISTORY):
            if busy := running(context.instance, kind):
                return dg.SkipReason(f"waiting for the {kind} run {busy[0].run_id}")
        lake = lake_of()
        with dg.partition_loading_context(effective_dt=clock.now()):
            keys = partitions.get_partition_keys()
        done = context.instance.get_materialized_partitions(dg.AssetKey("marketo_activities"))
        step = next_onboarding_step(
            lake,
            keys,
            set(done),
            HISTORY_DAYS_PER_RUN,
            {"initial": INITIAL_JOB, "history": HISTORY_JOB},
            quota_paused_until(resources["marketo"], context.instance),
        )
        if step is None:
            return dg.SkipReason("the first sync and its history are complete")
        if isinstance(step, Wait):
            return dg.SkipReason(step.reason)
        assert isinstance(step, Step)
        tags = {KIND_TAG: step.kind, **step.range_tags, **step.tags}
        request = dg.RunRequest(
            job_name=step.job,
            run_key=f"{step.kind}-{step.start}-{step.end}-{clock.now():%Y%m%d%H%M}",
            tags=tags,
        )
        context.log.info(step.description)
        return dg.SensorResult(run_requests=[request])

    return [
        marketo_onboarding_sensor,
        build_freshness_sensor(settings),
        build_catch_up_sensor(settings, partitions, resources),
    ]
