"""Lead database routes (docs/marketo.md §5.7, §10-§12): describe, query and sync leads; companies; named
accounts; static lists (lead-DB view). Reads select rows with Arrow compute; writes rebuild the people
table once per call and record what arrived in `state.leads_written`."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from molequle_dagster.sandbox import lead_fields, mutations
from molequle_dagster.sandbox.attributes import explicit_json
from molequle_dagster.sandbox.context import SandboxContext
from molequle_dagster.sandbox.envelope import MarketoApiError, lead_timestamp, ok
from molequle_dagster.sandbox.lead_view import LeadView
from molequle_dagster.sandbox.limits import MAX_BATCH, MAX_FILTER_MATCHES, MAX_FILTER_VALUES
from molequle_dagster.sandbox.model import ACTIVITIES_SCHEMA, COMPANY_FIELDS
from molequle_dagster.sandbox.params import (
    batch_size,
    encode_token,
    json_body,
    list_param,
    page_offset,
    paged,
    required_param,
    respond,
)
from molequle_dagster.sandbox.routes_merge_delete import delete_response

DEFAULT_LEAD_FIELDS = ("id", "email", "updatedAt", "createdAt", "firstName", "lastName")
LEAD_FIELD_NAMES = lead_fields.NAMES
API_REASON = "Web service API"
NEW_LEAD_ATTRIBUTES = {"Source Type": "Web service API", "API Method Name": "syncLead"}
SYNC_ACTIONS = ("createOrUpdate", "createOnly", "updateOnly", "createDuplicate")
COMPANY_SEARCHABLE = ("externalCompanyId", "id", "company")
NAMED_ACCOUNT_SEARCHABLE = ("marketoGUID", "name", "domainName", "industry", "country", "numberOfEmployees")
NAMED_ACCOUNT_FIELDS = (
    ("marketoGUID", "Marketo GUID", "string", 36),
    ("name", "Name", "string", 255),
    ("domainName", "Domain Name", "string", 255),
    ("industry", "Industry", "string", 255),
    ("country", "Country", "string", 255),
    ("numberOfEmployees", "Num Employees", "integer", None),
    ("createdAt", "Created At", "datetime", None),
    ("updatedAt", "Updated At", "datetime", None),
)


# --- rendering ------------------------------------------------------------------------------------------


def wire_value(value: Any) -> Any:
    return lead_timestamp(value) if isinstance(value, datetime) else value


def records(table: pa.Table, fields: list[str]) -> list[dict[str, Any]]:
    """Rows as lead-DB JSON objects; null fields are omitted, as Marketo does."""
    rows = table.select(fields).to_pylist()
    return [{k: wire_value(v) for k, v in row.items() if v is not None} for row in rows]


def lead_records(view: LeadView, people: pa.Table, fields: list[str]) -> list[dict[str, Any]]:
    """People rows as lead-DB JSON objects with `fields` (stored or derived); null fields omitted."""
    return records(view.select(people, fields), fields)


def requested_fields(request: Request, allowed: tuple[str, ...], default: tuple[str, ...]) -> list[str]:
    fields = list_param(request, "fields") or list(default)
    for name in fields:
        if name not in allowed:
            raise MarketoApiError(1006, f"Field '{name}' not found")
    return list(dict.fromkeys(["id", *fields] if "id" in allowed else fields))


def filter_rows(table: pa.Table, column: str, values: list[str], keys: pa.Array | None = None) -> pa.Table:
    """Rows whose `column` (or the given `keys`, aligned with the rows) equals one of `values`, cast to the
    column's type."""
    keys = table.column(column) if keys is None else keys
    col_type = keys.type
    try:
        typed = pa.array([int(v) if pa.types.is_integer(col_type) else v for v in values], type=col_type)
    except ValueError as exc:
        raise MarketoApiError(1001, f"Invalid value for filterType '{column}': expected integers") from exc
    return table.filter(pc.fill_null(pc.is_in(keys, value_set=typed), False))


