"""Daily-partitioned bulk sync: the windowing, streaming and per-day file logic shared by people updates
and activities.

A run covers one or more daily partitions (a 30-minute tick covers today; a backfill run covers up to 31
days, Marketo's maximum export window, so a backfill of N days costs ⌈N/31⌉ exports per entity).

* Full mode (backfills, first sync of a day): export the run's whole range in ≤ 31-day windows, stream the
  rows into one Parquet file per day, and replace those days' files (days with no rows get an empty file,
  so the partition is visibly materialized).
* Incremental mode (a tick on a day that was synced before): export only what is new since that day's
  watermark (looking back an hour, since Marketo can make records visible minutes after their timestamp),
  merge it into the day's file, deduplicated by key. Never the whole day again.

Per-day watermarks live in the lake (`_state/<table>/<day>.json`), one file per day so parallel backfill
runs never overwrite each other's state. A file is published only after its export completed and the
checksum matched: a crash leaves the previous good file and watermark in place.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.assets.common import SYNCED_AT, dedupe_latest, iso, stamp
from molequle_dagster.lake import Lake
from molequle_dagster.marketo.timeutil import split_windows
from molequle_dagster.partitions import partition_window

INCREMENTAL_LOOKBACK = timedelta(hours=1)


@dataclass
class DailyBulkSpec:
    table: str  # lake table name
    entity: str  # "leads" | "activities"
    time_filter: str  # "updatedAt" | "createdAt"
    fields: list[str] | None
    extra_filter: dict[str, Any]
    schema: pa.Schema  # CSV column types
    key: str  # dedupe key
    day_column: str  # which column decides a row's day
    transform: Callable[[pa.Table], pa.Table] = lambda t: t  # e.g. add the activity group
    # Instead of bulk exports: yields one table per request (used when the instance refuses the filter).
    fetch: Callable[[list[dict[str, Any]]], Iterable[pa.Table]] | None = None
    reuse_scope: str | None = None  # see common.run_scope
    # True when `day_column` is exact (activityDate): rows belong to their own day only. False for people,
    # whose visible updatedAt can lag the true change time: rows go to the nearest day of the window.
    exact_days: bool = False


@dataclass
class DailyBulkOutcome:
    mode: str
    windows: list[tuple[str, str]] = field(default_factory=list)
    rows_by_day: dict[str, int] = field(default_factory=dict)
    exported_records: int = 0  # what Marketo reported (numberOfRecords)
    parsed_rows: int = 0  # what we read from the files
    new_rows: int = 0

    @property
    def rows(self) -> int:
        return sum(self.rows_by_day.values())


def _day_keys_of(table: pa.Table, spec: DailyBulkSpec, first: str, last: str) -> pa.Array:
    days = pc.strftime(table.column(spec.day_column), format="%Y-%m-%d")
    if spec.exact_days:
        return days  # rows outside [first, last] are dropped by the caller (another run owns that day)
    # Rows whose visible timestamp lies outside the window (updatedAt only reflects standard fields)
    # belong to the nearest day of the window.
    days = pc.fill_null(days, first)
    days = pc.if_else(pc.less(days, first), first, days)
    return pc.if_else(pc.greater(days, last), last, days)


def sync_days(
    client: Any,
    lake: Lake,
    spec: DailyBulkSpec,
    partition_keys: list[str],
    now: datetime,
    window_days: int,
) -> DailyBulkOutcome:
    first_start, _ = partition_window(partition_keys[0])
    _, last_end = partition_window(partition_keys[-1])
    state_names = {k: f"{spec.table}/{k}" for k in partition_keys}
    previous = lake.read_state(state_names[partition_keys[0]])
    watermark = previous.get("covered_until")
    # A day synced with a different filter (e.g. an activity type added since) is exported whole again.
    same_filter = previous.get("filter") == _filter_id(spec)
    incremental = len(partition_keys) == 1 and watermark is not None and same_filter
    if incremental:
        # Look back over the watermark: Marketo can make records visible minutes after their timestamp.
        start = max(first_start, datetime.fromisoformat(watermark) - INCREMENTAL_LOOKBACK)
    else:
        start = first_start
    end = min(last_end - timedelta(seconds=1), now)  # filters are inclusive: midnight is the next day's
    outcome = DailyBulkOutcome(mode="incremental" if incremental else "full")

    # Windows do not overlap (each ends a second before the next starts; Marketo's filter is inclusive at
    # both ends and second-precise), so no row is exported twice.
    windows = split_windows(start, end, window_days) if start < end else []
    requests = []
    for w_start, w_end in windows:
        flt = {spec.time_filter: {"startAt": iso(w_start), "endAt": iso(w_end)}, **spec.extra_filter}
        requests.append({"fields": spec.fields, "filter": flt})
        outcome.windows.append((iso(w_start), iso(w_end)))

    out_schema = spec.transform(stamp(spec.schema.empty_table(), now)).schema
    if incremental:
        _apply_incremental(client, lake, spec, requests, partition_keys[0], now, out_schema, outcome)
    else:
        _apply_full(client, lake, spec, requests, partition_keys, now, out_schema, outcome)
    for key in partition_keys:
        day_end = partition_window(key)[1]
        mark_covered(lake, spec, key, min(day_end, now))
    return outcome


def mark_covered(lake: Lake, spec: DailyBulkSpec, key: str, until: datetime) -> None:
    """Record how far a day is synced (and with which filter); written only after its data is published."""
    lake.write_state(f"{spec.table}/{key}", {"covered_until": until.isoformat(), "filter": _filter_id(spec)})


def _filter_id(spec: DailyBulkSpec) -> str:
    return json.dumps({"fields": spec.fields, "filter": spec.extra_filter}, sort_keys=True)


def _rows(client: Any, spec: DailyBulkSpec, requests: list[dict], now: datetime, outcome: DailyBulkOutcome):
    """Stream transformed, time-stamped tables from the exports, window after window."""
    if spec.fetch is not None:
        for table in spec.fetch(requests):
            outcome.exported_records += table.num_rows
            outcome.parsed_rows += table.num_rows
            yield spec.transform(stamp(table, now))
        return
    exports = client.bulk_export_many(spec.entity, requests, schema=spec.schema, reuse_scope=spec.reuse_scope)
    for _index, result in exports:
        outcome.exported_records += result.number_of_records
        as_of = min(result.started_at or now, now)  # a reused export's data is as old as the export
        for batch in result.batches():
            outcome.parsed_rows += batch.num_rows
            yield spec.transform(stamp(pa.Table.from_batches([batch]), as_of))


def _apply_full(client, lake, spec, requests, keys, now, out_schema, outcome) -> None:
    """Stream every window into one Parquet writer per day; publish all days when the exports completed."""
    with ExitStack() as stack:
        writers: dict[str, Any] = {}
        for table in _rows(client, spec, requests, now, outcome):
            table = table.cast(out_schema)
            days = _day_keys_of(table, spec, keys[0], keys[-1])
            for day in pc.unique(days).to_pylist():
                if day is None or not keys[0] <= day <= keys[-1]:
                    continue
                if day not in writers:
                    path = lake.partition_path(spec.table, day)
                    writers[day] = stack.enter_context(lake.writer(path, out_schema))
                part = table.filter(pc.equal(days, day))
                writers[day].write_table(part)
                outcome.rows_by_day[day] = outcome.rows_by_day.get(day, 0) + part.num_rows
                outcome.new_rows += part.num_rows
        for day in keys:
            if day not in writers:  # an empty day is still a materialized partition
                path = lake.partition_path(spec.table, day)
                writers[day] = stack.enter_context(lake.writer(path, out_schema))
                outcome.rows_by_day[day] = 0


def _apply_incremental(client, lake, spec, requests, key, now, out_schema, outcome) -> None:
    """A tick: the delta since the watermark is small by construction, so merge it in memory."""
    parts = []
    for table in _rows(client, spec, requests, now, outcome):
        table = table.cast(out_schema)
        if spec.exact_days:  # the lookback reaches into the previous day: that day is not ours
            table = table.filter(pc.equal(_day_keys_of(table, spec, key, key), key))
        parts.append(table)
    new = pa.concat_tables(parts) if parts else None
    outcome.new_rows = new.num_rows if new is not None else 0
    merged = _merge(lake.read_partition(spec.table, key), new, out_schema, spec.key)
    lake.write_partition(spec.table, key, merged)
    outcome.rows_by_day[key] = merged.num_rows


def _merge(existing: pa.Table | None, new: pa.Table | None, schema: pa.Schema, key: str) -> pa.Table:
    parts = [t.cast(schema) for t in (existing, new) if t is not None]
    if not parts:
        return schema.empty_table()
    return dedupe_latest(pa.concat_tables(parts), key, SYNCED_AT)
