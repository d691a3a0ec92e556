"""Sensors: the onboarding sensor, which runs the first sync and then the activity history newest first
with nothing but the daemon; the data-freshness sensor (`freshness.py`) and the tick catch-up sensor
(`schedules.py`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import dagster as dg

from molequle_dagster import clock
from molequle_dagster.budget import budget_from_store
from molequle_dagster.conventions import REUSE_SCOPE_TAG
from molequle_dagster.freshness import build_freshness_sensor
from molequle_dagster.jobs import HISTORY_JOB, INITIAL_JOB
from molequle_dagster.marketo.client import scope_key
from molequle_dagster.quota import quota_paused_until
from molequle_dagster.schedules import (
    IN_PROGRESS,
    build_catch_up_sensor,
    fail_dead_runs,
    first_sync_complete,
    newest_first_sync,
    running,
)
from molequle_dagster.settings import MolequleSettings
from molequle_dagster.sync.plan import Step, Wait, next_onboarding_step
from molequle_dagster.sync.run_kind import HISTORY, INITIAL, KIND_TAG

ONBOARDING_SENSOR = "marketo_onboarding_sensor"
ONBOARDING_JOBS = {"initial": INITIAL_JOB, "history": HISTORY_JOB}


def onboarding_step(
    settings: MolequleSettings,
    partitions: dg.DailyPartitionsDefinition,
    resources: dict[str, Any],
    instance: dg.DagsterInstance,
    now: datetime,
) -> Step | Wait | None:
    """The onboarding plan's next step, as the sensor and `molequle sync` both see it: from the lake, the
    instance's materialized partitions, and today's export usage recorded in the coordination store."""
    marketo = resources["marketo"]
    lake = resources["lake"].lake
    with dg.partition_loading_context(effective_dt=now):
        keys = partitions.get_partition_keys()
    done = set(instance.get_materialized_partitions(dg.AssetKey("marketo_activities")))
    config = marketo.client_config()
    budget = budget_from_store(
        marketo.store_for(instance), scope_key(config.base_url), settings.budget, config.zone, now
    )
    takeover = None if first_sync_complete(lake, instance) else takeover_scope(instance)
    step = next_onboarding_step(
        lake,
        keys,
        done,
        ONBOARDING_JOBS,
        budget,
        now,
        quota_paused_until(marketo, instance, now),
    )
    if isinstance(step, Step) and step.kind == INITIAL and takeover:
        # As a Dagster retry would: what the dead first sync exported is read, not paid again.
        step = dataclasses.replace(step, tags={**step.tags, REUSE_SCOPE_TAG: takeover})
    return step


def takeover_scope(instance: dg.DagsterInstance) -> str | None:
    """The reuse scope of the newest first sync when it failed or died, for the next one to take over;
    None when there is none to take over."""
    last = newest_first_sync(instance)
    if last is None or last.status in IN_PROGRESS or last.status == dg.DagsterRunStatus.SUCCESS:
        return None
    return last.tags.get(REUSE_SCOPE_TAG) or last.root_run_id or last.run_id


def onboarding_cursor(step: Step | Wait | None, now: datetime) -> str:
    """The sensor's cursor: where onboarding stands (running, paused until when, complete) and its plan,
    readable in the UI's sensor page and by scripts."""
    if isinstance(step, Wait):
        state: dict[str, Any] = {
            "state": "paused",
            "resumes_at": step.resumes_at.isoformat() if step.resumes_at else None,
            "plan": step.plan,
        }
    elif isinstance(step, Step):
        state = {"state": "running", "step": step.kind, "range": [step.start, step.end]}
    else:
        state = {"state": "complete"}
    return json.dumps({**state, "at": now.isoformat()}, default=str)


def build_sensors(
    settings: MolequleSettings,
    partitions: dg.DailyPartitionsDefinition,
    resources: dict[str, Any],
    jobs: Sequence[Any],
) -> list[dg.SensorDefinition]:
    """`resources` are the definitions' resources; the lake and the store open only when a sensor runs.
    `jobs` are the definitions' jobs: a sensor may only request runs of the jobs it declares."""
    onboarding_jobs = [job for job in jobs if job.name in (INITIAL_JOB, HISTORY_JOB)]

    status = dg.DefaultSensorStatus.RUNNING if settings.sync.automation else dg.DefaultSensorStatus.STOPPED

    @dg.sensor(
        name=ONBOARDING_SENSOR,
        jobs=onboarding_jobs,
        minimum_interval_seconds=60,
        default_status=status,
        description="Runs the first sync when none is done (every person, the last week of activities), then "
        "the activity history newest first, one run at a time, each run as many days as today's export "
        "budget for history pays for (the ticks' reserve kept). When the budget or Marketo's quota is used "
        "up it skips with the reset time and the plan's ETA, and resumes by itself after the reset.",
    )
    def marketo_onboarding_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        now = clock.now()
        fail_dead_runs(context.instance, resources["marketo"].store_for(context.instance))
        for kind in (INITIAL, HISTORY):
            if busy := running(context.instance, kind):
                return dg.SensorResult(skip_reason=f"waiting for the {kind} run {busy[0].run_id}")
        step = onboarding_step(settings, partitions, resources, context.instance, now)
        cursor = onboarding_cursor(step, now)
        if step is None:
            return dg.SensorResult(skip_reason="the first sync and its history are complete", cursor=cursor)
        if isinstance(step, Wait):
            return dg.SensorResult(skip_reason=step.reason, cursor=cursor)
        tags = {KIND_TAG: step.kind, **step.range_tags, **step.tags}
        request = dg.RunRequest(
            job_name=step.job, run_key=f"{step.kind}-{step.start}-{step.end}-{now:%Y%m%d%H%M}", tags=tags
        )
        context.log.info(step.description)
        return dg.SensorResult(run_requests=[request], cursor=cursor)

    return [
        marketo_onboarding_sensor,
        build_freshness_sensor(settings, resources),
        build_catch_up_sensor(settings, partitions, resources),
    ]