def filter_values(request: Request) -> list[str]:
    values = list_param(request, "filterValues")
    if not values:
        raise MarketoApiError(701, "filterValues cannot be blank")
    if len(values) > MAX_FILTER_VALUES:
        raise MarketoApiError(
            1003, f"filterValues: at most {MAX_FILTER_VALUES} values allowed, got {len(values)}"
        )
    return values


def describe_lead() -> list[dict[str, Any]]:
    """Describe Lead items in the captured shape: soap only where the real describe has one
    (docs/marketo.md §5.7)."""
    out = []
    for spec in lead_fields.FIELDS:
        item: dict[str, Any] = {"id": spec.id, "displayName": spec.display, "dataType": spec.data_type}
        if spec.length is not None:
            item["length"] = spec.length
        item["rest"] = {"name": spec.name, "readOnly": spec.read_only}
        if spec.soap is not None:
            item["soap"] = {"name": spec.soap, "readOnly": False}
        out.append(item)
    return out


def describe_lead2() -> list[dict[str, Any]]:
    fields = []
    for spec in lead_fields.FIELDS:
        item: dict[str, Any] = {"name": spec.name, "displayName": spec.display, "dataType": spec.data_type}
        if spec.length is not None:
            item["length"] = spec.length
        item.update(updateable=not spec.read_only, crmManaged=False)
        fields.append(item)
    searchable = [[name] for name in lead_fields.SEARCHABLE]
    return [{"name": "API Lead", "searchableFields": searchable, "fields": fields}]


# --- Sync Leads ---------------------------------------------------------------------------------------------


def _coerce(name: str, value: Any) -> Any:
    """A wire value for a writable field in its type, as Sync Leads reads it: JSON strings are accepted for
    numbers, booleans and dates. Raises ValueError when the value does not fit the field."""
    if value is None:
        return None
    kind = lead_fields.WRITABLE[name].arrow_type
    if isinstance(value, str) and not isinstance(value, bool):
        text = value.strip()
        if pa.types.is_boolean(kind) and text.lower() in ("true", "false", "1", "0"):
            value = text.lower() in ("true", "1")
        elif pa.types.is_integer(kind) and text.lstrip("-").isdigit():
            value = int(text)
        elif pa.types.is_floating(kind):
            with contextlib.suppress(ValueError):
                value = float(text)
    elif isinstance(value, int | float) and not isinstance(value, bool) and pa.types.is_string(kind):
        value = str(value)
    return mutations.typed_value(name, value)


def _skip(code: int, message: str) -> dict[str, Any]:
    return {"status": "skipped", "reasons": [{"code": str(code), "message": message}]}


def _invalid_value(name: str, value: Any) -> dict[str, Any]:
    """Marketo's record-level answer to a value that does not fit the field (captured: 1003 "Invalid value
    for field 'email_field' and value 'bademail'"). A string holding a lone surrogate ("\\ud800": valid JSON,
    but not encodable as UTF-8) gets the same answer: Marketo cannot store it in that field."""
    shown = value if isinstance(value, str) else json.dumps(value)
    return _skip(1003, f"Invalid value for field '{name}' and value '{shown}'")


