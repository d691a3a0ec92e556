"""Writing rows into day-partitioned tables: merge a delta into a day, or replace whole days from a stream.

Each day's cursor says how far the day is covered and with which filter; a day synced with another
filter (an activity type added since, say) is not trusted and is exported whole again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.arrow_ops import SYNCED_AT, dedupe_latest
from molequle_dagster.lake import DayTable
from molequle_dagster.marketo.timeutil import parse_marketo_datetime as parse_iso

# A day (today, under ticks) folds its deltas into a new base once it holds this many: about every six
# hours of 10-minute ticks, so readers open few files and the rewrite is paid a few times a day, not per tick.
MAX_DELTAS = 36


@dataclass
class DayOutcome:
    rows_by_day: dict[str, int] = field(default_factory=dict)
    new_rows_by_day: dict[str, int] = field(default_factory=dict)
    covered_until: dict[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.rows_by_day.values())

    @property
    def new_rows(self) -> int:
        return sum(self.new_rows_by_day.values())


def day_start(day: str) -> datetime:
    return parse_iso(f"{day}T00:00:00Z")


def day_end(day: str) -> datetime:
    return day_start(day) + timedelta(days=1)


def covered_cursors(table: DayTable, days: Iterable[str], filter_id: str) -> dict[str, datetime | None]:
    """Each day's covered-until time, or None when the day was never synced with this filter."""
    out: dict[str, datetime | None] = {}
    for day in days:
        cursor = table.cursor(day)
        until = cursor.get("covered_until")
        out[day] = parse_iso(until) if until and cursor.get("filter") == filter_id else None
    return out


DayOf = Callable[[pa.Table], pa.Array]


def day_of_column(column: str) -> DayOf:
    """Rows' day from a timestamp column (`YYYY-MM-DD`, UTC)."""
    return lambda table: pc.strftime(table[column], format="%Y-%m-%d")


def constant_day(day: str) -> DayOf:
    return lambda table: pa.repeat(pa.scalar(day), table.num_rows)


def merge_into_days(
    lake_days: DayTable,
    delta: pa.Table,
    day_of: DayOf,
    key: str,
    schema: pa.Schema,
    covered: dict[str, datetime],
    filter_id: str,
    outcome: DayOutcome,
    immutable: bool = False,
    max_deltas: int = MAX_DELTAS,
) -> None:
    """Merge `delta` into the files of the days in `covered` (rows of other days are dropped: their runs own
    them), keeping the newest row per key; then move each day's cursor to its covered time.

    Rows whose keys the day lacks are appended as a small delta file (a tick writes what changed, not the
    day so far). With `immutable`, rows already in the day are the same record read again (an overlapping
    window) and are dropped; otherwise a row that replaces one of the day's rewrites the day, as does a day
    that holds `max_deltas` deltas (which folds them into its base)."""
    days = day_of(delta) if delta.num_rows else pa.array([], pa.string())
    delta = delta.select(schema.names).cast(schema) if delta.num_rows else schema.empty_table()
    for day, until in sorted(covered.items()):
        part = delta.filter(pc.equal(days, day)) if delta.num_rows else delta
        existing = lake_days.read(day)
        if part.num_rows and existing is not None:
            known = pc.is_in(part[key], value_set=existing[key])
            fresh = part.filter(pc.invert(known))
            if (immutable or fresh.num_rows == part.num_rows) and lake_days.delta_count(day) < max_deltas:
                fresh = dedupe_latest(fresh, key, SYNCED_AT) if fresh.num_rows else fresh
                if fresh.num_rows:
                    lake_days.append(day, fresh)
                outcome.rows_by_day[day] = existing.num_rows + fresh.num_rows
                outcome.new_rows_by_day[day] = fresh.num_rows
                _advance(lake_days, day, until, filter_id, outcome)
                continue
        if part.num_rows or existing is None:
            parts = [t.cast(schema) for t in (existing, part) if t is not None]
            merged = dedupe_latest(pa.concat_tables(parts), key, SYNCED_AT) if parts else schema.empty_table()
            lake_days.write(day, merged)
            outcome.rows_by_day[day] = merged.num_rows
        else:
            outcome.rows_by_day[day] = existing.num_rows
        outcome.new_rows_by_day[day] = part.num_rows
        _advance(lake_days, day, until, filter_id, outcome)


def _advance(lake_days: DayTable, day: str, until: datetime, filter_id: str, outcome: DayOutcome) -> None:
    """Move the day's cursor to `until`, after its rows are written."""
    lake_days.write_cursor(
        day, {"covered_until": until.isoformat(), "filter": filter_id, "rows": outcome.rows_by_day[day]}
    )
    outcome.covered_until[day] = until.isoformat()


def replace_days(
    lake_days: DayTable,
    tables: Iterable[pa.Table],
    day_of: DayOf,
    schema: pa.Schema,
    covered: dict[str, datetime],
    filter_id: str,
    outcome: DayOutcome,
    key: str | None = None,
) -> None:
    """Stream rows into one new file per day of `covered` and publish them all once the stream ended
    (its exports completed and their checksums matched): a failure leaves every previous file. Rows of
    other days are dropped. With `key`, a day's rows are deduplicated (newest `_synced_at` wins)."""
    first, last = min(covered), max(covered)
    with ExitStack() as stack:
        writers: dict[str, Any] = {}
        buffered: dict[str, list[pa.Table]] = {}
        for table in tables:
            if table.num_rows == 0:
                continue
            days = day_of(table)
            table = table.select(schema.names).cast(schema)
            for day in pc.unique(days).to_pylist():
                if day is None or not first <= day <= last or day not in covered:
                    continue
                part = table.filter(pc.equal(days, day))
                if key is not None:
                    buffered.setdefault(day, []).append(part)
                    continue
                if day not in writers:
                    writers[day] = stack.enter_context(lake_days.writer(day, schema))
                writers[day].write_table(part)
                outcome.new_rows_by_day[day] = outcome.new_rows_by_day.get(day, 0) + part.num_rows
        for day, parts in buffered.items():
            merged = (
                dedupe_latest(pa.concat_tables(parts), key, SYNCED_AT) if key else pa.concat_tables(parts)
            )
            writers[day] = stack.enter_context(lake_days.writer(day, schema))
            writers[day].write_table(merged)
            outcome.new_rows_by_day[day] = merged.num_rows
        for day in covered:
            if day not in writers:  # an empty day is still a materialized partition
                writers[day] = stack.enter_context(lake_days.writer(day, schema))
                outcome.new_rows_by_day.setdefault(day, 0)
    for day, until in covered.items():
        outcome.rows_by_day[day] = outcome.new_rows_by_day.get(day, 0)
        closed = until >= day_end(day)  # exported whole after the day ended: complete, the close is done
        lake_days.write_cursor(
            day,
            {
                "covered_until": until.isoformat(),
                "filter": filter_id,
                "rows": outcome.rows_by_day[day],
                "closed": closed,
            },
        )
        outcome.covered_until[day] = until.isoformat()
