"""Activity routes (docs/marketo.md §5.2-§5.5, §8.1): types, date-based paging tokens, activities, lead
changes, deleted leads.

Activities are sorted by (activityDate, marketoGUID), so a paging token is just a position on that order:
"everything after (date, guid)". Pages scan forward in bounded chunks with numpy masks; a chunk with no
match may give an empty page with `moreResult:true` (as Marketo does), at most
`behaviour.max_empty_activity_pages` in a row. `nextPageToken` is always returned.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from molequle_dagster.sandbox import catalog
from molequle_dagster.sandbox.attributes import attributes_as_list, render_attributes, retained_mask
from molequle_dagster.sandbox.context import SandboxContext
from molequle_dagster.sandbox.envelope import MarketoApiError, lead_timestamp, ok
from molequle_dagster.sandbox.lead_fields import BY_DISPLAY, BY_NAME
from molequle_dagster.sandbox.limits import MAX_ACTIVITY_TYPE_IDS, MAX_LEAD_IDS
from molequle_dagster.sandbox.params import (
    batch_size,
    decode_token,
    encode_token,
    int_list_param,
    list_param,
    parse_datetime,
    required_param,
    respond,
)

SCAN_CHUNK = 20_000  # rows examined per step; a page stops scanning after MAX_SCAN_CHUNKS fruitless steps
MAX_SCAN_CHUNKS = 8
TOKEN_KIND = "A"
LEAD_CHANGE_TYPES = (catalog.NEW_LEAD, 13)


@dataclass
class Position:
    """After (date_s, guid); `empties` counts empty pages already given in a row."""

    date_s: int
    guid: int
    empties: int = 0

    def token(self) -> str:
        return encode_token(TOKEN_KIND, self.date_s, self.guid, self.empties)


def decode_position(raw: str) -> Position:
    parts = decode_token(raw, TOKEN_KIND)
    try:
        return Position(int(parts[0]), int(parts[1]), int(parts[2]))
    except (IndexError, ValueError) as exc:
        raise MarketoApiError(1003, "Invalid nextPageToken") from exc


class SortKeys:
    """numpy views of (activityDate, marketoGUID), rebuilt only when the activities table is replaced."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._table: pa.Table | None = None
        self.dates = np.empty(0, np.int64)
        self.guids = np.empty(0, np.int64)

    def of(self, table: pa.Table) -> SortKeys:
        with self._lock:
            if table is not self._table:
                self.dates = pc.cast(table["activityDate"], pa.int64()).to_numpy(zero_copy_only=False)
                self.guids = table["marketoGUID"].to_numpy()
                self._table = table
        return self

    def start_index(self, position: Position) -> int:
        first = int(np.searchsorted(self.dates, position.date_s, "left"))
        last = int(np.searchsorted(self.dates, position.date_s, "right"))
        return first + int(np.searchsorted(self.guids[first:last], position.guid, "right"))


@dataclass
class ActivityQuery:
    type_ids: np.ndarray | None
    lead_ids: np.ndarray | None
    asset_ids: np.ndarray | None
    size: int
    retention_now: datetime | None


def scan(table: pa.Table, keys: SortKeys, start: int, query: ActivityQuery) -> tuple[np.ndarray, int]:
    """Row indices of the next matches from `start`, and where the scan stopped (exclusive)."""
    found: list[np.ndarray] = []
    count, index, chunks = 0, start, 0
    while index < table.num_rows and count < query.size and (count or chunks < MAX_SCAN_CHUNKS):
        end = min(index + SCAN_CHUNK, table.num_rows)
        mask = np.ones(end - index, dtype=bool)
        chunk = table.slice(index, end - index)
        if query.type_ids is not None:
            mask &= np.isin(chunk["activityTypeId"].to_numpy(), query.type_ids)
        if query.lead_ids is not None:
            mask &= np.isin(chunk["leadId"].to_numpy(), query.lead_ids)
        if query.asset_ids is not None:
            pav = pc.fill_null(chunk["primaryAttributeValueId"], -1).to_numpy()
            mask &= np.isin(pav, query.asset_ids)
        if query.retention_now is not None and mask.any():
            mask &= retained_mask(chunk, query.retention_now)
        hits = np.flatnonzero(mask) + index
        if len(hits) > query.size - count:
            hits = hits[: query.size - count]
            end = int(hits[-1]) + 1
        found.append(hits)
        count += len(hits)
        index, chunks = end, chunks + 1
    rows = np.concatenate(found) if found else np.empty(0, np.int64)
    return rows, index