def sync_leads(ctx: SandboxContext, body: dict[str, Any], api_user: str) -> list[dict[str, Any]]:
    action = body.get("action", "createOrUpdate")
    if action not in SYNC_ACTIONS:
        raise MarketoApiError(1003, f"action: expected one of {list(SYNC_ACTIONS)}, got {action!r}")
    lookup = body.get("lookupField", "email")
    if lookup not in lead_fields.SEARCHABLE:
        raise MarketoApiError(1011, f"Field '{lookup}' not supported")
    if lookup == "id" and action != "updateOnly":
        raise MarketoApiError(1003, "lookupField 'id' is only valid with action 'updateOnly'")
    records_in = body.get("input")
    if not isinstance(records_in, list) or not records_in:
        raise MarketoApiError(1003, "input: expected a non-empty array of lead objects")
    if len(records_in) > MAX_BATCH:
        raise MarketoApiError(1003, f"input: at most {MAX_BATCH} records allowed, got {len(records_in)}")

    now = ctx.clock.now().replace(microsecond=0)
    state = ctx.state
    results: list[dict[str, Any]] = []
    with state.lock:
        view = LeadView(state)
        keys = view.column(view.people, lookup).to_pylist()
        rows_by_key: dict[Any, list[int]] = {}
        for index, key in enumerate(keys):
            if key is not None:
                rows_by_key.setdefault(key, []).append(index)
        updates: dict[int, dict[str, Any]] = {}
        created: list[dict[str, Any]] = []
        for record in records_in:
            result = _sync_one(record, action, lookup, rows_by_key, updates, created, state)
            results.append(result)
            if result["status"] != "skipped":
                state.leads_written.append(
                    {
                        "id": result["id"],
                        "status": result["status"],
                        "action": action,
                        "lookupField": lookup,
                        "fields": dict(record),
                        "at": now,
                        "api_user": api_user,
                    }
                )
        if updates or created:
            _apply(state, updates, created, int(now.timestamp()))
    return results


def _sync_one(
    record: Any,
    action: str,
    lookup: str,
    rows_by_key: dict[Any, list[int]],
    updates: dict[int, dict[str, Any]],
    created: list[dict[str, Any]],
    state: Any,
) -> dict[str, Any]:
    if not isinstance(record, dict):
        return _skip(1003, "input item: expected a JSON object")
    values: dict[str, Any] = {}
    for name, value in record.items():
        if name == "id" and lookup == "id":
            continue
        if name not in LEAD_FIELD_NAMES:
            return _skip(1006, f"Field '{name}' not found")
        if name not in lead_fields.WRITABLE:
            return _skip(1003, f"Field '{name}' is read only")
        try:
            values[name] = _coerce(name, value)
        except ValueError:
            return _invalid_value(name, value)
    key = record.get(lookup)
    if key is None or key == "":
        return _skip(1003, f"Lookup field '{lookup}' missing")
    if lookup == "id":
        key = int(key) if str(key).isdigit() else key
    elif lookup in values:
        key = values[lookup]
    matches = [] if action == "createDuplicate" else rows_by_key.get(key, [])
    if action == "createOnly" and matches:
        return _skip(1005, "Lead already exists")
    if action == "updateOnly" and not matches:
        return _skip(1004, "Lead not found")
    if len(matches) > 1:
        return _skip(1007, "Multiple leads match the lookup criteria")
    if matches:
        row = matches[0]
        if row < 0:  # created earlier in this same call
            created[-row - 1].update(values)
            return {"id": created[-row - 1]["id"], "status": "updated"}
        updates.setdefault(row, {}).update(values)
        return {"id": state.people.column("id")[row].as_py(), "status": "updated"}
    lead_id = max(state.next_lead_id, _max_id(state.people) + 1)
    state.next_lead_id = lead_id + 1
    created.append({"id": lead_id, **values})
    if action != "createDuplicate":
        rows_by_key.setdefault(key, []).append(-len(created))
    return {"id": lead_id, "status": "created"}


def _max_id(people: pa.Table) -> int:
    value = pc.max(people.column("id")).as_py() if people.num_rows else None
    return value or 0


def _apply(state: Any, updates: dict[int, dict[str, Any]], created: list[dict[str, Any]], now_s: int) -> None:
    """Write through the mutation API, which logs what Marketo logs: Change Data Value (13) / Change Score
    (22) per field that really changed, New Lead (12) per created lead; a change to a custom field moves
    only `_modifiedAt`, a standard one also the visible `updatedAt` (docs/marketo.md §5.7)."""
    lead_ids = state.people["id"].to_numpy()
    by_field: dict[str, tuple[list[int], list[Any]]] = {}
    for row in sorted(updates):
        for name, value in updates[row].items():
            ids, values = by_field.setdefault(name, ([], []))
            ids.append(int(lead_ids[row]))
            values.append(value)
    for name, (ids, values) in by_field.items():
        mutations.update_field(
            state, name, np.array(ids, np.int64), values, now_s, reason=API_REASON, source=API_REASON
        )
    mutations.create_leads(state, created, now_s, attributes=NEW_LEAD_ATTRIBUTES)


