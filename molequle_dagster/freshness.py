"""Data age you can see: the data-freshness sensor, which re-evaluates every current table's `data_fresh`
check from its high-water mark, so stale data shows in the UI even when no run happens."""

from __future__ import annotations

from typing import Any

import dagster as dg

from molequle_dagster import clock
from molequle_dagster.conventions import PROMISE_MINUTES, parse_iso
from molequle_dagster.lake import Lake

# Current tables and their keys: the tables whose data age the UI shows.
FRESH_TABLES = {
    "people": "id",
    "memberships": ["program_id", "lead_id"],
    "marketo_programs": "id",
}


def build_freshness_sensor(resources: dict[str, Any]) -> dg.SensorDefinition:
    """`resources` are the definitions' resources; the lake opens only when the sensor runs."""

    @dg.sensor(
        name="marketo_data_freshness_sensor",
        minimum_interval_seconds=120,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Every 2 minutes: fails a table's data_fresh check when its data (its high-water mark) "
        "is "
        f"older than {PROMISE_MINUTES} minutes, whether or not a run is happening.",
    )
    def marketo_data_freshness_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        lake: Lake = resources["lake"].lake
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
        return dg.SensorResult(asset_events=evaluations)

    return marketo_data_freshness_sensor
