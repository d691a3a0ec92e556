"""Data age you can see: how old each current table's data is, and the check that fails when the data, not
the run, is older than Molequle's promise.

Every current table's materialization records `data_complete_through`, the Marketo time up to which the
table holds every change (its high-water mark: the oldest of the marks of the feeds it is folded from), and
`data_age_s`. Its `data_fresh` check is evaluated by each materialization, and re-evaluated every two
minutes by `marketo_data_freshness_sensor` from the latest recorded mark, so a table whose data stops
moving turns red in the UI while no run happens at all (ticks skipped, failing or switched off).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from molequle_dagster import clock
from molequle_dagster.assets.people import PEOPLE, membership_check
from molequle_dagster.conventions import HIGH_WATER_MARK, PROMISE_MINUTES, data_fresh_evaluation
from molequle_dagster.lake import Lake
from molequle_dagster.schedules import running
from molequle_dagster.settings import MolequleSettings
from molequle_dagster.sync.plan import population_loaded
from molequle_dagster.sync.run_kind import INITIAL

CHECK = "data_fresh"
# A failing check is re-emitted this often (its age keeps growing in the UI); a passing one only when it
# turns: each materialization evaluates the check itself, so a healthy lake adds no sensor events.
REPEAT_FAILING_S = 600.0


def fresh_tables(settings: MolequleSettings) -> list[str]:
    """The current tables whose data age the UI shows (each has a `data_fresh` check)."""
    programs = ["memberships", "marketo_programs", "marketo_channels"] if settings.sync.programs else []
    return ["people", "activities", *programs, "accounts", "unified_people", "unified_accounts"]


def recorded_mark(instance: dg.DagsterInstance, table: str) -> datetime | None:
    """The high-water mark the table's latest materialization recorded (None before the first)."""
    event = instance.get_latest_materialization_event(dg.AssetKey(table))
    materialization = event.asset_materialization if event is not None else None
    value = materialization.metadata.get(HIGH_WATER_MARK) if materialization is not None else None
    if value is None or value.value is None:
        return None
    return datetime.fromtimestamp(float(value.value), UTC)


def freshness_evaluations(
    instance: dg.DagsterInstance, tables: Sequence[str], now: datetime
) -> list[dg.AssetCheckEvaluation]:
    """Each table's `data_fresh` outcome at `now`, from its recorded high-water mark."""
    return [data_fresh_evaluation(table, recorded_mark(instance, table), now) for table in tables]


def worth_reporting(instance: dg.DagsterInstance, evaluation: dg.AssetCheckEvaluation) -> bool:
    """New outcomes, and failing ones every REPEAT_FAILING_S: not a repeat of a passing result."""
    key = dg.AssetCheckKey(evaluation.asset_key, evaluation.check_name)
    last = instance.get_latest_asset_check_evaluation_record(key)
    # a run that planned the check and has not evaluated it yet counts as no result
    passed = getattr(last.evaluation, "passed", None) if last is not None else None
    if passed is None or passed != evaluation.passed:
        return True
    return not evaluation.passed and time.time() - last.create_timestamp >= REPEAT_FAILING_S


def smart_list_pending(instance: dg.DagsterInstance, lake: Lake) -> dg.AssetCheckEvaluation | None:
    """Until the first sync has loaded the smart list, the people's blocking `smart_list_members` check
    fails in the UI too. Not while a first-sync run is queued or running: that run shows the check as
    pending and then evaluates it, and Dagster lists executions in the order they were planned, so ours
    would hide its result. The lake is read again just before answering, for the same reason."""
    if population_loaded(lake) or running(instance, INITIAL):
        return None
    pending = membership_check(lake)
    if population_loaded(lake):
        return None
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(PEOPLE),
        check_name=pending.check_name or "smart_list_members",
        passed=pending.passed,
        description=pending.description,
    )


def build_freshness_sensor(settings: MolequleSettings, resources: dict[str, Any]) -> dg.SensorDefinition:
    tables = fresh_tables(settings)

    @dg.sensor(
        name="marketo_data_freshness_sensor",
        minimum_interval_seconds=120,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Every 2 minutes: fails a current table's data_fresh check when its data (the "
        f"high-water mark its last materialization recorded) is older than {PROMISE_MINUTES} minutes, "
        "whether or not a run is happening; reports only changes, and failures every 10 minutes. Until the "
        "first sync has loaded the smart list, fails the people's blocking smart_list_members check too.",
    )
    def marketo_data_freshness_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        evaluations = freshness_evaluations(context.instance, tables, clock.now())
        failing = [e.asset_key.to_user_string() for e in evaluations if not e.passed]
        if failing:
            context.log.info(f"data older than {PROMISE_MINUTES} min: {', '.join(failing)}")
        events = [e for e in evaluations if worth_reporting(context.instance, e)]
        if pending := smart_list_pending(context.instance, resources["lake"].lake):
            events.append(pending)
        return dg.SensorResult(asset_events=events)

    return marketo_data_freshness_sensor


def data_ages(instance: dg.DagsterInstance, tables: Sequence[str], now: datetime) -> dict[str, Any]:
    """Seconds since each table's recorded high-water mark (None before its first materialization)."""
    marks = {table: recorded_mark(instance, table) for table in tables}
    return {t: (now - m).total_seconds() if m is not None else None for t, m in marks.items()}