# --- activities written by API calls ----------------------------------------------------------------------


def next_activity_guid(state: Any) -> int:
    """GUIDs grow with time, so the last row holds the largest (a cheap guard against a stale counter)."""
    activities = state.activities
    last = activities["marketoGUID"][-1].as_py() if activities.num_rows else 0
    guid = max(state.next_activity_guid, last + 1)
    state.next_activity_guid = guid + 1
    return guid


def append_activities(state: Any, rows: list[dict[str, Any]]) -> None:
    """Append keeping the (activityDate, marketoGUID) order every pager relies on."""
    if not rows:
        return
    added = pa.Table.from_pylist(rows, schema=ACTIVITIES_SCHEMA)
    activities = state.activities
    in_order = activities.num_rows == 0 or activities["activityDate"][-1].as_py() <= rows[0]["activityDate"]
    combined = pa.concat_tables([activities, added])
    if not in_order:
        combined = combined.take(
            pc.sort_indices(combined, [("activityDate", "ascending"), ("marketoGUID", "ascending")])
        )
    state.activities = combined


def lead_activity(
    state: Any,
    lead_id: int,
    type_id: int,
    now: datetime,
    pav_id: int | None,
    pav: str | None,
    attributes: dict[str, Any],
) -> dict[str, Any]:
    return {
        "marketoGUID": next_activity_guid(state),
        "leadId": lead_id,
        "activityDate": now,
        "activityTypeId": type_id,
        "campaignId": None,
        "primaryAttributeValueId": pav_id,
        "primaryAttributeValue": pav,
        "attributeSeed": 0,
        "attributesJson": explicit_json(attributes),
    }


# --- companies and named accounts -------------------------------------------------------------------------


def describe_companies(ctx: SandboxContext) -> list[dict[str, Any]]:
    created = ctx.state.created_at or ctx.clock.now()
    fields = []
    for name, display, data_type, length in COMPANY_FIELDS:
        item: dict[str, Any] = {"name": name, "displayName": display, "dataType": data_type}
        if length is not None:
            item["length"] = length
        item["updateable"] = name not in ("id", "externalCompanyId", "createdAt", "updatedAt")
        fields.append(item)
    return [
        {
            "name": "Company",
            "description": "Company object",
            "createdAt": lead_timestamp(created),
            "updatedAt": lead_timestamp(created),
            "idField": "id",
            "dedupeFields": ["externalCompanyId"],
            "searchableFields": [[f] for f in COMPANY_SEARCHABLE],
            "fields": fields,
        }
    ]


def describe_named_accounts(ctx: SandboxContext) -> list[dict[str, Any]]:
    created = ctx.state.created_at or ctx.clock.now()
    fields = []
    for name, display, data_type, length in NAMED_ACCOUNT_FIELDS:
        item: dict[str, Any] = {"name": name, "displayName": display, "dataType": data_type}
        if length is not None:
            item["length"] = length
        item["updateable"] = name not in ("marketoGUID", "createdAt", "updatedAt")
        fields.append(item)
    return [
        {
            "name": "NamedAccount",
            "description": "Named Account object",
            "createdAt": lead_timestamp(created),
            "updatedAt": lead_timestamp(created),
            "idField": "marketoGUID",
            "dedupeFields": ["name"],
            "searchableFields": [[f] for f in NAMED_ACCOUNT_SEARCHABLE],
            "fields": fields,
        }
    ]


