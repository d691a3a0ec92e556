"""Reading a window of Marketo time, through REST when the delta is small and bulk when it is large.

A tick's delta (minutes of changes) is read through the REST feeds, which wait in no export queue: an
answer in seconds instead of the minutes a bulk job spends in Marketo's queue. A feed that goes past its
page budget (`sync.rest_pages` pages of 300 records) stops, and the rest of its window is exported in
bulk, which costs a handful of calls whatever the size. Backfills and the daily close always use bulk.
Both paths give the same rows (tests assert it against the sandbox's truth).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.arrow_ops import TS
from molequle_dagster.marketo.batching import batches
from molequle_dagster.marketo.timeutil import format_marketo_datetime as iso
from molequle_dagster.marketo.timeutil import parse_marketo_datetime, split_windows
from molequle_dagster.sync.activity_rows import ACTIVITY_CSV_SCHEMA, rest_activities_table

PAGE_SIZE = 300  # records per REST page (Marketo's batchSize maximum)
TYPES_PER_FEED = 10  # Get Lead Activities takes at most 10 activityTypeIds
LEADS_PER_CALL = 300
MAX_WINDOW_DAYS = 31  # Marketo's limit for one createdAt window


@dataclass
class ReadReport:
    """How a window was read, for the step's metadata and the row-count check."""

    method: str = ""
    rest_records: int = 0
    exports: int = 0
    export_bytes: int = 0
    exported_records: int = 0  # what Marketo reported for our exports (numberOfRecords)
    parsed_rows: int = 0  # what we read from those exports' files
    windows: list[tuple[str, str]] = field(default_factory=list)

    def note(self, method: str) -> None:
        used = self.method.split("+") if self.method else []
        if method not in used:
            self.method = "+".join([*used, method])


@dataclass(frozen=True)
class BulkStamp:
    """When the rows of a table were read: an export is as old as the moment Marketo started it."""

    table: pa.Table
    as_of: datetime


class RowCountMismatch(RuntimeError):
    """An export's file held a different number of rows than Marketo reported: nothing is published."""


def bulk_results(
    client: Any,
    entity: str,
    requests: list[dict[str, Any]],
    report: ReadReport,
    now: datetime,
    schema: pa.Schema | None,
    reuse_scope: str | None,
    admit: Callable[[int], bool] | None = None,
) -> Iterator[tuple[int, Iterator[BulkStamp]]]:
    """Each export in request order (the client keeps several in Marketo's queue), as its index and a
    stream of its rows; consume one export's stream before asking for the next. A stream raises
    `RowCountMismatch` at its end if its rows differ from Marketo's `numberOfRecords`. `admit(index)`
    may end the exports before request `index` starts (a budget)."""
    if not requests:
        return
    report.note("bulk")
    exports = client.bulk_export_many(entity, requests, schema=schema, reuse_scope=reuse_scope, admit=admit)
    for index, result in exports:
        report.exports += 1
        if not result.reused:
            report.export_bytes += result.file_size
        report.exported_records += result.number_of_records
        yield index, _stream(result, report, now)


def _stream(result: Any, report: ReadReport, now: datetime) -> Iterator[BulkStamp]:
    as_of = min(result.started_at or now, now)  # an export's data is as of when Marketo started it
    parsed = 0
    for batch in result.batches():
        parsed += batch.num_rows
        yield BulkStamp(pa.Table.from_batches([batch]), as_of)
    report.parsed_rows += parsed
    if parsed != result.number_of_records:
        raise RowCountMismatch(
            f"export {result.export_id}: read {parsed} rows, Marketo reported {result.number_of_records}"
        )


def _bulk(
    client: Any,
    entity: str,
    requests: list[dict[str, Any]],
    report: ReadReport,
    now: datetime,
    schema: pa.Schema | None,
    reuse_scope: str | None,
) -> Iterator[BulkStamp]:
    for _, stream in bulk_results(client, entity, requests, report, now, schema, reuse_scope):
        yield from stream


