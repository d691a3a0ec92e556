"""Lead-DB campaign routes (docs/marketo.md §13): list/get campaigns, Request Campaign (trigger) and
Schedule Campaign, plus program members (docs/marketo.md §9.3): query, Sync Program Member Status (writes
a 104 activity) and describe.
Every campaign request that passes validation is recorded in `state.campaign_requests`."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from molequle_dagster.sandbox import catalog, my_tokens
from molequle_dagster.sandbox.attributes import explicit_json, program_member_id
from molequle_dagster.sandbox.context import SandboxContext
from molequle_dagster.sandbox.envelope import MarketoApiError, lead_timestamp, ok
from molequle_dagster.sandbox.limits import MAX_BATCH, MAX_TRIGGER_LEADS, MAX_TRIGGER_TOKENS
from molequle_dagster.sandbox.model import MEMBERSHIPS_SCHEMA
from molequle_dagster.sandbox.params import (
    batch_size,
    bool_param,
    json_body,
    list_param,
    page_offset,
    paged,
    parse_datetime,
    required_param,
    respond,
)
from molequle_dagster.sandbox.routes_leads import (
    append_activities,
    filter_values,
    next_activity_guid,
    records,
    wire_value,
)

TOKEN_NAME = re.compile(r"^\{\{my\.(.+)\}\}$")
SCHEDULE_MIN_DELAY = timedelta(minutes=5)
SCHEDULE_MAX_AHEAD = timedelta(days=731)
MAX_CLONES_PER_DAY = 20  # Schedule Campaign with cloneToProgramName (docs/marketo.md §13.3, 1020)
MEMBER_DEFAULT_FIELDS = ("leadId", "programId", "reachedSuccess", "acquiredBy", "membershipDate")
MEMBER_FIELDS = (
    "leadId",
    "programId",
    "statusName",
    "membershipDate",
    "reachedSuccess",
    "reachedSuccessDate",
    "acquiredBy",
    "isExhausted",
    "createdAt",
    "updatedAt",
)
MEMBER_SEARCHABLE = ("leadId", "statusName", "reachedSuccess")
MAX_NON_LEAD_FILTER_MEMBERS = 100_000
MAX_UPDATED_AT_WINDOW = timedelta(days=7)


# --- campaigns -------------------------------------------------------------------------------------------


def campaign_program_id(campaign: dict[str, Any]) -> int | None:
    folder = campaign.get("folder") or {}
    return campaign.get("parentProgramId") or (folder.get("id") if folder.get("type") == "Program" else None)


def lead_db_campaign(campaign: dict[str, Any]) -> dict[str, Any]:
    """The superseded lead-DB shape (docs/marketo.md §13.1) of an asset-shaped campaign."""
    item: dict[str, Any] = {
        "id": campaign["id"],
        "name": campaign["name"],
        "description": campaign.get("description", ""),
        "type": campaign.get("type", "batch"),
    }
    program_id = campaign_program_id(campaign)
    if program_id is not None:
        item["programId"] = program_id
    if campaign.get("programName"):
        item["programName"] = campaign["programName"]
    item["workspaceName"] = campaign.get("workspace", "Default")
    for key in ("createdAt", "updatedAt"):
        if campaign.get(key) is not None:
            item[key] = wire_value(campaign[key])
    item["active"] = bool(campaign.get("isActive", False))
    return item


def is_triggerable(campaign: dict[str, Any]) -> bool:
    return (
        campaign.get("type") == "trigger"
        and bool(campaign.get("isActive"))
        and bool(campaign.get("isRequestable"))
    )


def find_campaign(ctx: SandboxContext, campaign_id: int) -> dict[str, Any]:
    found = next((c for c in ctx.state.campaigns if c.get("id") == campaign_id), None)
    if found is None:
        raise MarketoApiError(1013, f"Campaign {campaign_id} not found")
    return found


def parse_tokens(ctx: SandboxContext, raw: Any, campaign: dict[str, Any]) -> dict[str, str]:
    """`[{"name": "{{my.X}}", "value": …}]`: each X must be a My Token the campaign's program sees (its own
    or one inherited from its folders)."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise MarketoApiError(1003, "input.tokens: expected an array of {name, value} objects")
    if len(raw) > MAX_TRIGGER_TOKENS:
        raise MarketoApiError(
            1003, f"input.tokens: at most {MAX_TRIGGER_TOKENS} tokens allowed, got {len(raw)}"
        )
    folder = campaign.get("folder") or {}
    program_id = campaign_program_id(campaign)
    known = (
        my_tokens.token_names(ctx.state, "Program", program_id)
        if program_id is not None
        else my_tokens.token_names(ctx.state, str(folder.get("type", "Folder")), int(folder.get("id", 0)))
    )
    tokens: dict[str, str] = {}
    for index, token in enumerate(raw):
        name = token.get("name") if isinstance(token, dict) else None
        match = TOKEN_NAME.match(name) if isinstance(name, str) else None
        if match is None:
            raise MarketoApiError(
                1003, f"input.tokens[{index}].name: expected '{{{{my.<Token Name>}}}}', got {name!r}"
            )
        if match.group(1) not in known:
            raise MarketoApiError(
                1003,
                f"input.tokens[{index}].name: token {name!r} is not a My Token the campaign's program has",
            )
        tokens[name] = "" if token.get("value") is None else str(token.get("value"))
    return tokens