def _query_objects(
    request: Request,
    table: pa.Table,
    searchable: tuple[str, ...],
    aliases: dict[str, str],
    default_fields: tuple[str, ...],
    kind: str,
) -> dict[str, Any]:
    filter_type = required_param(request, "filterType")
    column = aliases.get(filter_type, filter_type)
    if column not in searchable:
        raise MarketoApiError(
            1003, f"filterType: '{filter_type}' is not searchable; expected one of {list(searchable)}"
        )
    values = filter_values(request)
    fields = [default_fields[0], *(list_param(request, "fields") or default_fields)]  # the idField always
    for name in fields:
        if name not in table.column_names:
            raise MarketoApiError(1006, f"Field '{name}' not found")
    matched = filter_rows(table, column, values)
    items = [{"seq": seq, **item} for seq, item in enumerate(records(matched, list(dict.fromkeys(fields))))]
    return paged(items, page_offset(request, kind), batch_size(request), kind)


# --- static lists (lead-DB view) ---------------------------------------------------------------------------


def list_item(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": item["id"], "name": item["name"]}
    for key in ("description", "programName"):
        if item.get(key):
            out[key] = item[key]
    out["workspaceName"] = item.get("workspaceName") or item.get("workspace") or "Default"
    for key in ("createdAt", "updatedAt"):
        if item.get(key) is not None:
            out[key] = wire_value(item[key])
    return out


def find_static_list(ctx: SandboxContext, list_id: int) -> dict[str, Any]:
    found = next((item for item in ctx.state.static_lists if item.get("id") == list_id), None)
    if found is None:
        raise MarketoApiError(1013, "Object not found")
    return found


def lead_rows(ctx: SandboxContext, lead_ids: list[int]) -> pa.Table:
    """People with these ids, in the given order (missing ids dropped)."""
    people = ctx.state.people
    wanted = pa.array(lead_ids, type=pa.int64())
    matched = people.filter(pc.is_in(people.column("id"), value_set=wanted))
    order = pc.index_in(matched.column("id"), value_set=wanted)
    return matched.take(pc.sort_indices(order))


def list_leads_page(ctx: SandboxContext, request: Request) -> dict[str, Any]:
    """One page of a static list's members (Get Leads by List Id)."""
    fields = requested_fields(request, LEAD_FIELD_NAMES, DEFAULT_LEAD_FIELDS)
    offset, size = page_offset(request, "listleads"), batch_size(request)
    with ctx.state.lock:
        members = list(find_static_list(ctx, request.path_params["id"]).get("lead_ids", []))
        page_ids = members[offset : offset + size]
        rows = lead_rows(ctx, page_ids)
    body = ok(lead_records(LeadView(ctx.state), rows, fields))
    if offset + size < len(members):
        body.update(moreResult=True, nextPageToken=encode_token("listleads", offset + size))
    return body


# --- routes -------------------------------------------------------------------------------------------------


def routes(ctx: SandboxContext) -> list[BaseRoute]:
    state = ctx.state

    async def describe(request: Request) -> Response:
        return respond(ok(describe_lead()))

    async def describe2(request: Request) -> Response:
        return respond(ok(describe_lead2()))

    async def leads_get(request: Request) -> Response:
        filter_type = required_param(request, "filterType")
        if filter_type not in lead_fields.SEARCHABLE:
            raise MarketoApiError(1011, f"Field '{filter_type}' not supported")
        values = filter_values(request)
        fields = requested_fields(request, LEAD_FIELD_NAMES, DEFAULT_LEAD_FIELDS)
        view = LeadView(state)
        keys = view.column(view.people, filter_type)  # derived searchable fields (cookies) are computed
        matched = filter_rows(view.people, filter_type, values, keys)
        if matched.num_rows > MAX_FILTER_MATCHES:
            raise MarketoApiError(1003, "Too many results match the filter")
        items = lead_records(view, matched, fields)
        return respond(paged(items, page_offset(request, "leads"), batch_size(request), "leads"))

    async def leads_post(request: Request) -> Response:
        if request.query_params.get("_method", "").upper() == "DELETE":  # as captured from grouparoo
            return await delete_response(ctx, request)
        body = await json_body(request)
        return respond(ok(sync_leads(ctx, body, request.state.api_user)))

    async def lead_by_id(request: Request) -> Response:
        lead_id = request.path_params["id"]
        fields = requested_fields(request, LEAD_FIELD_NAMES, DEFAULT_LEAD_FIELDS)
        with state.lock:
            view = LeadView(state)
            matched = filter_rows(view.people, "id", [str(lead_id)])
            if matched.num_rows == 0 and ctx.config.behaviour.merged_lead_lookup == "winner":
                merges = state.merges.filter(pc.equal(state.merges.column("loserId"), lead_id))
                if merges.num_rows:
                    matched = filter_rows(view.people, "id", [str(merges.column("winnerId")[0].as_py())])
        return respond(ok(lead_records(view, matched, fields)))

    async def companies_describe(request: Request) -> Response:
        return respond(ok(describe_companies(ctx)))

    async def companies_get(request: Request) -> Response:
        with state.lock:
            table = state.companies
        return respond(
            _query_objects(
                request,
                table,
                COMPANY_SEARCHABLE,
                {"dedupeFields": "externalCompanyId", "idField": "id"},
                ("id", "externalCompanyId", "createdAt", "updatedAt"),
                "companies",
            )
        )

    async def named_accounts_describe(request: Request) -> Response:
        return respond(ok(describe_named_accounts(ctx)))

    async def named_accounts_get(request: Request) -> Response:
        with state.lock:
            table = state.named_accounts
        return respond(
            _query_objects(
                request,
                table,
                NAMED_ACCOUNT_SEARCHABLE,
                {"dedupeFields": "name", "idField": "marketoGUID"},
                ("marketoGUID", "name", "createdAt", "updatedAt"),
                "namedaccounts",
            )
        )

    async def lists_get(request: Request) -> Response:
        ids = {int(v) for v in list_param(request, "id") if v.isdigit()}
        names = set(list_param(request, "name"))
        programs = set(list_param(request, "programName"))
        workspaces = set(list_param(request, "workspaceName"))
        with state.lock:
            items = [list_item(item) for item in state.static_lists]
        items = [
            i
            for i in items
            if (not ids or i["id"] in ids)
            and (not names or i["name"] in names)
            and (not programs or i.get("programName") in programs)
            and (not workspaces or i["workspaceName"] in workspaces)
        ]
        return respond(paged(items, page_offset(request, "lists"), batch_size(request), "lists"))

    async def list_by_id(request: Request) -> Response:
        with state.lock:
            return respond(ok([list_item(find_static_list(ctx, request.path_params["id"]))]))

    async def list_leads(request: Request) -> Response:
        return respond(list_leads_page(ctx, request))

    return [
        Route("/rest/v1/leads/describe.json", describe, methods=["GET"]),
        Route("/rest/v1/leads/describe2.json", describe2, methods=["GET"]),
        Route("/rest/v1/leads.json", leads_get, methods=["GET"]),
        Route("/rest/v1/leads.json", leads_post, methods=["POST"]),
        Route("/rest/v1/lead/{id:int}.json", lead_by_id, methods=["GET"]),
        Route("/rest/v1/companies/describe.json", companies_describe, methods=["GET"]),
        Route("/rest/v1/companies.json", companies_get, methods=["GET"]),
        Route("/rest/v1/namedaccounts/describe.json", named_accounts_describe, methods=["GET"]),
        Route("/rest/v1/namedaccounts.json", named_accounts_get, methods=["GET"]),
        Route("/rest/v1/lists.json", lists_get, methods=["GET"]),
        Route("/rest/v1/lists/{id:int}.json", list_by_id, methods=["GET"]),
        Route("/rest/v1/lists/{id:int}/leads.json", list_leads, methods=["GET"]),
        Route("/rest/v1/list/{id:int}/leads.json", list_leads, methods=["GET"]),
    ]
