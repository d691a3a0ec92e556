"""Validate Bulk Extract create bodies into an `ExportSpec` (docs/marketo.md §6.4-§6.7).

Every rejection is a `MarketoApiError` whose message names the member and what was expected, with the code
Marketo uses (1002 missing, 1003 invalid, 1035 unsupported filter, the configured codes for an unknown field
and a too-wide window). References to lists, smart lists and programs are checked against the instance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pyarrow.compute as pc

from molequle_dagster.sandbox.config import BulkSettings
from molequle_dagster.sandbox.envelope import MarketoApiError
from molequle_dagster.sandbox.lead_fields import NAMES as LEAD_FIELD_NAMES
from molequle_dagster.sandbox.model import InstanceState

Entity = Literal["leads", "activities", "program/members"]
ENTITIES: tuple[Entity, ...] = ("leads", "activities", "program/members")
FORMATS = ("CSV", "TSV", "SSV")

ACTIVITY_DEFAULT_FIELDS: tuple[str, ...] = (
    "marketoGUID",
    "leadId",
    "activityDate",
    "activityTypeId",
    "campaignId",
    "primaryAttributeValueId",
    "primaryAttributeValue",
    "attributes",
)
ACTIVITY_FIELDS: tuple[str, ...] = (*ACTIVITY_DEFAULT_FIELDS, "actionResult")
# Program member fields the sandbox stores (MEMBERSHIPS_SCHEMA) plus the standard ones it leaves empty.
PM_STORED_FIELDS: tuple[str, ...] = (
    "programId",
    "leadId",
    "statusName",
    "membershipDate",
    "reachedSuccess",
    "reachedSuccessDate",
    "acquiredBy",
    "isExhausted",
    "createdAt",
    "updatedAt",
)
PM_EMPTY_FIELDS: tuple[str, ...] = (
    "attendanceLikelihood",
    "nurtureCadence",
    "registrationLikelihood",
    "statusReason",
    "trackName",
    "waitlistPriority",
    "registrationCode",
    "webinarUrl",
)
PM_FIELDS: tuple[str, ...] = (*PM_STORED_FIELDS, "program", *PM_EMPTY_FIELDS)
PM_BOOLEAN_FIELDS = frozenset({"reachedSuccess", "acquiredBy", "isExhausted"})

DELETE_LEAD_TYPE = 37
MAX_PRIMARY_ATTRIBUTE_VALUES = 50
MAX_PROGRAM_IDS = 10
# Activity types whose primary attribute can be filtered, by "asset group" (docs/marketo.md §6.6).
PRIMARY_ATTRIBUTE_GROUPS = {
    13: "attribute",
    22: "attribute",
    104: "program",
    24: "list",
    25: "list",
    2: "form",
}

LEAD_FILTERS = ("createdAt", "updatedAt", "staticListId", "staticListName", "smartListId", "smartListName")
ACTIVITY_FILTERS = ("createdAt", "activityTypeIds", "primaryAttributeValueIds", "primaryAttributeValues")
PM_FILTERS = ("programId", "programIds", "isExhausted", "nurtureCadence", "statusNames", "updatedAt")
BODY_MEMBERS = ("fields", "format", "columnHeaderNames", "filter")


@dataclass(frozen=True)
class DateWindow:
    start: datetime
    end: datetime  # inclusive

    def as_json(self) -> dict[str, str]:
        return {"startAt": _iso(self.start), "endAt": _iso(self.end)}


@dataclass(frozen=True)
class ExportSpec:
    """A validated export request: the file's columns, headers, format and normalised filter."""

    entity: Entity
    format: str
    fields: tuple[str, ...]  # file columns in order (programIds adds a leading programId)
    headers: tuple[str, ...]
    filter: Mapping[str, Any] = field(default_factory=dict)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def invalid(message: str) -> MarketoApiError:
    return MarketoApiError("1003", message)