def trigger_request(ctx: SandboxContext, campaign_id: int, body: dict[str, Any], api_user: str) -> None:
    behaviour = ctx.config.behaviour
    campaign = find_campaign(ctx, campaign_id)
    if campaign.get("type") != "trigger":
        raise MarketoApiError(
            1003, f"Campaign {campaign_id} is a batch campaign; only trigger campaigns can be requested"
        )
    if not is_triggerable(campaign):
        raise MarketoApiError(
            behaviour.trigger_inactive_error_code,
            f"Campaign {campaign_id} is not active or has no 'Campaign is Requested' trigger",
        )
    payload = body.get("input")
    if not isinstance(payload, dict):
        raise MarketoApiError(1003, "input: expected an object with 'leads'")
    leads = payload.get("leads")
    if not isinstance(leads, list) or not leads:
        raise MarketoApiError(1003, 'input.leads: expected 1 to 100 {"id": <leadId>} objects')
    if len(leads) > MAX_TRIGGER_LEADS:
        raise MarketoApiError(
            behaviour.trigger_too_many_leads_error_code,
            f"input.leads: at most {MAX_TRIGGER_LEADS} leads allowed, got {len(leads)}",
        )
    lead_ids = []
    for index, lead in enumerate(leads):
        lead_id = lead.get("id") if isinstance(lead, dict) else None
        if not isinstance(lead_id, int) or isinstance(lead_id, bool):
            raise MarketoApiError(1003, f"input.leads[{index}].id: expected an integer lead id")
        lead_ids.append(lead_id)
    tokens = parse_tokens(ctx, payload.get("tokens"), campaign)
    ctx.state.campaign_requests.append(
        {
            "kind": "trigger",
            "campaignId": campaign_id,
            "leadIds": lead_ids,
            "tokens": tokens,
            "at": ctx.clock.now(),
            "api_user": api_user,
        }
    )


def schedule_request(ctx: SandboxContext, campaign_id: int, body: dict[str, Any], api_user: str) -> None:
    campaign = find_campaign(ctx, campaign_id)
    if campaign.get("type") != "batch":
        raise MarketoApiError(
            ctx.config.behaviour.schedule_trigger_campaign_error_code,
            f"Campaign {campaign_id} is a trigger campaign; only batch campaigns can be scheduled",
        )
    payload = body.get("input") or {}
    if not isinstance(payload, dict):
        raise MarketoApiError(1003, "input: expected an object")
    now = ctx.clock.now()
    run_at = now + SCHEDULE_MIN_DELAY
    if payload.get("runAt"):
        run_at = parse_datetime(str(payload["runAt"]), "input.runAt")
        if run_at < now + SCHEDULE_MIN_DELAY - timedelta(seconds=1) or run_at > now + SCHEDULE_MAX_AHEAD:
            raise MarketoApiError(1042, "Invalid runAt date")
    tokens = parse_tokens(ctx, payload.get("tokens"), campaign)
    clone_to = payload.get("cloneToProgramName")
    if clone_to is not None:
        check_clone_allowance(ctx, clone_to)
    ctx.state.campaign_requests.append(
        {
            "kind": "schedule",
            "campaignId": campaign_id,
            "runAt": run_at,
            "tokens": tokens,
            "cloneToProgramName": clone_to,
            "at": now,
            "api_user": api_user,
        }
    )


