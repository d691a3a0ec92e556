"""Static list membership (docs/marketo.md §10): add to / remove from a list, ismember, and the lists of
one lead.

Lead ids come as `id=` query values or a JSON `input` (≤ 300). Results follow the input order: `added`,
`removed`, `memberof`/`notmemberof`, or `skipped` with 1004 (not a lead) / 1015 (not in the list). Real adds
and removals log Add to List (24) / Remove from List (25) activities, as list changes in Marketo do.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from molequle_dagster.sandbox import catalog
from molequle_dagster.sandbox.context import SandboxContext
from molequle_dagster.sandbox.envelope import ok
from molequle_dagster.sandbox.params import (
    allow_params,
    batch_size,
    json_body,
    lead_id_input,
    page_offset,
    paged,
    respond,
    skipped,
)
from molequle_dagster.sandbox.routes_leads import (
    append_activities,
    find_static_list,
    lead_activity,
    list_leads_page,
    wire_value,
)
from molequle_dagster.sandbox.routes_merge_delete import existing_lead_ids

ADDED_AT = "_added_at"  # {leadId: datetime} of API adds; '_' keys never reach the Asset API's list items
REMOVE_FROM_LIST = 25
LIST_SOURCE = "Web Service API"


def _list_activity(ctx: SandboxContext, static: dict[str, Any], lead_id: int, type_id: int) -> dict[str, Any]:
    now = ctx.clock.now().replace(microsecond=0)
    attributes = {"List ID": static["id"], "Source": LIST_SOURCE}
    return lead_activity(ctx.state, lead_id, type_id, now, static["id"], static["name"], attributes)


def add_to_list(ctx: SandboxContext, list_id: int, lead_ids: list[int]) -> list[dict[str, Any]]:
    """A lead already in the list is reported `added` again (idempotent) but logs nothing new."""
    state = ctx.state
    now = ctx.clock.now().replace(microsecond=0)
    with state.lock:
        static = find_static_list(ctx, list_id)
        existing = existing_lead_ids(state, lead_ids)
        members = static.setdefault("lead_ids", [])
        member_set = set(members)
        results, activities = [], []
        for lead_id in lead_ids:
            if lead_id not in existing:
                results.append(skipped(1004, "Lead not found", id=lead_id))
                continue
            if lead_id not in member_set:
                member_set.add(lead_id)
                members.append(lead_id)
                static.setdefault(ADDED_AT, {})[lead_id] = now
                activities.append(_list_activity(ctx, static, lead_id, catalog.ADD_TO_LIST))
            results.append({"id": lead_id, "status": "added"})
        append_activities(state, activities)
    return results


def remove_from_list(ctx: SandboxContext, list_id: int, lead_ids: list[int]) -> list[dict[str, Any]]:
    state = ctx.state
    with state.lock:
        static = find_static_list(ctx, list_id)
        existing = existing_lead_ids(state, lead_ids)
        member_set = set(static.get("lead_ids", []))
        results, activities, removed = [], [], set()
        for lead_id in lead_ids:
            if lead_id not in existing:
                results.append(skipped(1004, "Lead not found", id=lead_id))
            elif lead_id not in member_set:
                results.append(skipped(1015, "Lead not in list", id=lead_id))
            else:
                member_set.discard(lead_id)
                removed.add(lead_id)
                activities.append(_list_activity(ctx, static, lead_id, REMOVE_FROM_LIST))
                results.append({"id": lead_id, "status": "removed"})
        if removed:
            static["lead_ids"] = [x for x in static["lead_ids"] if x not in removed]
            for lead_id in removed:
                static.get(ADDED_AT, {}).pop(lead_id, None)
        append_activities(state, activities)
    return results


def membership_of(ctx: SandboxContext, list_id: int, lead_ids: list[int]) -> list[dict[str, Any]]:
    state = ctx.state
    with state.lock:
        member_set = set(find_static_list(ctx, list_id).get("lead_ids", []))
        existing = existing_lead_ids(state, lead_ids)
    return [
        {"id": lead_id, "status": "memberof" if lead_id in member_set else "notmemberof"}
        if lead_id in existing
        else skipped(1004, "Lead not found", id=lead_id)
        for lead_id in lead_ids
    ]


def lists_of_lead(ctx: SandboxContext, lead_id: int) -> list[dict[str, Any]]:
    """`[{listId, createdAt, updatedAt}]`, newest list first (as in doc_leads__get-lists-by-lead-id); the
    times are when the lead joined, or the list's creation for members the generator put there."""
    with ctx.state.lock:
        lists = [s for s in ctx.state.static_lists if lead_id in set(s.get("lead_ids", []))]
        items = []
        for static in sorted(lists, key=lambda s: s["id"], reverse=True):
            joined: datetime | None = static.get(ADDED_AT, {}).get(lead_id) or static.get("createdAt")
            item: dict[str, Any] = {"listId": static["id"]}
            if joined is not None:
                item.update(createdAt=wire_value(joined), updatedAt=wire_value(joined))
            items.append(item)
    return items


# --- routes -------------------------------------------------------------------------------------------------


def _form_method_get(request: Request, raw: bytes) -> Request | None:
    """A POST whose form body carries `_method=GET` (grouparoo's captured list read) as a GET request."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None
    pairs = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
    if ("_method", "GET") not in [(k, v.upper()) for k, v in pairs]:
        return None
    query = parse_qsl(request.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    query += [(k, v) for k, v in pairs if k != "_method"]
    scope = {**request.scope, "method": "GET", "query_string": urlencode(query).encode("latin-1")}
    return Request(scope)


def routes(ctx: SandboxContext) -> list[BaseRoute]:
    async def add(request: Request) -> Response:
        as_get = _form_method_get(request, await request.body())
        if as_get is not None:
            return respond(list_leads_page(ctx, as_get))
        allow_params(request, "id")
        body = await json_body(request, required=False)
        lead_ids = lead_id_input(request, body)
        return respond(ok(add_to_list(ctx, request.path_params["id"], lead_ids)))

    async def remove(request: Request) -> Response:
        allow_params(request, "id")
        body = await json_body(request, required=False)
        lead_ids = lead_id_input(request, body)
        return respond(ok(remove_from_list(ctx, request.path_params["id"], lead_ids)))

    async def is_member(request: Request) -> Response:
        allow_params(request, "id")
        lead_ids = lead_id_input(request, {})
        return respond(ok(membership_of(ctx, request.path_params["id"], lead_ids)))

    async def lead_lists(request: Request) -> Response:
        allow_params(request, "batchSize", "nextPageToken")
        items = lists_of_lead(ctx, request.path_params["id"])
        return respond(paged(items, page_offset(request, "leadlists"), batch_size(request), "leadlists"))

    return [
        Route("/rest/v1/lists/{id:int}/leads.json", add, methods=["POST"]),
        Route("/rest/v1/lists/{id:int}/leads.json", remove, methods=["DELETE"]),
        Route("/rest/v1/list/{id:int}/leads.json", add, methods=["POST"]),  # legacy path, as captured
        Route("/rest/v1/list/{id:int}/leads.json", remove, methods=["DELETE"]),
        Route("/rest/v1/lists/{id:int}/leads/ismember.json", is_member, methods=["GET"]),
        Route("/rest/v1/leads/{id:int}/listMembership.json", lead_lists, methods=["GET"]),
    ]
