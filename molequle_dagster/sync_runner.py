"""Drive a sync through the Dagster instance: the initial sync (population, then history newest-first in
≤ 31-day ranges, then a tick) or a tick. Used by `molequle sync`; the runs land in DAGSTER_HOME, so the UI
shows them like scheduled runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg

from molequle_dagster.jobs import DAILY_JOB, INITIAL_JOB, SYNC_JOB
from molequle_dagster.partitions import partition_window

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
INITIAL_STATE = "initial_sync"


@dataclass
class SyncReport:
    kind: str
    lake_uri: str
    runs: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    api_calls: int = 0
    exports: int = 0
    bulk_bytes: int = 0

    @property
    def success(self) -> bool:
        return not self.failures


def run_sync(
    defs: dg.Definitions | None = None,
    instance: dg.DagsterInstance | None = None,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
    log_level: str = "DEBUG",
) -> SyncReport:
    """Run the initial sync (if the lake has no people yet) or a tick. `progress` gets one line per run;
    `log_level` sets the console logger of the in-process runs (the CLI keeps it to warnings)."""
    if defs is None:
        from molequle_dagster.definitions import defs as loaded

        defs = loaded
    instance = instance or dg.DagsterInstance.get()
    lake = defs.resources["lake"].lake
    report = SyncReport(kind="tick", lake_uri=lake.uri)
    say = progress or (lambda _line: None)
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    now = now or datetime.now(UTC)
    partitions = defs.resolve_assets_def("activities").partitions_def
    with dg.partition_loading_context(effective_dt=now):
        keys = partitions.get_partition_keys()
    today = keys[-1]

    initial = defs.resolve_job_def(INITIAL_JOB)
    if not lake.read_state(INITIAL_STATE).get("completed_at"):
        # Not done until every history day is in: a crash or a quota stop resumes where it stopped.
        report.kind = "initial" if lake.read_current("people") is None else "initial (resumed)"
        if lake.read_current("people") is None:
            unpartitioned = [
                k
                for k in initial.asset_layer.executable_asset_keys
                if defs.resolve_assets_def(k).partitions_def is None
            ]
            say("initial sync: smart-list population, accounts, programs, unification ...")
            _run(report, initial, instance, run_config, asset_selection=unpartitioned)
            if not report.success:
                return report
        missing = [k for k in keys[:-1] if not _closed(lake, k)]
        for start, end in missing_ranges(missing, keys, _window_days(defs)):
            say(f"activities {start} .. {end} (one bulk export) ...")
            _run(
                report,
                initial,
                instance,
                run_config,
                asset_selection=[dg.AssetKey("activities")],
                tags={RANGE_START: start, RANGE_END: end},
            )
            if not report.success:
                return report
        lake.write_state(INITIAL_STATE, {"completed_at": now.isoformat()})
    else:
        yesterday = keys[-2] if len(keys) > 1 else None
        if yesterday and not _closed(lake, yesterday):
            # What the daily schedule does after midnight, for setups that only run `molequle sync`.
            say(f"closing {yesterday} and refreshing the smart-list population ...")
            _run(report, defs.resolve_job_def(DAILY_JOB), instance, run_config, partition_key=yesterday)
            if not report.success:
                return report
    say(f"tick: changes since the last sync, today's activities ({today}) ...")
    _run(report, defs.resolve_job_def(SYNC_JOB), instance, run_config, partition_key=today)
    return report


def _closed(lake, key: str) -> bool:
    """A day is done when its state says it is covered to its end: that state is written only after the
    day's file is published, so a file left by a crash does not count."""
    covered = lake.read_state(f"activities/{key}").get("covered_until")
    return covered is not None and covered >= partition_window(key)[1].isoformat()


def missing_ranges(missing: list[str], keys: list[str], size: int) -> list[tuple[str, str]]:
    """Runs of consecutive missing days, cut to at most `size` days, newest first."""
    position = {k: i for i, k in enumerate(keys)}
    runs: list[list[str]] = []
    for key in missing:
        if runs and position[key] == position[runs[-1][-1]] + 1 and len(runs[-1]) < size:
            runs[-1].append(key)
        else:
            runs.append([key])
    return [(run[0], run[-1]) for run in reversed(runs)]


def _window_days(defs: dg.Definitions) -> int:
    return int(defs.resources["marketo"].client_config().bulk.window_days)


def _run(report: SyncReport, job, instance, run_config: dict, **kwargs) -> None:
    result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=run_config, **kwargs)
    report.runs.append(result.run_id)
    counted: set[str | None] = set()
    for event in result.all_events:
        # multi-partition runs repeat a step's metadata on every partition: count each step once
        if event.event_type_value == "ASSET_MATERIALIZATION" and event.step_key not in counted:
            counted.add(event.step_key)
            metadata = event.step_materialization_data.materialization.metadata
            report.api_calls += _int(metadata.get("api_calls"))
            report.bulk_bytes += _int(metadata.get("bulk_bytes"))
            created = metadata.get("exports_created")
            report.exports += len(created.value) if created is not None else 0
    if not result.success:
        failure = result.get_run_failure_event()
        step_failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        messages = [f"{e.step_key}: {e.event_specific_data.error.message.strip()}" for e in step_failures]
        report.failures.extend(messages or [failure.message if failure else f"run {result.run_id} failed"])


def _int(value) -> int:
    return int(value.value) if value is not None else 0