def activity_requests(
    start: datetime, end: datetime, type_ids: Sequence[int], window_days: int
) -> list[dict[str, Any]]:
    """One export request per ≤ 31-day window with every type in it (one job per window, not per type)."""
    ids = sorted({int(t) for t in type_ids})
    return [
        {
            "fields": None,
            "filter": {"createdAt": {"startAt": iso(a), "endAt": iso(b)}, "activityTypeIds": ids},
        }
        for a, b in split_windows(start, end, window_days)
    ]


def paid_windows(requests: Sequence[Mapping[str, Any]], type_ids: Sequence[int]) -> list[list[str]]:
    """The whole-day windows (days, `YYYY-MM-DD`) of activity export requests for exactly `type_ids`
    as `window_requests` makes them: those an export already paid for can serve as they are."""
    ids = sorted({int(t) for t in type_ids})
    windows = []
    for request in requests:
        flt = request.get("filter")
        span = flt.get("createdAt") if isinstance(flt, Mapping) else None
        if request.get("fields") is not None or not isinstance(span, Mapping):
            continue
        if flt.get("activityTypeIds") != ids or set(flt) != {"createdAt", "activityTypeIds"}:
            continue
        try:
            start = parse_marketo_datetime(str(span["startAt"]))
            end = parse_marketo_datetime(str(span["endAt"]))
        except (KeyError, ValueError):
            continue
        first, last = start.date(), end.date()
        whole = start == datetime.combine(first, datetime.min.time(), UTC) and end == datetime.combine(
            last, datetime.max.time().replace(microsecond=0), UTC
        )
        if whole and first <= last:
            windows.append([(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)])
    return windows


def window_requests(
    windows: Sequence[Sequence[str]], type_ids: Sequence[int], now: datetime
) -> list[dict[str, Any]]:
    """One export request per window of whole days (`YYYY-MM-DD`, any order), all types in it: from the
    first day's midnight to the last day's end, or to `now` for a day still open."""
    requests = []
    for days in windows:
        start = datetime.fromisoformat(min(days)).replace(tzinfo=UTC)
        end = min(datetime.fromisoformat(max(days)).replace(tzinfo=UTC) + timedelta(days=1, seconds=-1), now)
        requests.extend(activity_requests(start, end, type_ids, MAX_WINDOW_DAYS))
    return requests


def read_activities(
    client: Any,
    type_ids: Sequence[int],
    start: datetime,
    end: datetime,
    *,
    rest_pages: int | None,
    now: datetime,
    window_days: int = 31,
    reuse_scope: str | None = None,
    report: ReadReport,
) -> Iterator[BulkStamp]:
    """Activities of `type_ids` dated in [start, end] (inclusive, second precision), as tables in the bulk
    layout with the time they were read. `rest_pages=None` means bulk only."""
    report.windows.append((iso(start), iso(end)))
    if rest_pages is None:
        yield from _bulk(
            client,
            "activities",
            activity_requests(start, end, type_ids, window_days),
            report,
            now,
            ACTIVITY_CSV_SCHEMA,
            reuse_scope,
        )
        return
    ordered = sorted({int(t) for t in type_ids})
    for group in batches(ordered, TYPES_PER_FEED):
        records: list[Mapping[str, Any]] = []
        overflow_at: datetime | None = None
        for record in client.activities_since(start, list(group), until=end):
            records.append(record)
            if len(records) > rest_pages * PAGE_SIZE:
                overflow_at = parse_marketo_datetime(str(record["activityDate"]))
                break
        report.note("rest")
        table = rest_activities_table(records)
        if overflow_at is not None:
            # The last second read may be incomplete: keep what precedes it, export the rest in bulk.
            table = table.filter(pc.less(table["activityDate"], pa.scalar(overflow_at, TS)))
        report.rest_records += table.num_rows
        yield BulkStamp(table, now)
        if overflow_at is not None:
            requests = activity_requests(overflow_at, end, group, window_days)
            yield from _bulk(client, "activities", requests, report, now, ACTIVITY_CSV_SCHEMA, reuse_scope)