def render(ctx: SandboxContext, table: pa.Table) -> list[dict[str, Any]]:
    attributes = render_attributes(ctx.state, table).to_pylist()
    out = []
    for row, attrs in zip(table.to_pylist(), attributes, strict=True):
        guid = row["marketoGUID"]
        out.append(
            {
                "id": guid,
                "marketoGUID": str(guid),
                "leadId": row["leadId"],
                "activityDate": lead_timestamp(row["activityDate"]),
                "activityTypeId": row["activityTypeId"],
                "campaignId": row["campaignId"],
                "primaryAttributeValueId": row["primaryAttributeValueId"],
                "primaryAttributeValue": row["primaryAttributeValue"],
                "attributes": [a for a in attributes_as_list(attrs) if a["value"] not in (None, "")],
            }
        )
    return out


def lead_change_item(item: dict[str, Any], wanted: set[str]) -> dict[str, Any] | None:
    """Lead changes add a `fields` array; a Change Data Value on an unrequested field is left out."""
    values = {a["name"]: a["value"] for a in item["attributes"]}
    if item["activityTypeId"] == 13:
        name = _field_name(item.get("primaryAttributeValue"))
        if name not in wanted:
            return None
        item["fields"] = [
            {
                "id": BY_NAME[name].id if name in BY_NAME else 0,
                "name": name,
                "newValue": values.get("New Value"),
                "oldValue": values.get("Old Value"),
            }
        ]
    else:
        item["fields"] = []
    return item


def _field_name(display: str | None) -> str | None:
    spec = BY_DISPLAY.get(display or "") or BY_NAME.get(display or "")
    return spec.name if spec is not None else display


def check_list_size(ctx: SandboxContext, list_id: str, members: int) -> None:
    """From the configured date a `listId` of too many members is refused with 1003
    (docs/marketo.md §4.2)."""
    behaviour = ctx.config.behaviour
    if members >= behaviour.list_id_member_limit and ctx.clock.now().date() >= behaviour.list_id_limit_from:
        raise MarketoApiError(
            1003,
            f"listId: static list {list_id} has {members} members; lists of "
            f"{behaviour.list_id_member_limit} or more are not supported since "
            f"{behaviour.list_id_limit_from.isoformat()}",
        )


