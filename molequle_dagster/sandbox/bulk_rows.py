"""Select the rows of a Bulk Extract from the instance, as a stream of typed Arrow record batches.

`open_rows` runs when a job starts processing (that is when Marketo evaluates list and program
membership): it takes references to the instance's immutable Arrow tables under the state lock and
resolves list membership, then yields batches of the export's columns without copying whole tables.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.sandbox.attributes import AttributeSources, render_attributes, retained_mask
from molequle_dagster.sandbox.bulk_files import BooleanStyle
from molequle_dagster.sandbox.bulk_requests import PM_BOOLEAN_FIELDS, PM_STORED_FIELDS, DateWindow, ExportSpec
from molequle_dagster.sandbox.lead_fields import BY_NAME as LEAD_FIELDS
from molequle_dagster.sandbox.lead_view import LeadView
from molequle_dagster.sandbox.model import InstanceState

BATCH_ROWS = 64 * 1024
ACTION_RESULT = "succeeded"  # the sandbox's activities all succeeded


Selection = Iterator[tuple[pa.RecordBatch, pa.Array]]  # (batch of the source table, rows to export)


@dataclass
class ExportRows:
    batches: Iterator[pa.RecordBatch]  # columns in spec.fields order
    booleans: list[BooleanStyle]  # rendering of each column's booleans
    count: int  # rows the file will hold: known at once, while the batches are rendered later


def _in_window(values: pa.Array, window: DateWindow) -> pa.Array:
    start = pa.scalar(window.start, values.type)
    end = pa.scalar(window.end, values.type)
    return pc.and_(pc.greater_equal(values, start), pc.less_equal(values, end))


def _is_in(values: pa.Array, members: pa.Array) -> pa.Array:
    return pc.fill_null(pc.is_in(values, value_set=members), False)


def _lead_members(state: InstanceState, spec: ExportSpec) -> pa.Array | None:
    """Lead ids of the static or smart list the filter names, resolved now."""
    if "staticList" in spec.filter:
        lists = [s for s in state.static_lists if int(s["id"]) == spec.filter["staticList"]]
        ids = lists[0].get("lead_ids", []) if lists else []
        return pa.array(ids, pa.int64())
    if "smartList" in spec.filter:
        from molequle_dagster.sandbox.truth import smart_list_lead_ids

        lists = [s for s in state.smart_lists if int(s["id"]) == spec.filter["smartList"]]
        ids = smart_list_lead_ids(state, lists[0]) if lists else pa.array([], pa.int64())
        return pc.cast(ids, pa.int64())
    return None


def _lead_selection(people: pa.Table, spec: ExportSpec, members: pa.Array | None) -> Selection:
    # List membership is one lookup over the whole table: a hash of ~1M ids built once, not per batch.
    listed = _is_in(people.column("id").combine_chunks(), members) if members is not None else None
    offset = 0
    for batch in people.to_batches(BATCH_ROWS):
        if "createdAt" in spec.filter:
            mask = _in_window(batch.column("createdAt"), spec.filter["createdAt"])
        elif "updatedAt" in spec.filter:
            # The true last-modified time, not the visible field (docs/marketo.md §6.5).
            mask = _in_window(batch.column("_modifiedAt"), spec.filter["updatedAt"])
        else:
            assert listed is not None
            mask = listed.slice(offset, batch.num_rows)
        offset += batch.num_rows
        yield batch, mask


def _lead_batches(view: LeadView, spec: ExportSpec, selection: Selection) -> Iterator[pa.RecordBatch]:
    for batch, mask in selection:
        selected = batch.filter(mask)
        if selected.num_rows:
            yield view.select(selected, spec.fields).combine_chunks().to_batches()[0]


def _activity_mask(batch: pa.RecordBatch, spec: ExportSpec) -> pa.Array:
    mask = _in_window(batch.column("activityDate"), spec.filter["createdAt"])
    if "activityTypeIds" in spec.filter:
        types = pa.array(spec.filter["activityTypeIds"], pa.int32())
        mask = pc.and_(mask, _is_in(batch.column("activityTypeId"), types))
    if "primaryAttributeValueIds" in spec.filter:
        ids = pa.array(spec.filter["primaryAttributeValueIds"], pa.int64())
        mask = pc.and_(mask, _is_in(batch.column("primaryAttributeValueId"), ids))
    if "primaryAttributeValues" in spec.filter:
        names = pa.array(spec.filter["primaryAttributeValues"], pa.string())
        mask = pc.and_(mask, _is_in(batch.column("primaryAttributeValue"), names))
    return mask


def _activity_selection(
    activities: pa.Table, spec: ExportSpec, at: datetime, enforce_retention: bool
) -> Selection:
    # Same rows as attributes.visible_activities, but retention is applied per batch of the date window,
    # so an export never copies the whole activity table.
    window: DateWindow = spec.filter["createdAt"]
    for batch in activities.to_batches(BATCH_ROWS):
        bounds = pc.min_max(batch.column("activityDate"))
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low is None or high < window.start or low > window.end:
            continue  # the table is sorted by date, so most batches fall outside the window
        mask = _activity_mask(batch, spec)
        if enforce_retention and pc.any(mask).as_py():
            kept = retained_mask(pa.Table.from_batches([batch]), at)
            mask = pc.and_(mask, pa.array(kept))
        yield batch, mask


def _activity_batches(
    sources: AttributeSources, spec: ExportSpec, selection: Selection
) -> Iterator[pa.RecordBatch]:
    for batch, mask in selection:
        selected = batch.filter(mask)
        if not selected.num_rows:
            continue
        columns = []
        for name in spec.fields:
            if name == "attributes":
                columns.append(render_attributes(sources, pa.Table.from_batches([selected])))
            elif name == "actionResult":
                columns.append(pa.repeat(pa.scalar(ACTION_RESULT, pa.string()), selected.num_rows))
            else:
                columns.append(selected.column(name))
        yield pa.record_batch(columns, names=list(spec.fields))


def _member_mask(batch: pa.RecordBatch, spec: ExportSpec) -> pa.Array:
    mask = _is_in(batch.column("programId"), pa.array(spec.filter["programIds"], pa.int64()))
    if "statusNames" in spec.filter:
        names = pa.array(spec.filter["statusNames"], pa.string())
        mask = pc.and_(mask, _is_in(batch.column("statusName"), names))
    if "isExhausted" in spec.filter:
        mask = pc.and_(
            mask, pc.fill_null(pc.equal(batch.column("isExhausted"), spec.filter["isExhausted"]), False)
        )
    if "nurtureCadence" in spec.filter:  # the sandbox stores no cadence, so no member matches
        mask = pc.and_(mask, pa.repeat(pa.scalar(False), len(batch)))
    if "updatedAt" in spec.filter:
        mask = pc.and_(mask, _in_window(batch.column("updatedAt"), spec.filter["updatedAt"]))
    return mask


def _member_selection(memberships: pa.Table, lead_rows: pa.Array, spec: ExportSpec) -> Selection:
    """`lead_rows`: each membership's row in the people table (null: the lead was deleted or merged away,
    and the member is not exported), looked up once for the whole table."""
    offset = 0
    for batch in memberships.to_batches(BATCH_ROWS):
        alive = pc.is_valid(lead_rows.slice(offset, batch.num_rows))
        offset += batch.num_rows
        yield batch, pc.and_(_member_mask(batch, spec), alive)


def _member_batches(
    view: LeadView, programs: pa.Table, spec: ExportSpec, selection: Selection, lead_rows_all: pa.Array
) -> Iterator[pa.RecordBatch]:
    people = view.people
    program_ids = programs.column("id").combine_chunks()
    program_names = programs.column("name").combine_chunks()
    # the lead fields this export asks for (a program member field of the same name wins)
    lead_names = [name for name in spec.fields if name not in PM_STORED_FIELDS and name in LEAD_FIELDS]
    offset = 0
    for batch, mask in selection:
        lead_rows = lead_rows_all.slice(offset, batch.num_rows).filter(mask)
        offset += batch.num_rows
        selected = batch.filter(mask)
        if not selected.num_rows:
            continue
        leads = view.select(people.take(lead_rows), lead_names) if lead_names else None
        columns = []
        for name in spec.fields:
            if name in PM_STORED_FIELDS:
                columns.append(selected.column(name))
            elif name == "program":
                program_rows = pc.index_in(selected.column("programId"), value_set=program_ids)
                columns.append(pc.take(program_names, program_rows))
            elif name == "id":
                columns.append(selected.column("leadId"))
            elif leads is not None and name in lead_names:
                columns.append(leads[name].combine_chunks())
            else:  # a standard program member field the sandbox does not track
                columns.append(pa.nulls(selected.num_rows, pa.string()))
        yield pa.record_batch(columns, names=list(spec.fields))


def open_rows(
    state: InstanceState,
    spec: ExportSpec,
    at: datetime,
    *,
    enforce_retention: bool,
    member_booleans: BooleanStyle,
) -> ExportRows:
    """Resolve the export's population as of `at`: count its rows now (a cheap pass of masks, so the job's
    modelled processing time is known at once) and return its batches, rendered lazily from a snapshot
    (immutable Arrow tables and copies of the small mutable parts), so the file can be written on another
    thread while the instance keeps changing."""
    booleans: list[BooleanStyle] = ["true_false"] * len(spec.fields)
    # The selection (zero-copy batches of the snapshot, a mask each) is computed once, after the lock: it
    # gives the count now and the rows to render later.
    render: Callable[[Selection], Iterator[pa.RecordBatch]]
    with state.lock:
        if spec.entity == "leads":
            members = _lead_members(state, spec)
            view = LeadView(state)
            selection = _lead_selection(view.people, spec, members)
            render = functools.partial(_lead_batches, view, spec)
        elif spec.entity == "activities":
            sources = AttributeSources.snapshot(state)
            selection = _activity_selection(state.activities, spec, at, enforce_retention)
            render = functools.partial(_activity_batches, sources, spec)
        else:
            view, memberships, programs = LeadView(state), state.memberships, state.programs
            lead_ids = view.people.column("id").combine_chunks()
            lead_rows = pc.index_in(memberships.column("leadId").combine_chunks(), value_set=lead_ids)
            selection = _member_selection(memberships, lead_rows, spec)
            render = functools.partial(_member_batches, view, programs, spec, lead_rows_all=lead_rows)
            booleans = [member_booleans if f in PM_BOOLEAN_FIELDS else "true_false" for f in spec.fields]
    selected = list(selection)
    count = sum(pc.sum(mask).as_py() or 0 for _batch, mask in selected)
    batches = render(iter(selected))
    return ExportRows(batches=batches, booleans=booleans, count=count)