def check_clone_allowance(ctx: SandboxContext, clone_to: Any) -> None:
    """`cloneToProgramName` must name the new program; 20 such schedules per day (1020), counted from the
    accepted requests and reset at midnight in the quota's zone, like the daily API quota."""
    if not isinstance(clone_to, str) or not clone_to.strip():
        raise MarketoApiError(
            1003, f"input.cloneToProgramName: expected a program name, got {repr(clone_to)[:60]}"
        )
    zone = ZoneInfo(ctx.config.limits.quota_timezone)
    today = ctx.clock.now().astimezone(zone).date()
    used = sum(
        1
        for done in ctx.state.campaign_requests
        if done.get("kind") == "schedule"
        and done.get("cloneToProgramName")
        and done["at"].astimezone(zone).date() == today
    )
    if used >= MAX_CLONES_PER_DAY:
        raise MarketoApiError(1020, f"Too many clones to program: {MAX_CLONES_PER_DAY} per day already used")


# --- program members ---------------------------------------------------------------------------------------


def program_row(ctx: SandboxContext, program_id: int) -> dict[str, Any]:
    programs = ctx.state.programs
    found = programs.filter(pc.equal(programs["id"], program_id))
    if found.num_rows == 0:
        raise MarketoApiError(1013, f"Program {program_id} not found")
    return found.to_pylist()[0]


def channel_of(ctx: SandboxContext, program: dict[str, Any]) -> dict[str, Any]:
    channel = next((c for c in ctx.state.channels if c.get("name") == program["channel"]), None)
    if channel is None:
        raise MarketoApiError(1003, f"Program {program['id']} has no channel {program['channel']!r}")
    return channel


def query_members(ctx: SandboxContext, request: Request, program_id: int) -> dict[str, Any]:
    filter_type = required_param(request, "filterType")
    fields = list_param(request, "fields") or list(MEMBER_DEFAULT_FIELDS)
    for name in fields:
        if name not in MEMBER_FIELDS:
            raise MarketoApiError(1006, f"Field '{name}' not found")
    with ctx.state.lock:
        program_row(ctx, program_id)
        members = ctx.state.memberships
    members = members.filter(pc.equal(members["programId"], program_id))
    if filter_type == "updatedAt":
        start = parse_datetime(required_param(request, "startAt"), "startAt")
        end = parse_datetime(required_param(request, "endAt"), "endAt")
        if end < start or end - start > MAX_UPDATED_AT_WINDOW:
            raise MarketoApiError(1003, "updatedAt filter: endAt must follow startAt by at most 7 days")
        column = members["updatedAt"]
        members = members.filter(
            pc.and_(
                pc.greater_equal(column, pa.scalar(start, column.type)),
                pc.less_equal(column, pa.scalar(end, column.type)),
            )
        )
    elif filter_type in MEMBER_SEARCHABLE:
        values = filter_values(request)
        if filter_type == "reachedSuccess":
            typed = pa.array([v.lower() == "true" for v in values], pa.bool_())
        elif filter_type == "leadId":
            typed = pa.array([int(v) for v in values if v.lstrip("-").isdigit()], pa.int64())
        else:
            typed = pa.array(values, pa.string())
        members = members.filter(pc.is_in(members[filter_type], value_set=typed))
    else:
        raise MarketoApiError(
            1003,
            f"filterType: '{filter_type}' is not searchable; expected one of "
            f"{[*MEMBER_SEARCHABLE, 'updatedAt']}",
        )
    if filter_type != "leadId" and members.num_rows > MAX_NON_LEAD_FILTER_MEMBERS:
        raise MarketoApiError(1003, f"More than {MAX_NON_LEAD_FILTER_MEMBERS} members match the filter")
    items = [{"seq": seq, **item} for seq, item in enumerate(records(members, list(dict.fromkeys(fields))))]
    return paged(items, page_offset(request, "members"), batch_size(request), "members")