def routes(ctx: SandboxContext) -> list[BaseRoute]:
    state = ctx.state
    keys = SortKeys()

    def position_from(request: Request) -> Position:
        return decode_position(required_param(request, "nextPageToken"))

    def lead_filter(request: Request) -> np.ndarray | None:
        lead_ids = int_list_param(request, "leadIds", maximum=MAX_LEAD_IDS)
        list_id = request.query_params.get("listId")
        if list_id:
            members = next(
                (s.get("lead_ids", []) for s in state.static_lists if str(s.get("id")) == list_id), None
            )
            if members is None:
                raise MarketoApiError(1013, f"Static list {list_id} not found")
            check_list_size(ctx, list_id, len(members))
            member_set = set(members)
            lead_ids = [i for i in lead_ids if i in member_set] if lead_ids else list(members)
            if not lead_ids:
                return np.empty(0, np.int64)
        return np.array(lead_ids, np.int64) if lead_ids else None

    def page(request: Request, query: ActivityQuery, table: pa.Table, extra: Any = None) -> Response:
        position = position_from(request)
        sort = keys.of(table) if table is state.activities else SortKeys().of(table)
        start = sort.start_index(position)
        rows, stopped = scan(table, sort, start, query)
        more = stopped < table.num_rows
        if len(rows) == 0 and more and position.empties >= ctx.config.behaviour.max_empty_activity_pages:
            # Keep scanning until something turns up: never more empty pages in a row than configured.
            while len(rows) == 0 and stopped < table.num_rows:
                rows, stopped = scan(table, sort, stopped, query)
            more = stopped < table.num_rows
        if len(rows):
            last = int(rows[-1])
            after = Position(int(sort.dates[last]), int(sort.guids[last]))
        elif stopped > start:
            after = Position(int(sort.dates[stopped - 1]), int(sort.guids[stopped - 1]), position.empties + 1)
        else:
            after = Position(position.date_s, position.guid)
        items = render(ctx, table.take(pa.array(rows, pa.int64()))) if len(rows) else []
        if extra is not None:
            items = [i for i in (extra(item) for item in items) if i is not None]
        body = ok(items or None)
        body["nextPageToken"] = after.token()
        body["moreResult"] = bool(more)
        return respond(body)

    async def types(request: Request) -> Response:
        return respond(ok(list(state.activity_types)))

    async def paging_token(request: Request) -> Response:
        since = parse_datetime(required_param(request, "sinceDatetime"), "sinceDatetime")
        position = Position(int(since.astimezone(UTC).timestamp()) - 1, np.iinfo(np.int64).max)
        return respond(ok(None, nextPageToken=position.token()))

    async def activities(request: Request) -> Response:
        required_param(request, "activityTypeIds")
        type_ids = int_list_param(
            request,
            "activityTypeIds",
            maximum=MAX_ACTIVITY_TYPE_IDS,
            too_many_code=ctx.config.behaviour.too_many_activity_types_error_code,
        )
        asset_ids = int_list_param(request, "assetIds")
        query = ActivityQuery(
            np.array(type_ids, np.int32),
            lead_filter(request),
            np.array(asset_ids, np.int64) if asset_ids else None,
            batch_size(request),
            ctx.clock.now() if ctx.config.behaviour.enforce_retention else None,
        )
        with state.lock:
            table = state.activities
        return page(request, query, table)

    async def lead_changes(request: Request) -> Response:
        wanted = set(list_param(request, "fields"))
        if not wanted:
            raise MarketoApiError(701, "fields cannot be blank")
        query = ActivityQuery(
            np.array(LEAD_CHANGE_TYPES, np.int32),
            lead_filter(request),
            None,
            batch_size(request),
            ctx.clock.now() if ctx.config.behaviour.enforce_retention else None,
        )
        with state.lock:
            table = state.activities
        return page(request, query, table, extra=lambda item: lead_change_item(item, wanted))

    async def deleted_leads(request: Request) -> Response:
        query = ActivityQuery(
            None,
            None,
            None,
            batch_size(request),
            ctx.clock.now() if ctx.config.behaviour.enforce_retention else None,
        )
        with state.lock:
            table = deleted_leads_table(state.deleted_leads)
        return page(request, query, table)

    return [
        Route("/rest/v1/activities/types.json", types, methods=["GET"]),
        Route("/rest/v1/activities/pagingtoken.json", paging_token, methods=["GET"]),
        Route("/rest/v1/activities.json", activities, methods=["GET"]),
        Route("/rest/v1/activities/leadchanges.json", lead_changes, methods=["GET"]),
        Route("/rest/v1/activities/deletedleads.json", deleted_leads, methods=["GET"]),
    ]


def deleted_leads_table(deleted: pa.Table) -> pa.Table:
    """Deleted leads as Delete Lead (37) activities, in activity order, so one pager serves both."""
    n = deleted.num_rows
    table = pa.table(
        {
            "marketoGUID": deleted["marketoGUID"],
            "leadId": deleted["leadId"],
            "activityDate": deleted["deletedAt"],
            "activityTypeId": pa.array(np.full(n, catalog.DELETE_LEAD, np.int32)),
            "campaignId": pa.nulls(n, pa.int64()),
            "primaryAttributeValueId": deleted["leadId"],
            "primaryAttributeValue": deleted["name"],
            "attributeSeed": pa.array(np.zeros(n, np.int64)),
            "attributesJson": pa.array(["{}"] * n, pa.string()),
        }
    )
    return table.take(pc.sort_indices(table, [("activityDate", "ascending"), ("marketoGUID", "ascending")]))
