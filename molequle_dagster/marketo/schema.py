"""Arrow types for bulk exports: from Describe Lead / Describe Program Member, fixed for activities."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

TIMESTAMP = pa.timestamp("s", tz="UTC")

# Marketo dataType (case-insensitive) -> Arrow. Anything unlisted (string, email, phone, url, reference,
# formula, text, textarea, lead_function, array...) is text.
_TYPE_MAP: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "integer": pa.int64(),
    "score": pa.int64(),
    "float": pa.float64(),
    "currency": pa.float64(),
    "percent": pa.float64(),  # Marketo stores whole percents, but float keeps a stray "12.5" readable
    "date": pa.date32(),
    "datetime": TIMESTAMP,
}

# Bulk activity export columns: fixed. marketoGUID stays text (it is a key, not a number to sum) and
# primaryAttributeValueId is text in the CSV (custom activities may use non-numeric ids).
ACTIVITY_COLUMN_TYPES: dict[str, pa.DataType] = {
    "marketoGUID": pa.string(),
    "leadId": pa.int64(),
    "activityDate": TIMESTAMP,
    "activityTypeId": pa.int64(),
    "campaignId": pa.int64(),
    "primaryAttributeValueId": pa.string(),
    "primaryAttributeValue": pa.string(),
    "attributes": pa.string(),  # a JSON object per row
    "actionResult": pa.string(),
}

# Standard program-member fields, used when describe is not at hand.
PROGRAM_MEMBER_COLUMN_TYPES: dict[str, pa.DataType] = {
    "programId": pa.int64(),
    "leadId": pa.int64(),
    "program": pa.string(),
    "statusName": pa.string(),
    "statusReason": pa.string(),
    "membershipDate": TIMESTAMP,
    "reachedSuccess": pa.bool_(),
    "reachedSuccessDate": TIMESTAMP,
    "acquiredBy": pa.bool_(),
    "isExhausted": pa.bool_(),
    "nurtureCadence": pa.string(),
    "trackName": pa.string(),
    "attendanceLikelihood": pa.int64(),
    "registrationLikelihood": pa.int64(),
    "waitlistPriority": pa.string(),
    "registrationCode": pa.string(),
    "webinarUrl": pa.string(),
    "createdAt": TIMESTAMP,
    "updatedAt": TIMESTAMP,
}


def arrow_type(data_type: str) -> pa.DataType:
    return _TYPE_MAP.get(data_type.strip().lower(), pa.string())


def lead_field_types(describe_result: Iterable[Mapping[str, Any]]) -> dict[str, pa.DataType]:
    """REST name -> Arrow type from Describe Lead (`rest.name`) or Describe Lead2 / PM describe (`name`).

    Fields without a `rest` child are not usable in REST/Bulk and are left out.
    """
    types: dict[str, pa.DataType] = {}
    for item in describe_result:
        rest = item.get("rest")
        name = rest.get("name") if isinstance(rest, Mapping) else item.get("name")
        if isinstance(name, str) and name:
            types[name] = arrow_type(str(item.get("dataType", "string")))
    return types


def describe2_fields(describe2_result: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Describe Lead2 / Program Member describe nest the fields in result[0].fields."""
    if not describe2_result:
        return []
    fields = describe2_result[0].get("fields", [])
    return list(fields) if isinstance(fields, list) else []


def schema_for(fields: Iterable[str], types: Mapping[str, pa.DataType], *, what: str) -> pa.Schema:
    """An Arrow schema for the requested fields, in order; an unknown field is an error naming it."""
    unknown = [f for f in fields if f not in types]
    if unknown:
        raise ValueError(
            f"fields: {', '.join(map(repr, unknown))} not found in {what}; expected REST API names such as "
            f"{', '.join(sorted(types)[:5])}"
        )
    return pa.schema([(f, types[f]) for f in fields])
