"""Sensors: the onboarding sensor, which runs the first sync and then the activity history newest first
with nothing but the daemon, and the data-freshness sensor, which re-evaluates every current table's
`data_fresh` check from its high-water mark, so stale data shows in the UI even when no run happens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from molequle_dagster import clock
from molequle_dagster.assets.people import PEOPLE, membership_check
from molequle_dagster.conventions import PROMISE_MINUTES, parse_iso
from molequle_dagster.jobs import HISTORY_JOB, INITIAL_JOB
from molequle_dagster.lake import Lake
from molequle_dagster.quota import quota_paused_until
from molequle_dagster.schedules import running
from molequle_dagster.settings import MolequleSettings
from molequle_dagster.sync.plan import Step, Wait, first_sync_done, next_onboarding_step
from molequle_dagster.sync.run_kind import HISTORY, INITIAL, KIND_TAG

# Current tables and their keys: the tables whose data age the UI shows.
FRESH_TABLES = {
    "people": "id",
    "memberships": ["program_id", "lead_id"],
    "marketo_programs": "id",
}
HISTORY_DAYS_PER_RUN = 93  # three 31-day windows: keeps both export slots busy with few runs


def build_sensors(
    settings: MolequleSettings,
    partitions: dg.DailyPartitionsDefinition,
    resources: dict[str, Any],
    jobs: Sequence[Any],
) -> list[dg.SensorDefinition]:
    """`resources` are the definitions' resources; the lake and the store open only when a sensor runs.
    `jobs` are the definitions' jobs: a sensor may only request runs of the jobs it declares."""
    onboarding_jobs = [job for job in jobs if job.name in (INITIAL_JOB, HISTORY_JOB)]

    def lake_of() -> Lake:
        return resources["lake"].lake

    status = dg.DefaultSensorStatus.RUNNING if settings.sync.automation else dg.DefaultSensorStatus.STOPPED

    @dg.sensor(
        name="marketo_onboarding_sensor",
        jobs=onboarding_jobs,
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

    @dg.sensor(
        name="marketo_data_freshness_sensor",
        minimum_interval_seconds=120,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Every 2 minutes: fails a table's data_fresh check when its data (its high-water mark) "
        f"is older than {PROMISE_MINUTES} minutes, whether or not a run is happening; until the first sync "
        "has loaded the smart list, fails the people's blocking smart_list_members check too.",
    )
    def marketo_data_freshness_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        lake = lake_of()
        now = clock.now()
        evaluations = []
        for table, key in FRESH_TABLES.items():
            mark = lake.keyed(table, key).meta.get("complete_through")
            complete = parse_iso(mark) if mark else None
            age_min = (now - complete).total_seconds() / 60 if complete else None
            evaluations.append(
                dg.AssetCheckEvaluation(
                    asset_key=dg.AssetKey(table),
                    check_name="data_fresh",
                    passed=age_min is not None and age_min <= PROMISE_MINUTES,
                    metadata={
                        "data_age_min": round(age_min, 1) if age_min is not None else -1.0,
                        "promise_min": PROMISE_MINUTES,
                    },
                    description=None if complete else "no complete data yet: the first sync has not finished",
                )
            )
        if not first_sync_done(lake) and not running(context.instance, INITIAL):
            # Until the first sync loaded the smart list, the blocking check says so in the UI too. Not
            # while a first-sync run is queued or running: that run shows the check as pending and then
            # evaluates it, and Dagster lists executions in the order they were planned, so ours would
            # hide its result. Re-read just before returning, for the same reason.
            pending = membership_check(lake)
            if not first_sync_done(lake):
                evaluations.append(
                    dg.AssetCheckEvaluation(
                        asset_key=dg.AssetKey(PEOPLE),
                        check_name=pending.check_name or "smart_list_members",
                        passed=pending.passed,
                        description=pending.description,
                    )
                )
        return dg.SensorResult(asset_events=evaluations)

    return [marketo_onboarding_sensor, marketo_data_freshness_sensor]