def sync_member_status(ctx: SandboxContext, program_id: int, body: dict[str, Any]) -> list[dict[str, Any]]:
    status_name = body.get("statusName")
    if not isinstance(status_name, str) or not status_name:
        raise MarketoApiError(701, "statusName cannot be blank")
    records_in = body.get("input")
    if not isinstance(records_in, list) or not records_in:
        raise MarketoApiError(1003, 'input: expected a non-empty array of {"leadId": …} objects')
    if len(records_in) > MAX_BATCH:
        raise MarketoApiError(1003, f"input: at most {MAX_BATCH} records allowed, got {len(records_in)}")
    state = ctx.state
    now = ctx.clock.now().replace(microsecond=0)
    with state.lock:
        program = program_row(ctx, program_id)
        channel = channel_of(ctx, program)
        statuses = channel.get("progressionStatuses", [])
        position = next((i for i, s in enumerate(statuses) if s["name"] == status_name), None)
        if position is None and ctx.config.behaviour.unknown_status_on_member_sync == "request_error":
            raise MarketoApiError(1025, f"Program status '{status_name}' not found")
        members = state.memberships.filter(pc.equal(state.memberships["programId"], program_id))
        current = {row["leadId"]: row for row in members.to_pylist()}
        known_leads = set(state.people["id"].to_pylist())
        results, changed, activities = [], {}, []
        for seq, record in enumerate(records_in):
            lead_id = record.get("leadId") if isinstance(record, dict) else None
            if not isinstance(lead_id, int) or isinstance(lead_id, bool):
                results.append(_skipped(seq, 1003, f"input[{seq}].leadId: expected an integer lead id"))
                continue
            if position is None:
                results.append(_skipped(seq, 1025, f"Program status '{status_name}' not found"))
                continue
            if lead_id not in known_leads:
                results.append(_skipped(seq, 1004, "Lead not found"))
                continue
            row = changed.get(lead_id) or current.get(lead_id)
            old_position = next(
                (i for i, s in enumerate(statuses) if row and s["name"] == row["statusName"]), 0
            )
            if row is not None and statuses[old_position]["step"] >= statuses[position]["step"]:
                results.append(
                    _skipped(seq, 1037, "Lead skipped because it is already in or past this status")
                )
                continue
            success = bool(statuses[position].get("success"))
            new_row = (
                dict(row)
                if row
                else {
                    "programId": program_id,
                    "leadId": lead_id,
                    "membershipDate": now,
                    "reachedSuccess": False,
                    "reachedSuccessDate": None,
                    "acquiredBy": False,
                    "isExhausted": False,
                    "createdAt": now,
                }
            )
            new_row.update(statusName=status_name, updatedAt=now)
            if success and not new_row["reachedSuccess"]:
                new_row.update(reachedSuccess=True, reachedSuccessDate=now)
            changed[lead_id] = new_row
            results.append({"seq": seq, "status": "updated" if row else "created", "leadId": lead_id})
            activities.append(
                _status_activity(state, program, channel, lead_id, old_position, position, success, now)
            )
        if changed:
            keep = pc.invert(
                pc.and_(
                    pc.equal(state.memberships["programId"], program_id),
                    pc.is_in(state.memberships["leadId"], value_set=pa.array(list(changed), pa.int64())),
                )
            )
            state.memberships = pa.concat_tables(
                [
                    state.memberships.filter(keep),
                    pa.Table.from_pylist(list(changed.values()), schema=MEMBERSHIPS_SCHEMA),
                ]
            )
            append_activities(state, activities)
    return results


def _skipped(seq: int, code: int, message: str) -> dict[str, Any]:
    return {"seq": seq, "status": "skipped", "reasons": [{"code": str(code), "message": message}]}


def _status_activity(
    state: Any,
    program: dict[str, Any],
    channel: dict[str, Any],
    lead_id: int,
    old: int,
    new: int,
    success: bool,
    now: datetime,
) -> dict[str, Any]:
    statuses = channel["progressionStatuses"]
    guid = next_activity_guid(state)
    attributes = {
        "Old Status ID": catalog.status_id(channel["id"], old),
        "New Status ID": catalog.status_id(channel["id"], new),
        "Acquired By": False,
        "Old Status": statuses[old]["name"],
        "New Status": statuses[new]["name"],
        "Program Member ID": program_member_id(program["id"], lead_id),
        "Success": success,
        "Reason": "Changed by Web Service API",
    }
    return {
        "marketoGUID": guid,
        "leadId": lead_id,
        "activityDate": now,
        "activityTypeId": catalog.CHANGE_STATUS,
        "campaignId": None,
        "primaryAttributeValueId": program["id"],
        "primaryAttributeValue": program["name"],
        "attributeSeed": 0,
        "attributesJson": explicit_json(attributes),
    }