def missing(name: str) -> MarketoApiError:
    return MarketoApiError("1002", f"Missing value for the required parameter '{name}'")


def parse_datetime(value: Any, where: str) -> datetime:
    """ISO-8601 with `Z` or an offset; no offset means GMT (docs/marketo.md §1)."""
    if not isinstance(value, str) or not value:
        raise invalid(f"{where}: expected an ISO-8601 datetime such as 2024-01-01T00:00:00Z, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise invalid(
            f"{where}: expected an ISO-8601 datetime such as 2024-01-01T00:00:00Z, got {value!r}"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_window(value: Any, where: str, settings: BulkSettings) -> DateWindow:
    if not isinstance(value, Mapping):
        raise invalid(f"{where}: expected an object with startAt and endAt")
    for key in ("startAt", "endAt"):
        if key not in value:
            raise missing(f"{where}.{key}")
    start = parse_datetime(value["startAt"], f"{where}.startAt")
    end = parse_datetime(value["endAt"], f"{where}.endAt")
    if end < start:
        raise invalid(f"{where}: endAt ({value['endAt']}) is before startAt ({value['startAt']})")
    if end - start > timedelta(days=settings.max_window_days):
        days = (end - start).total_seconds() / 86400
        raise MarketoApiError(
            settings.window_error_code,
            f"{where}: the date range must be at most {settings.max_window_days} days, got {days:.2f} days",
        )
    return DateWindow(start, end)


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{where}: expected an integer, got {value!r}")
    return value


def _int_list(value: Any, where: str, limit: int | None = None) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise invalid(f"{where}: expected a non-empty list of integers, got {value!r}")
    if limit is not None and len(value) > limit:
        raise invalid(f"{where}: at most {limit} values are allowed, got {len(value)}")
    return tuple(_int(item, f"{where}[{i}]") for i, item in enumerate(value))


def _str_list(value: Any, where: str, limit: int | None = None) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise invalid(f"{where}: expected a non-empty list of strings, got {value!r}")
    if limit is not None and len(value) > limit:
        raise invalid(f"{where}: at most {limit} values are allowed, got {len(value)}")
    return tuple(value)


def _fields(value: Any, allowed: Sequence[str], settings: BulkSettings) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise invalid(f"fields: expected a non-empty list of field names, got {value!r}")
    for name in value:
        if not isinstance(name, str):
            raise invalid(f"fields: expected field names (strings), got {name!r}")
        if name not in allowed:
            raise MarketoApiError(settings.unknown_field_error_code, f"Field '{name}' not found")
    return tuple(value)


def _format(value: Any) -> str:
    if value is None:
        return "CSV"
    if not isinstance(value, str) or value.upper() not in FORMATS:
        raise invalid(f"format: expected one of {', '.join(FORMATS)}, got {value!r}")
    return value.upper()


def _headers(value: Any, fields: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return fields
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise invalid("columnHeaderNames: expected an object mapping field names to header text")
    unknown = [k for k in value if k not in fields]
    if unknown:
        raise invalid(f"columnHeaderNames: {unknown[0]!r} is not one of the exported fields")
    for name, header in value.items():
        try:
            header.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a JSON escape cannot be written to the file
            raise invalid(f"columnHeaderNames.{name}: {header!r} is not valid text") from None
    return tuple(value.get(name, name) for name in fields)


def _filter_object(body: Mapping[str, Any], allowed: Sequence[str], settings: BulkSettings) -> dict[str, Any]:
    raw = body.get("filter")
    if raw is None:
        raise missing("filter")
    if not isinstance(raw, Mapping):
        raise invalid(f"filter: expected an object, got {raw!r}")
    for key in raw:
        if key not in allowed:
            raise invalid(f"filter: unknown filter type {key!r}; expected one of {', '.join(allowed)}")
    return dict(raw)


def _reject_unsupported(filters: Mapping[str, Any], settings: BulkSettings) -> None:
    for key in filters:
        if key in settings.unsupported_filters:
            raise MarketoApiError("1035", "Unsupported filter type for target subscription")


def _find_named(items: list[dict[str, Any]], key: str, value: Any, what: str, where: str) -> dict[str, Any]:
    for item in items:
        if item.get(key) == value:
            return item
    raise invalid(f"{where}: {what} {value!r} not found")


def _lead_filter(raw: dict[str, Any], settings: BulkSettings, state: InstanceState) -> dict[str, Any]:
    if len(raw) != 1:
        given = ", ".join(raw) or "none"
        raise invalid(f"filter: exactly one of {', '.join(LEAD_FILTERS)} is required, got {given}")
    _reject_unsupported(raw, settings)
    ((kind, value),) = raw.items()
    where = f"filter.{kind}"
    if kind in ("createdAt", "updatedAt"):
        return {kind: parse_window(value, where, settings)}
    with state.lock:
        if kind == "staticListId":
            item = _find_named(state.static_lists, "id", _int(value, where), "static list", where)
        elif kind == "staticListName":
            item = _find_named(state.static_lists, "name", value, "static list", where)
        elif kind == "smartListId":
            item = _find_named(state.smart_lists, "id", _int(value, where), "smart list", where)
        else:
            item = _find_named(state.smart_lists, "name", value, "smart list", where)
    list_kind = "staticList" if kind.startswith("static") else "smartList"
    return {list_kind: int(item["id"])}


def _activity_filter(raw: dict[str, Any], settings: BulkSettings) -> dict[str, Any]:
    if "createdAt" not in raw:
        raise missing("filter.createdAt")
    result: dict[str, Any] = {"createdAt": parse_window(raw["createdAt"], "filter.createdAt", settings)}
    if "activityTypeIds" in raw:
        type_ids = _int_list(raw["activityTypeIds"], "filter.activityTypeIds")
        if DELETE_LEAD_TYPE in type_ids and settings.delete_lead_in_activity_export == "refuse":
            raise invalid(
                "filter.activityTypeIds: Delete Lead (37) cannot be exported; use Get Deleted Leads"
            )
        result["activityTypeIds"] = type_ids
    by_ids = "primaryAttributeValueIds" in raw
    by_names = "primaryAttributeValues" in raw
    if by_ids and by_names:
        raise invalid("filter: primaryAttributeValueIds and primaryAttributeValues are mutually exclusive")
    if by_ids or by_names:
        key = "primaryAttributeValueIds" if by_ids else "primaryAttributeValues"
        if "activityTypeIds" not in result:
            raise invalid(f"filter.{key}: requires filter.activityTypeIds")
        groups = {PRIMARY_ATTRIBUTE_GROUPS.get(t) for t in result["activityTypeIds"]}
        if None in groups or len(groups) != 1:
            supported = ", ".join(str(t) for t in PRIMARY_ATTRIBUTE_GROUPS)
            raise invalid(
                f"filter.{key}: activityTypeIds must all be of one asset group among types {supported}"
            )
        if by_ids:
            result[key] = _int_list(raw[key], f"filter.{key}", MAX_PRIMARY_ATTRIBUTE_VALUES)
        else:
            result[key] = _str_list(raw[key], f"filter.{key}", MAX_PRIMARY_ATTRIBUTE_VALUES)
    return result


def _program_statuses(state: InstanceState, program_ids: Sequence[int]) -> set[str]:
    """Status names valid in the given programs: their channels' progression plus what members hold."""
    programs = state.programs
    wanted = pc.is_in(programs.column("id"), value_set=pc.cast(list(program_ids), "int64"))
    channels = set(programs.filter(wanted).column("channel").to_pylist())
    names: set[str] = set()
    for channel in state.channels:
        if channel.get("name") in channels:
            names.update(s.get("name") for s in channel.get("progressionStatuses", []) if s.get("name"))
    members = state.memberships
    in_programs = pc.is_in(members.column("programId"), value_set=pc.cast(list(program_ids), "int64"))
    names.update(v for v in pc.unique(members.filter(in_programs).column("statusName")).to_pylist() if v)
    return names


def _member_filter(raw: dict[str, Any], settings: BulkSettings, state: InstanceState) -> dict[str, Any]:
    _reject_unsupported(raw, settings)
    if "programId" in raw and "programIds" in raw:
        raise invalid("filter: give programId or programIds, not both")
    if "programId" in raw:
        program_ids: tuple[int, ...] = (_int(raw["programId"], "filter.programId"),)
    elif "programIds" in raw:
        program_ids = _int_list(raw["programIds"], "filter.programIds", MAX_PROGRAM_IDS)
    else:
        raise missing("filter.programId")
    result: dict[str, Any] = {"programIds": program_ids, "multiProgram": "programIds" in raw}
    with state.lock:
        known = set(state.programs.column("id").to_pylist())
        for program_id in program_ids:
            if program_id not in known:
                raise invalid(f"filter: program {program_id} not found")
        if "statusNames" in raw:
            names = _str_list(raw["statusNames"], "filter.statusNames")
            valid = _program_statuses(state, program_ids)
            for name in names:
                if name not in valid:
                    raise invalid(f"filter.statusNames: status {name!r} not found in the given programs")
            result["statusNames"] = names
    if "isExhausted" in raw:
        if not isinstance(raw["isExhausted"], bool):
            raise invalid(f"filter.isExhausted: expected true or false, got {raw['isExhausted']!r}")
        result["isExhausted"] = raw["isExhausted"]
    if "nurtureCadence" in raw:
        cadences = (settings.nurture_cadence_pause, "norm")  # one spelling of "paused" is valid
        if raw["nurtureCadence"] not in cadences:
            raise invalid(
                f"filter.nurtureCadence: expected '{cadences[0]}' or 'norm', got {raw['nurtureCadence']!r}"
            )
        result["nurtureCadence"] = raw["nurtureCadence"]
    if "updatedAt" in raw:
        result["updatedAt"] = parse_window(raw["updatedAt"], "filter.updatedAt", settings)
    return result


def parse_create(entity: str, body: Any, settings: BulkSettings, state: InstanceState) -> ExportSpec:
    """The body of `POST /bulk/v1/{entity}/export/create.json` -> an `ExportSpec`, or a Marketo error."""
    if entity not in ENTITIES:
        raise MarketoApiError("610", "Requested resource not found")
    if not isinstance(body, Mapping):
        raise invalid("request body: expected a JSON object with fields, format, columnHeaderNames, filter")
    for key in body:
        if key not in BODY_MEMBERS:
            raise invalid(f"request body: unknown member {key!r}; expected {', '.join(BODY_MEMBERS)}")
    export_format = _format(body.get("format"))
    if entity == "leads":
        if body.get("fields") is None:
            raise missing("fields")
        fields = _fields(body["fields"], LEAD_FIELD_NAMES, settings)
        filters = _lead_filter(_filter_object(body, LEAD_FILTERS, settings), settings, state)
    elif entity == "activities":
        raw_fields = body.get("fields")
        if raw_fields is None and settings.activity_fields == "required":
            raise missing("fields")
        fields = ACTIVITY_DEFAULT_FIELDS if not raw_fields else _fields(raw_fields, ACTIVITY_FIELDS, settings)
        filters = _activity_filter(_filter_object(body, ACTIVITY_FILTERS, settings), settings)
    else:
        if body.get("fields") is None:
            raise missing("fields")
        fields = _fields(body["fields"], (*PM_FIELDS, *LEAD_FIELD_NAMES), settings)
        filters = _member_filter(_filter_object(body, PM_FILTERS, settings), settings, state)
        if filters["multiProgram"]:
            fields = ("programId", *fields)
    headers = _headers(body.get("columnHeaderNames"), fields)
    return ExportSpec(entity=entity, format=export_format, fields=fields, headers=headers, filter=filters)
