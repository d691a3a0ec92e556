"""`molequle sync`: run what the automation would run, in this process, until the lake is up to date.

The same plan as the daemon's (the onboarding sensor's `onboarding_step`, `sync/plan.py`): the first
sync, then activity history newest first in runs sized to today's export budget, then the close of
yesterday if no daily run did it, then a tick. Runs land in DAGSTER_HOME, so the UI shows them like
scheduled ones. A recorded quota stop or a used-up history budget pauses it (the report says until when);
nothing calls Marketo before the reset. `wait_for_reset` lets a caller wait the pause out instead (the
first-sync benchmark, on the virtual clock), which is what the daemon does.

With the package's own definitions (`molequle_dagster.definitions`), a persistent instance and a Marketo
that takes minutes per export (`marketo.bulk.poll_interval_s` ≥ 10 s, as advised against Marketo), the
first sync runs its steps side by side in processes of their own, as the daemon's multiprocess executor
does: its people, today's activities and program-member exports then share Marketo's two processing
slots instead of waiting for each other (in-process steps run one after the other). Other runs (history:
one step; the close and ticks: short), the instant sandbox and definitions built by the caller run
in-process.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dagster as dg

from molequle_dagster import clock
from molequle_dagster.conventions import step_totals
from molequle_dagster.coordination import CoordinationStore
from molequle_dagster.jobs import DAILY_JOB, INITIAL_JOB, SYNC_JOB
from molequle_dagster.quota import quota_paused_until
from molequle_dagster.schedules import (
    CLAIM_TAG,
    IN_PROCESS_TAG,
    fail_dead_runs,
    first_sync_complete,
    run_claim,
)
from molequle_dagster.sensors import ONBOARDING_SENSOR
from molequle_dagster.sync.plan import RANGE_END, RANGE_START, Wait, tick_range
from molequle_dagster.sync.run_kind import DAILY, KIND_TAG, TICK

MARKETO_ACTIVITIES = dg.AssetKey("marketo_activities")
# Steps of the first sync at once: its bulk steps mostly wait on Marketo (the `marketo_bulk` pool and the
# client's queue share still hold Marketo's limits), so more than the two cores.
SIDE_BY_SIDE_STEPS = 4
# Side by side pays when Marketo takes minutes per export (its status refreshes once a minute, so the
# client polls that slowly); against the instant sandbox (packaged 1 s) a process per step only costs.
SIDE_BY_SIDE_MIN_POLL_S = 10.0
PLANNED_AS_ONE_EVENT_ENV = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


@dataclass
class SyncReport:
    kind: str
    lake_uri: str
    runs: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    api_calls: int = 0
    exports: int = 0
    export_bytes: int = 0
    paused_until: datetime | None = None  # a quota pause stopped it: nothing runs before then
    waits: int = 0  # pauses waited out (`wait_for_reset`)

    @property
    def success(self) -> bool:
        return not self.failures


def run_sync(
    defs: dg.Definitions | None = None,
    instance: dg.DagsterInstance | None = None,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
    log_level: str = "DEBUG",
    max_runs: int = 100,
    wait_for_reset: Callable[[Wait], bool] | None = None,
    after_run: Callable[[], None] | None = None,
    onboarding_only: bool = False,
) -> SyncReport:
    """Run the plan to the end (or until a failure or a quota pause). `progress` gets one line per run;
    `log_level` sets the console logger of the in-process runs (the CLI keeps it to warnings);
    `wait_for_reset(wait)` is asked on a pause and returns True once it waited until `wait.resumes_at`;
    `after_run()` follows each onboarding run (a benchmark spends the daemon's sensor interval there);
    `onboarding_only` stops once the first sync and its history are done (no close, no tick)."""
    packaged = defs is None  # the package's definitions: a step process can load them by itself
    if defs is None:
        from molequle_dagster.definitions import defs as loaded

        defs = loaded
    instance = instance or dg.DagsterInstance.get()
    poll_s = defs.resources["settings"].settings.marketo.bulk.poll_interval_s
    side_by_side = packaged and instance.is_persistent and poll_s >= SIDE_BY_SIDE_MIN_POLL_S
    lake = defs.resources["lake"].lake
    report = SyncReport(kind="tick", lake_uri=lake.uri)
    say = progress or (lambda _line: None)
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    marketo = defs.resources["marketo"]
    store = marketo.store_for(instance)
    # A `molequle sync` killed earlier left its run 'started': failed now, so the plan finishes its work.
    fail_dead_runs(instance, store)
    if paused := quota_paused_until(marketo, instance, now or clock.now()):
        report.failures.append(f"Marketo quota used up; paused until {paused[0].isoformat()}: {paused[1]}")
        report.paused_until = paused[0]
        return report
    partitions = defs.resolve_assets_def("marketo_activities").partitions_def
    sensor = defs.resolve_sensor_def(ONBOARDING_SENSOR)
    cursor: str | None = None
    skipped = ""
    for _ in range(max_runs):
        # The daemon's own plan: evaluate the onboarding sensor and run what it asks for, here.
        result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))
        assert isinstance(result, dg.SensorResult)
        cursor = result.cursor or cursor
        state = json.loads(cursor) if cursor else {}
        if not result.run_requests:
            if state.get("state") != "paused":
                skipped = _skip_text(result)
                break  # complete (or nothing the plan can do)
            wait = Wait(_skip_text(result), _when(state.get("resumes_at")), state.get("plan") or {})
            if wait_for_reset is not None and wait_for_reset(wait):
                report.waits += 1
                continue
            report.failures.append(wait.reason)
            report.paused_until = wait.resumes_at
            return report
        report.kind = "initial"
        for request in result.run_requests:
            say(f"{state.get('step')} {'..'.join(state.get('range') or [])} ...")
            if side_by_side and request.job_name == INITIAL_JOB:
                _run_side_by_side(report, store, request.job_name, instance, run_config, request.tags)
            else:
                job = defs.resolve_job_def(request.job_name)
                with planned_as_one_event():
                    _run(report, store, job, instance, run_config, tags=request.tags)
            if not report.success:
                return report
        if after_run is not None:
            after_run()
    if onboarding_only:
        return report
    if not first_sync_complete(lake, instance):
        # Ticks and the close wait for the whole first sync (e.g. one another process is running).
        report.failures.append(f"the first sync is not complete: {skipped or 'see the onboarding sensor'}")
        return report
    with dg.partition_loading_context(effective_dt=clock.now()):
        keys = partitions.get_partition_keys()
    yesterday = keys[-2] if len(keys) > 1 else None
    if (
        report.kind == "tick"
        and yesterday
        and not lake.days("marketo_activities").cursor(yesterday).get("closed")
    ):
        # What the daily schedule does after midnight, for setups that only run `molequle sync`.
        say(f"closing {yesterday}: bulk re-export, smart-list refresh, reconciliation ...")
        _run(
            report,
            store,
            defs.resolve_job_def(DAILY_JOB),
            instance,
            run_config,
            partition_key=yesterday,
            tags={KIND_TAG: DAILY},
        )
        if not report.success:
            return report
    start, end = tick_range(lake, keys)
    say(f"tick: what changed since the last sync ({start}..{end}) ...")
    _run(
        report,
        store,
        defs.resolve_job_def(SYNC_JOB),
        instance,
        run_config,
        tags={KIND_TAG: TICK, RANGE_START: start, RANGE_END: end},
    )
    return report


@contextmanager
def planned_as_one_event() -> Iterator[None]:
    """Runs created meanwhile log one "materialization planned" event per asset for their range of days
    instead of one per day: a two-year history run's 722 SQLite commits (~28 s of a 100k first sync,
    most of Dagster's share) become one. Dagster's switch for it is an environment variable it reads at
    run creation. Its other effect suits a history run: days of a run that fails stay missing instead of
    turning red (a paused or failed history is re-planned, not retried day by day). Only the onboarding
    runs `molequle sync` executes use it; the daemon and the UI keep Dagster's default unless
    DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS is set in their environment (docs/production.md)."""
    before = os.environ.get(PLANNED_AS_ONE_EVENT_ENV)
    os.environ[PLANNED_AS_ONE_EVENT_ENV] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PLANNED_AS_ONE_EVENT_ENV, None)
        else:
            os.environ[PLANNED_AS_ONE_EVENT_ENV] = before


def packaged_job(name: str) -> dg.JobDefinition:
    """A job of the package's definitions, as each step process of a side-by-side run loads it."""
    from molequle_dagster.definitions import defs

    return defs.resolve_job_def(name)


def _run_side_by_side(
    report: SyncReport,
    store: CoordinationStore,
    name: str,
    instance: dg.DagsterInstance,
    run_config: dict,
    tags: dict[str, str],
) -> None:
    """One run, its independent steps at once in processes of their own (the daemon's executor)."""
    job = dg.build_reconstructable_job(__name__, packaged_job.__name__, reconstructable_args=(name,))
    # Each step process forks from a server that imported Dagster and the definitions once (a spawned
    # process imports them anew: seconds of CPU a step).
    start = {"forkserver": {"preload_modules": ["dagster", "molequle_dagster.definitions", __name__]}}
    engine = {"max_concurrent": SIDE_BY_SIDE_STEPS, "start_method": start}
    config = {**run_config, "execution": {"config": {"multiprocess": engine}}}
    with (
        _claimed(store) as claim_tags,
        clock.children_at_work(),
        dg.execute_job(
            job, instance, run_config=config, tags={**tags, **claim_tags}, raise_on_error=False
        ) as result,
    ):
        _record(report, result, instance)


def _run(
    report: SyncReport,
    store: CoordinationStore,
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    run_config: dict,
    tags: dict[str, str],
    **kwargs: Any,
) -> None:
    with _claimed(store) as claim_tags:
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config=run_config,
            tags={**tags, **claim_tags},
            **kwargs,
        )
    _record(report, result, instance)


