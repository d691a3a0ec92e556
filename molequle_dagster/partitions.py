"""The one daily partition set shared by every time-partitioned Marketo asset.

The start is anchored to a month boundary (`history_days` back from the first of the current month), so
the definition changes once a month instead of every day: Dagster keys its partition-status cache on the
definition, and a start that moved daily would rebuild that cache after every reload. `end_offset=1` makes
today a partition, so the 30-minute schedule can refresh the open day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from molequle_dagster.settings import MolequleSettings

PARTITION_FORMAT = "%Y-%m-%d"


def history_start(history_days: int, today: date | None = None) -> date:
    anchor = (today or datetime.now(UTC).date()).replace(day=1)
    return (anchor - timedelta(days=history_days)).replace(day=1)


def build_daily_partitions(
    settings: MolequleSettings, today: date | None = None
) -> dg.DailyPartitionsDefinition:
    start = history_start(settings.sync.history_days, today)
    return dg.DailyPartitionsDefinition(
        start_date=start.strftime(PARTITION_FORMAT), end_offset=1, timezone="UTC", fmt=PARTITION_FORMAT
    )


def partition_window(key: str) -> tuple[datetime, datetime]:
    """[start, end) of a daily partition key, in UTC."""
    start = datetime.strptime(key, PARTITION_FORMAT).replace(tzinfo=UTC)
    return start, start + timedelta(days=1)
