"""Delete Leads and Merge Leads (docs/marketo.md §12.2, §12.3): the lead-DB writes that make leads
disappear.

Both go through the mutation API, so a deletion leaves a Delete Lead record for Get Deleted Leads and
drops the person's activities and memberships, and a merge moves the losers' activities, memberships and
list entries to the winner and logs a Merge Leads (32) activity.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from molequle_dagster.sandbox import mutations
from molequle_dagster.sandbox.context import SandboxContext
from molequle_dagster.sandbox.envelope import MarketoApiError, ok
from molequle_dagster.sandbox.model import InstanceState
from molequle_dagster.sandbox.params import (
    allow_params,
    body_lead_ids,
    bool_param,
    int_list_param,
    json_body,
    respond,
    skipped,
)

MAX_MERGE_LOSERS = 25  # 1080 beyond this (docs/marketo.md §3.4, from 31 Mar 2026)
DELETE_BODY_MEMBERS = frozenset({"input"})


def existing_lead_ids(state: InstanceState, lead_ids: list[int]) -> set[int]:
    people = state.people
    wanted = pa.array(lead_ids, pa.int64())
    return set(people.filter(pc.is_in(people["id"], value_set=wanted))["id"].to_pylist())


# --- Delete Leads -------------------------------------------------------------------------------------------


def delete_leads(ctx: SandboxContext, body: dict[str, Any]) -> list[dict[str, Any]]:
    """`{"input": [{"id": …}, …]}` (≤ 300) → per record `deleted`, or `skipped` 1004 when not a lead (any
    more: a repeated id is deleted once)."""
    extra = sorted(set(body) - DELETE_BODY_MEMBERS)
    if extra:
        raise MarketoApiError(1003, f"request body: unknown member '{extra[0]}'; expected only 'input'")
    lead_ids = body_lead_ids(body)
    state = ctx.state
    with state.lock:
        existing = existing_lead_ids(state, lead_ids)
        results, doomed = [], []
        for lead_id in lead_ids:
            if lead_id in existing:
                existing.discard(lead_id)
                doomed.append(lead_id)
                results.append({"id": lead_id, "status": "deleted"})
            else:
                results.append(skipped(1004, "Lead not found", id=lead_id))
        if doomed:
            # one pass over activities/memberships for the whole call, not one per lead
            mutations.delete_leads(state, doomed, ctx.clock.now())
    return results


async def delete_response(ctx: SandboxContext, request: Request) -> Response:
    """Shared by POST leads/delete.json, the legacy DELETE leads.json and POST leads.json?_method=DELETE."""
    allow_params(request)
    body = await json_body(request)
    return respond(ok(delete_leads(ctx, body)))


# --- Merge Leads --------------------------------------------------------------------------------------------


def losing_ids(request: Request) -> list[int]:
    """`leadId=<one>` or `leadIds=<a,b,…>` (≤ 25, else 1080); exactly one of the two."""
    single = int_list_param(request, "leadId")
    many = int_list_param(request, "leadIds")
    if single and many:
        raise MarketoApiError(1003, "leadId and leadIds: send the losing leads in one of them, not both")
    if not single and not many:
        raise MarketoApiError(701, "leadId cannot be blank")
    if len(single) > 1:
        raise MarketoApiError(
            1003, f"leadId: expected one lead id, got {len(single)}; use leadIds for several"
        )
    losers = single or many
    if len(losers) > MAX_MERGE_LOSERS:
        raise MarketoApiError(
            1080, f"leadIds: at most {MAX_MERGE_LOSERS} losing lead ids may be merged, got {len(losers)}"
        )
    if len(set(losers)) != len(losers):
        raise MarketoApiError(1003, "leadIds: each losing lead id may appear only once")
    return losers


def merge_leads(ctx: SandboxContext, winner_id: int, losers: list[int]) -> None:
    if winner_id in losers:
        raise MarketoApiError(1003, f"leadIds: the winning lead {winner_id} cannot also be a losing lead")
    state = ctx.state
    with state.lock:
        existing = existing_lead_ids(state, [winner_id, *losers])
        missing = [lead_id for lead_id in [winner_id, *losers] if lead_id not in existing]
        if missing:
            raise MarketoApiError(1004, f"Lead not found: {missing[0]}")
        mutations.merge_leads(state, winner_id, losers, ctx.clock.now())


# --- routes -------------------------------------------------------------------------------------------------


def routes(ctx: SandboxContext) -> list[BaseRoute]:
    async def delete(request: Request) -> Response:
        return await delete_response(ctx, request)

    async def merge(request: Request) -> Response:
        allow_params(request, "leadId", "leadIds", "mergeInCRM")
        bool_param(request, "mergeInCRM")  # validated; the sandbox has no CRM to merge in
        merge_leads(ctx, request.path_params["id"], losing_ids(request))
        return respond(ok())  # Marketo answers a merge without `result` (doc_leads__merge__response)

    return [
        Route("/rest/v1/leads/delete.json", delete, methods=["POST"]),
        Route("/rest/v1/leads.json", delete, methods=["DELETE"]),  # marketorestpython's older form
        Route("/rest/v1/leads/{id:int}/merge.json", merge, methods=["POST"]),
    ]