@contextmanager
def _claimed(store: CoordinationStore) -> Iterator[dict[str, str]]:
    """The tags of a run this process executes, and their claim, held until the run has ended: a later
    `molequle sync` (or the daemon) that finds the claim free while the run still shows 'started' knows
    this process died."""
    key = str(uuid.uuid4())
    claim = store.try_claim(run_claim(key))
    if claim is None:
        raise RuntimeError(f"the claim {key} of a new run is held by another process")
    with claim:
        yield {IN_PROCESS_TAG: "true", CLAIM_TAG: key}


def _record(
    report: SyncReport,
    result: dg.ExecuteInProcessResult | dg.ExecuteJobResult,
    instance: dg.DagsterInstance,
) -> None:
    report.runs.append(result.run_id)
    counted: set[str | None] = set()
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION" and event.step_key not in counted:
            metadata = event.step_materialization_data.materialization.metadata
            if "api_calls" in metadata:
                counted.add(event.step_key)
                report.api_calls += int(metadata["api_calls"].value)
                report.exports += int(metadata["exports_created"].value)
                report.export_bytes += int(metadata["export_bytes"].value)
    run = instance.get_run_by_id(result.run_id)
    for step, totals in step_totals(run).items():
        if step not in counted:
            report.api_calls += int(totals.get("api_calls", 0))
            report.exports += int(totals.get("exports_created", 0))
            report.export_bytes += int(totals.get("export_bytes", 0))
    if not result.success:
        failure = result.get_run_failure_event()
        steps = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        messages = [f"{e.step_key}: {e.event_specific_data.error.message.strip()}" for e in steps]
        report.failures.extend(messages or [failure.message if failure else f"run {result.run_id} failed"])


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _skip_text(result: dg.SensorResult) -> str:
    skip = result.skip_reason
    return skip.skip_message or "" if skip is not None else ""
