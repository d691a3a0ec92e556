"""Program membership seen from the lead database (docs/marketo.md §9.4): the leads of a program, each with a
`membership` object, and the programs of one lead. Status is `progressionStatus` on these surfaces (the
program-members API calls it `statusName`)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from molequle_dagster.sandbox.context import SandboxContext
from molequle_dagster.sandbox.envelope import MarketoApiError, ok
from molequle_dagster.sandbox.lead_view import LeadView
from molequle_dagster.sandbox.params import (
    allow_params,
    batch_size,
    encode_token,
    int_list_param,
    page_offset,
    paged,
    respond,
)
from molequle_dagster.sandbox.routes_campaigns import program_row
from molequle_dagster.sandbox.routes_leads import (
    DEFAULT_LEAD_FIELDS,
    LEAD_FIELD_NAMES,
    filter_values,
    lead_records,
    lead_rows,
    requested_fields,
    wire_value,
)

MEMBERSHIP_FIELD = "membership"  # always present on leads by program; naming it in `fields` is allowed


def status_types(ctx: SandboxContext, channel_name: str) -> dict[str, str]:
    """Status name -> progressionStatusType: the status's `type` where the channel has one, else its name
    (doc_leads__programs__response shows the two equal)."""
    channel = next((c for c in ctx.state.channels if c.get("name") == channel_name), {})
    return {s["name"]: s.get("type") or s["name"] for s in channel.get("progressionStatuses", [])}


def membership_object(row: dict[str, Any], status_type: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": row["programId"], "progressionStatus": row["statusName"]}
    if status_type is not None:
        item["progressionStatusType"] = status_type
    item.update(
        isExhausted=bool(row["isExhausted"]),
        acquiredBy=bool(row["acquiredBy"]),
        reachedSuccess=bool(row["reachedSuccess"]),
        membershipDate=wire_value(row["membershipDate"]),
        updatedAt=wire_value(row["updatedAt"]),
    )
    return item


def program_leads_page(ctx: SandboxContext, request: Request, program_id: int) -> dict[str, Any]:
    """Get Leads by Program: members ordered by lead id, only the page's leads rendered."""
    fields = requested_fields(request, (*LEAD_FIELD_NAMES, MEMBERSHIP_FIELD), DEFAULT_LEAD_FIELDS)
    fields = [f for f in fields if f != MEMBERSHIP_FIELD]
    offset, size = page_offset(request, "programleads"), batch_size(request)
    state = ctx.state
    with state.lock:
        program = program_row(ctx, program_id)
        members = state.memberships.filter(pc.equal(state.memberships["programId"], program_id))
        members = members.take(pc.sort_indices(members["leadId"]))
        page = members.slice(offset, size).to_pylist()
        page_leads = lead_rows(ctx, [m["leadId"] for m in page])
        leads = {r["id"]: r for r in lead_records(LeadView(state), page_leads, fields)}
        types = status_types(ctx, program["channel"])
    result = [
        {**leads[m["leadId"]], MEMBERSHIP_FIELD: membership_object(m, types.get(m["statusName"]))}
        for m in page
        if m["leadId"] in leads
    ]
    body = ok(result)
    if offset + size < members.num_rows:
        body.update(moreResult=True, nextPageToken=encode_token("programleads", offset + size))
    return body


def programs_of_lead(ctx: SandboxContext, request: Request, lead_id: int) -> list[dict[str, Any]]:
    """Get Programs by Lead Id, optionally only `filterType=programId` `filterValues=…`."""
    filter_type = request.query_params.get("filterType")
    wanted: list[int] | None = None
    if filter_type is not None:
        if filter_type != "programId":
            raise MarketoApiError(1003, f"filterType: expected 'programId', got {filter_type!r}")
        filter_values(request)  # 701 when blank, 1003 beyond 300
        wanted = int_list_param(request, "filterValues")
    elif "filterValues" in request.query_params:
        raise MarketoApiError(701, "filterType cannot be blank")
    with ctx.state.lock:
        members = ctx.state.memberships
        members = members.filter(pc.equal(members["leadId"], lead_id))
        if wanted is not None:
            members = members.filter(pc.is_in(members["programId"], value_set=pa.array(wanted, pa.int64())))
        rows = members.take(pc.sort_indices(members["programId"])).to_pylist()
    return [
        {
            "id": row["programId"],
            "progressionStatus": row["statusName"],
            "isExhausted": bool(row["isExhausted"]),
            "acquiredBy": bool(row["acquiredBy"]),
            "reachedSuccess": bool(row["reachedSuccess"]),
            "membershipDate": wire_value(row["membershipDate"]),
            "updatedAt": wire_value(row["updatedAt"]),
        }
        for row in rows
    ]


def routes(ctx: SandboxContext) -> list[BaseRoute]:
    async def program_leads(request: Request) -> Response:
        allow_params(request, "fields", "batchSize", "nextPageToken")
        return respond(program_leads_page(ctx, request, request.path_params["id"]))

    async def lead_programs(request: Request) -> Response:
        allow_params(request, "filterType", "filterValues", "batchSize", "nextPageToken")
        items = programs_of_lead(ctx, request, request.path_params["id"])
        return respond(
            paged(items, page_offset(request, "leadprograms"), batch_size(request), "leadprograms")
        )

    return [
        Route("/rest/v1/leads/programs/{id:int}.json", program_leads, methods=["GET"]),
        Route("/rest/v1/leads/{id:int}/programMembership.json", lead_programs, methods=["GET"]),
    ]