def rest_leads_table(records: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Leads read by id over REST, typed like the bulk export's columns (Marketo omits null fields)."""
    columns = {}
    for f in schema:
        values = [r.get(f.name) for r in records]
        if pa.types.is_timestamp(f.type):
            values = [parse_marketo_datetime(v) if isinstance(v, str) else v for v in values]
            columns[f.name] = pa.array(values, TS).cast(f.type)
        elif pa.types.is_boolean(f.type):
            columns[f.name] = pa.array([_bool(v) for v in values], f.type)
        else:
            columns[f.name] = (
                pa.array(values).cast(f.type)
                if any(v is not None for v in values)
                else pa.nulls(len(values), f.type)
            )
    return pa.table(columns, schema=schema)


def _bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1")


@dataclass
class ChangedLeads:
    """Leads that changed in a window: their rows, and when each last changed (REST path only)."""

    rows: list[BulkStamp]
    changed_at: dict[int, datetime]


def read_changed_leads(
    client: Any,
    fields: list[str],
    watched: list[str],
    schema: pa.Schema,
    start: datetime,
    end: datetime,
    *,
    extra_ids: Mapping[int, datetime] | None = None,
    rest_pages: int | None,
    now: datetime,
    reuse_scope: str | None = None,
    report: ReadReport,
) -> ChangedLeads:
    """Leads modified in [start, end]: through Get Lead Changes (New Lead, Change Data Value on the synced
    fields) plus `extra_ids` (score changes, merge winners) and Get Leads by id, or, past the page budget
    or with `rest_pages=None`, a bulk export filtered on Marketo's last-modified time (`updatedAt`)."""
    report.windows.append((iso(start), iso(end)))
    bulk_request = [{"fields": fields, "filter": {"updatedAt": {"startAt": iso(start), "endAt": iso(end)}}}]
    if rest_pages is None:
        stamped = list(_bulk(client, "leads", bulk_request, report, now, schema, reuse_scope))
        return ChangedLeads(stamped, {})
    changed: dict[int, datetime] = dict(extra_ids or {})
    for seen, change in enumerate(client.lead_changes_since(start, watched, until=end), start=1):
        if seen > rest_pages * PAGE_SIZE:
            report.note("rest")
            stamped = list(_bulk(client, "leads", bulk_request, report, now, schema, reuse_scope))
            return ChangedLeads(stamped, {})
        lead, at = int(change["leadId"]), parse_marketo_datetime(str(change["activityDate"]))
        changed[lead] = max(at, changed.get(lead, at))
    report.note("rest")
    ids = sorted(changed)
    if len(ids) > rest_pages * LEADS_PER_CALL:
        stamped = list(_bulk(client, "leads", bulk_request, report, now, schema, reuse_scope))
        return ChangedLeads(stamped, {})
    rows: list[Mapping[str, Any]] = []
    for chunk in batches(ids, LEADS_PER_CALL):
        rows.extend(client.leads_by_filter("id", list(chunk), fields))
    report.rest_records += len(rows)
    return ChangedLeads([BulkStamp(rest_leads_table(rows, schema), now)], changed)


def day_windows(days: Sequence[str], covered: Mapping[str, datetime | None], now: datetime, late: timedelta):
    """For each day, the window still to read: from its cursor (minus the late margin) or its start, to its
    end or now. Days already covered to their end are skipped."""
    out = []
    for day in days:
        start = datetime.fromisoformat(day).replace(tzinfo=now.tzinfo)
        end = min(start + timedelta(days=1) - timedelta(seconds=1), now)
        cursor = covered.get(day)
        if cursor is not None:
            if cursor >= start + timedelta(days=1):
                continue
            start = max(start, cursor - late)
        if start <= end:
            out.append((day, start, end))
    return out