def describe_members(ctx: SandboxContext) -> list[dict[str, Any]]:
    created = lead_timestamp(ctx.state.created_at or ctx.clock.now())
    types = {
        "leadId": "integer",
        "programId": "integer",
        "statusName": "string",
        "membershipDate": "datetime",
        "reachedSuccess": "boolean",
        "reachedSuccessDate": "datetime",
        "acquiredBy": "boolean",
        "isExhausted": "boolean",
        "createdAt": "datetime",
        "updatedAt": "datetime",
    }
    fields = [
        {"name": name, "displayName": name, "dataType": data_type, "updateable": False, "crmManaged": False}
        for name, data_type in types.items()
    ]
    return [
        {
            "name": "API Program Membership",
            "description": "Map for API program membership fields",
            "createdAt": created,
            "updatedAt": created,
            "dedupeFields": ["leadId", "programId"],
            "searchableFields": [[f] for f in MEMBER_SEARCHABLE],
            "fields": fields,
        }
    ]


# --- routes -------------------------------------------------------------------------------------------------


def routes(ctx: SandboxContext) -> list[BaseRoute]:
    state = ctx.state

    async def campaigns(request: Request) -> Response:
        ids = {int(v) for v in list_param(request, "id") if v.isdigit()}
        names = set(list_param(request, "name"))
        programs = set(list_param(request, "programName"))
        workspaces = set(list_param(request, "workspaceName"))
        triggerable = bool_param(request, "isTriggerable")
        with state.lock:
            chosen = [
                c
                for c in state.campaigns
                if (not ids or c["id"] in ids)
                and (not names or c["name"] in names)
                and (not programs or c.get("programName") in programs)
                and (not workspaces or c.get("workspace", "Default") in workspaces)
                and (not triggerable or is_triggerable(c))
            ]
            items = [lead_db_campaign(c) for c in chosen]
        return respond(paged(items, page_offset(request, "campaigns"), batch_size(request), "campaigns"))

    async def campaign_by_id(request: Request) -> Response:
        with state.lock:
            return respond(ok([lead_db_campaign(find_campaign(ctx, request.path_params["id"]))]))

    async def trigger(request: Request) -> Response:
        body = await json_body(request)
        campaign_id = request.path_params["id"]
        with state.lock:
            trigger_request(ctx, campaign_id, body, request.state.api_user)
        return respond(ok([{"id": campaign_id}]))

    async def schedule(request: Request) -> Response:
        body = await json_body(request, required=False)
        campaign_id = request.path_params["id"]
        with state.lock:
            schedule_request(ctx, campaign_id, body, request.state.api_user)
        return respond(ok([{"id": campaign_id}]))

    async def members(request: Request) -> Response:
        return respond(query_members(ctx, request, request.path_params["id"]))

    async def member_status(request: Request) -> Response:
        body = await json_body(request)
        return respond(ok(sync_member_status(ctx, request.path_params["id"], body)))

    async def members_describe(request: Request) -> Response:
        return respond(ok(describe_members(ctx)))

    return [
        Route("/rest/v1/campaigns.json", campaigns, methods=["GET"]),
        Route("/rest/v1/campaigns/{id:int}.json", campaign_by_id, methods=["GET"]),
        Route("/rest/v1/campaigns/{id:int}/trigger.json", trigger, methods=["POST"]),
        Route("/rest/v1/campaigns/{id:int}/schedule.json", schedule, methods=["POST"]),
        Route("/rest/v1/programs/members/describe.json", members_describe, methods=["GET"]),
        Route("/rest/v1/programs/{id:int}/members.json", members, methods=["GET"]),
        Route("/rest/v1/programs/{id:int}/members/status.json", member_status, methods=["POST"]),
    ]
