"""Asset API routes (docs/marketo.md §5.8, §9, §10, §13): programs, channels, smart lists, static lists,
smart campaigns, folders.

Asset envelopes always carry `errors:[]` and `warnings:[]`; timestamps use the `…Z+0000` form; browsing
uses offset/maxReturn (≤ 200) and ends with success, no `result` and the "No assets found" warning.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pyarrow as pa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from molequle_dagster.sandbox import catalog, my_tokens
from molequle_dagster.sandbox.context import SandboxContext
from molequle_dagster.sandbox.envelope import MarketoApiError, asset_timestamp, ok
from molequle_dagster.sandbox.limits import MAX_ASSET_RETURN
from molequle_dagster.sandbox.params import (
    allow_params,
    bool_param,
    int_param,
    list_param,
    parse_datetime,
    respond,
)

NO_ASSETS = "No assets found for the given search criteria."
APP_URL = "https://app-sandbox.marketo.com/#"
INTERNAL_KEYS = frozenset({"lead_ids", "rule", "programName", "segments"})
BROWSE_PARAMS = ("offset", "maxReturn")
ASSET_STATUSES = ("approved", "draft")
PROGRAM_FILTERS = {"id": "id", "programId": "id", "folderId": "folderId", "workspace": "workspace"}
RULE_FILTERS = {
    "all": [],
    "subscribed": [("Unsubscribed", "is", ["false"])],
    "unsubscribed": [("Unsubscribed", "is", ["true"])],
    "min_lead_score": [("Lead Score", "at least", None)],
    "country": [("Country", "is", None)],
}


def asset_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return asset_timestamp(value)
    if isinstance(value, dict):
        return {k: asset_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [asset_value(v) for v in value]
    return value


def asset_item(item: dict[str, Any]) -> dict[str, Any]:
    """An asset-shaped state dict on the wire: internal keys dropped, timestamps in `…Z+0000` form."""
    return {k: asset_value(v) for k, v in item.items() if k not in INTERNAL_KEYS and not k.startswith("_")}


def found(items: list[dict[str, Any]]) -> dict[str, Any]:
    if not items:
        return ok(None, asset_api=True, warnings=[NO_ASSETS])
    return ok(items, asset_api=True)


def program_item(row: dict[str, Any], *, detail: bool = False) -> dict[str, Any]:
    item = {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"] or "",
        "createdAt": asset_timestamp(row["createdAt"]),
        "updatedAt": asset_timestamp(row["updatedAt"]),
        "url": f"{APP_URL}{catalog.PROGRAM_URL_PREFIX.get(row['type'], 'PG')}{row['id']}A1",
        "type": row["type"],
        "channel": row["channel"],
        "folder": {"type": "Folder", "value": row["folderId"], "folderName": row["folderName"]},
        "status": row["status"] or "",
        "workspace": row["workspace"] or "Default",
        "headStart": False,
    }
    if detail:
        item.update(tags=[], costs=None)
    return item


def smart_list_rules(smart_list: dict[str, Any]) -> dict[str, Any]:
    rule = smart_list.get("rule") or {}
    filters = []
    for index, (name, operator, values) in enumerate(RULE_FILTERS.get(rule.get("kind"), []), start=1):
        shown = values if values is not None else [str(rule.get("value"))]
        filters.append(
            {
                "id": index,
                "name": name,
                "ruleTypeId": 1000 + index,
                "ruleType": name,
                "operator": operator,
                "conditions": [{"operator": operator, "values": shown}],
            }
        )
    return {"filterMatchType": "all", "triggers": [], "filters": filters}


def browse(
    request: Request,
    items: list[dict[str, Any]],
    *,
    updated: Callable[[dict], Any] | None = None,
    created: Callable[[dict], Any] | None = None,
) -> dict[str, Any]:
    """offset/maxReturn paging plus the earliest/latestUpdatedAt window (created or updated in range)."""
    offset = int_param(request, "offset", 0, minimum=0, asset_api=True)
    max_return = int_param(request, "maxReturn", 20, minimum=1, maximum=MAX_ASSET_RETURN, asset_api=True)
    earliest, latest = (
        request.query_params.get("earliestUpdatedAt"),
        request.query_params.get("latestUpdatedAt"),
    )
    if (earliest or latest) and updated is not None:
        low = parse_datetime(earliest, "earliestUpdatedAt", asset_api=True) if earliest else None
        high = parse_datetime(latest, "latestUpdatedAt", asset_api=True) if latest else None

        def in_range(value: datetime | None) -> bool:
            return value is not None and (low is None or value >= low) and (high is None or value <= high)

        items = [i for i in items if in_range(updated(i)) or (created is not None and in_range(created(i)))]
    return found(items[offset : offset + max_return])


def status_param(request: Request) -> str | None:
    """The draft/approved filter of emails and segmentations (swagger enum)."""
    status = request.query_params.get("status") or None
    if status is not None and status not in ASSET_STATUSES:
        raise MarketoApiError(1003, f"status: expected 'approved' or 'draft', got {status!r}", asset_api=True)
    return status


def folder_param(request: Request) -> dict[str, Any] | None:
    raw = request.query_params.get("folder")
    if not raw:
        return None
    try:
        folder = json.loads(raw)
        return {"id": int(folder["id"]), "type": str(folder.get("type", "Folder"))}
    except (ValueError, KeyError, TypeError) as exc:
        raise MarketoApiError(
            1003, 'folder: expected JSON such as {"id": 1001, "type": "Folder"}', asset_api=True
        ) from exc


def in_folder(item: dict[str, Any], folder: dict[str, Any] | None) -> bool:
    if folder is None:
        return True
    own = item.get("folder") or {}
    return own.get("id", own.get("value")) == folder["id"] and own.get("type", "Folder") == folder["type"]


def folder_items(ctx: SandboxContext) -> list[dict[str, Any]]:
    created = asset_timestamp(ctx.state.created_at or ctx.clock.now())
    return [
        {
            "name": name,
            "description": "",
            "createdAt": created,
            "updatedAt": created,
            "url": f"https://app-sandbox.marketo.com/#MF{folder_id}A1",
            "folderId": {"id": folder_id, "type": "Folder"},
            "folderType": "Marketing Folder",
            "parent": {"id": 1000, "type": "Folder"},
            "path": f"/Marketing Activities/{name}",
            "isArchive": False,
            "isSystem": False,
            "accessZoneId": 1,
            "workspace": "Default",
            "id": folder_id,
        }
        for folder_id, name in catalog.FOLDERS
    ]


def routes(ctx: SandboxContext) -> list[BaseRoute]:
    state = ctx.state

    def program_rows() -> list[dict[str, Any]]:
        with state.lock:
            programs: pa.Table = state.programs
        return programs.to_pylist()

    def by_name(items: list[dict[str, Any]], request: Request) -> list[dict[str, Any]]:
        name = request.query_params.get("name")
        if not name:
            raise MarketoApiError(701, "name cannot be blank", asset_api=True)
        return [i for i in items if i.get("name") == name]

    async def programs(request: Request) -> Response:
        rows = program_rows()
        status = request.query_params.get("status")
        if status:
            rows = [r for r in rows if r["status"] == status]
        filter_type = request.query_params.get("filterType")
        if filter_type:
            if filter_type not in PROGRAM_FILTERS:
                raise MarketoApiError(
                    1003,
                    f"filterType: expected one of {list(PROGRAM_FILTERS)}, got {filter_type!r}",
                    asset_api=True,
                )
            wanted = set(list_param(request, "filterValues"))
            rows = [r for r in rows if str(r[PROGRAM_FILTERS[filter_type]]) in wanted]
        return respond(_programs_page(request, rows))

    def _programs_page(request: Request, rows: list[dict[str, Any]]) -> dict[str, Any]:
        body = browse(request, rows, updated=lambda r: r["updatedAt"], created=lambda r: r["createdAt"])
        if "result" in body:
            body["result"] = [program_item(r) for r in body["result"]]
        return body

    async def program_by_id(request: Request) -> Response:
        rows = [r for r in program_rows() if r["id"] == request.path_params["id"]]
        return respond(found([program_item(r, detail=True) for r in rows]))

    async def program_by_name(request: Request) -> Response:
        return respond(found([program_item(r, detail=True) for r in by_name(program_rows(), request)]))

    async def program_by_tag(request: Request) -> Response:
        allow_params(request, "tagType", "tagValue", "maxReturn", "offset", asset_api=True)
        for name in ("tagType", "tagValue"):
            if not request.query_params.get(name, "").strip():
                raise MarketoApiError(701, f"{name} cannot be blank", asset_api=True)
        # Sandbox programs carry no tags (program by id/name shows `tags: []`), so no program matches;
        # maxReturn/offset are still validated like every browse.
        return respond(browse(request, []))

    def small(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        with state.lock:
            return list(items)

    async def channels(request: Request) -> Response:
        body = browse(request, small(state.channels))
        return respond(_render(body, asset_item))

    async def channel_by_name(request: Request) -> Response:
        return respond(found([asset_item(c) for c in by_name(small(state.channels), request)]))

    def smart_list_item(item: dict[str, Any], request: Request) -> dict[str, Any]:
        out = asset_item(item)
        if bool_param(request, "includeRules", asset_api=True):
            out["rules"] = smart_list_rules(item)
        return out

    async def smart_lists(request: Request) -> Response:
        folder = folder_param(request)
        items = [i for i in small(state.smart_lists) if in_folder(i, folder)]
        body = browse(
            request, items, updated=lambda i: i.get("updatedAt"), created=lambda i: i.get("createdAt")
        )
        return respond(_render(body, asset_item))

    async def smart_list_by_id(request: Request) -> Response:
        items = [i for i in small(state.smart_lists) if i.get("id") == request.path_params["id"]]
        return respond(found([smart_list_item(i, request) for i in items]))

    async def smart_list_by_name(request: Request) -> Response:
        return respond(
            found([smart_list_item(i, request) for i in by_name(small(state.smart_lists), request)])
        )

    async def static_lists(request: Request) -> Response:
        folder = folder_param(request)
        items = [i for i in small(state.static_lists) if in_folder(i, folder)]
        body = browse(
            request, items, updated=lambda i: i.get("updatedAt"), created=lambda i: i.get("createdAt")
        )
        return respond(_render(body, asset_item))

    async def static_list_by_id(request: Request) -> Response:
        items = [i for i in small(state.static_lists) if i.get("id") == request.path_params["id"]]
        return respond(found([asset_item(i) for i in items]))

    async def static_list_by_name(request: Request) -> Response:
        return respond(found([asset_item(i) for i in by_name(small(state.static_lists), request)]))

    async def smart_campaigns(request: Request) -> Response:
        folder = folder_param(request)
        # swagger: "Set true to return only active campaigns. Default false" - false filters nothing
        active_only = bool_param(request, "isActive", asset_api=True) is True
        items = [
            c
            for c in small(state.campaigns)
            if in_folder(c, folder) and (not active_only or bool(c.get("isActive")))
        ]
        # "Exclude smart campaigns prior to / after this date": the window applies to updatedAt
        body = browse(request, items, updated=lambda c: c.get("updatedAt"))
        return respond(_render(body, asset_item))

    async def smart_campaign_by_id(request: Request) -> Response:
        items = [c for c in small(state.campaigns) if c.get("id") == request.path_params["id"]]
        return respond(found([asset_item(c) for c in items]))

    async def smart_campaign_by_name(request: Request) -> Response:
        return respond(found([asset_item(c) for c in by_name(small(state.campaigns), request)]))

    def emails_in(request: Request) -> list[dict[str, Any]]:
        status = status_param(request)
        folder = folder_param(request)
        return [e for e in small(state.emails) if in_folder(e, folder) and status in (None, e["status"])]

    async def emails(request: Request) -> Response:
        allow_params(request, *BROWSE_PARAMS, "status", "folder", "earliestUpdatedAt", "latestUpdatedAt")
        body = browse(
            request, emails_in(request), updated=lambda e: e["updatedAt"]
        )  # "Exclude emails prior to"
        return respond(_render(body, asset_item))

    async def email_by_id(request: Request) -> Response:
        allow_params(request, "status", asset_api=True)
        items = [e for e in emails_in(request) if e["id"] == request.path_params["id"]]
        return respond(found([asset_item(e) for e in items]))

    async def email_by_name(request: Request) -> Response:
        allow_params(request, "name", "status", "folder", asset_api=True)
        return respond(found([asset_item(e) for e in by_name(emails_in(request), request)]))

    async def segmentations(request: Request) -> Response:
        allow_params(request, *BROWSE_PARAMS, "status")
        status = status_param(request)
        items = [s for s in small(state.segmentations) if status in (None, s["status"])]
        return respond(_render(browse(request, items), asset_item))

    async def segments(request: Request) -> Response:
        allow_params(request, *BROWSE_PARAMS, "status")
        status = status_param(request)
        segmentation = next(
            (s for s in small(state.segmentations) if s["id"] == request.path_params["id"]), None
        )
        if segmentation is None or status not in (None, segmentation["status"]):
            return respond(found([]))
        return respond(_render(browse(request, list(segmentation["segments"])), asset_item))

    async def folder_tokens(request: Request) -> Response:
        allow_params(request, "folderType", asset_api=True)
        folder_type = request.query_params.get("folderType") or "Folder"  # swagger default
        if folder_type not in my_tokens.FOLDER_TYPES:
            raise MarketoApiError(
                1003, f"folderType: expected 'Folder' or 'Program', got {folder_type!r}", asset_api=True
            )
        folder_id = request.path_params["id"]
        tokens = my_tokens.tokens_of(
            state, folder_type, folder_id, inherited=ctx.config.behaviour.tokens_include_inherited
        )
        if tokens is None:
            code = ctx.config.behaviour.unknown_token_folder_code
            if code == "warning":
                return respond(found([]))
            raise MarketoApiError(code, f"{folder_type} {folder_id} not found", asset_api=True)
        shown = [{k: t[k] for k in ("name", "type", "value", "computedUrl")} for t in tokens]
        # The doc example shows `folder` as {type, value} (swagger types it as a JSON string)
        return respond(
            ok([{"folder": {"type": folder_type, "value": folder_id}, "tokens": shown}], asset_api=True)
        )

    async def folders(request: Request) -> Response:
        return respond(browse(request, folder_items(ctx)))

    async def folder_by_id(request: Request) -> Response:
        return respond(found([f for f in folder_items(ctx) if f["id"] == request.path_params["id"]]))

    async def folder_by_name(request: Request) -> Response:
        return respond(found(by_name(folder_items(ctx), request)))

    prefix = "/rest/asset/v1"
    table = [
        ("/programs.json", programs),
        ("/program/{id:int}.json", program_by_id),
        ("/program/byName.json", program_by_name),
        ("/program/byTag.json", program_by_tag),
        ("/channels.json", channels),
        ("/channel/byName.json", channel_by_name),
        ("/smartLists.json", smart_lists),
        ("/smartList/{id:int}.json", smart_list_by_id),
        ("/smartList/byName.json", smart_list_by_name),
        ("/staticLists.json", static_lists),
        ("/staticList/{id:int}.json", static_list_by_id),
        ("/staticList/byName.json", static_list_by_name),
        ("/smartCampaigns.json", smart_campaigns),
        ("/smartCampaign/{id:int}.json", smart_campaign_by_id),
        ("/smartCampaign/byName.json", smart_campaign_by_name),
        ("/folders.json", folders),
        ("/folder/{id:int}.json", folder_by_id),
        ("/folder/byName.json", folder_by_name),
        ("/folder/{id:int}/tokens.json", folder_tokens),
        ("/emails.json", emails),
        ("/email/{id:int}.json", email_by_id),
        ("/email/byName.json", email_by_name),
        ("/segmentation.json", segmentations),
        ("/segmentation/{id:int}/segments.json", segments),
    ]
    return [Route(prefix + path, endpoint, methods=["GET"]) for path, endpoint in table]


def _render(body: dict[str, Any], render: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    if "result" in body:
        body["result"] = [render(item) for item in body["result"]]
    return body
