"""Activity rows in one shape, whether they came from a bulk export (CSV) or the REST feed (JSON).

The lake keeps Marketo's bulk layout (docs/marketo.md §7): `marketoGUID` as text,
`primaryAttributeValueId` as text (not every type's is numeric), `attributes` as the JSON object text
Marketo writes in the export. REST records carry `attributes` as a list of {name, value}, empty values
omitted (docs/marketo.md §8.4), and are turned into the same compact JSON object, in the same key order,
so both paths store the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.arrow_ops import SYNCED_AT, TS
from molequle_dagster.marketo.timeutil import parse_marketo_datetime

ACTIVITY_CSV_SCHEMA = pa.schema(
    [
        ("marketoGUID", pa.string()),
        ("leadId", pa.int64()),
        ("activityDate", TS),
        ("activityTypeId", pa.int32()),
        ("campaignId", pa.int64()),
        ("primaryAttributeValueId", pa.string()),
        ("primaryAttributeValue", pa.string()),
        ("attributes", pa.string()),
    ]
)
ACTIVITY_SCHEMA = ACTIVITY_CSV_SCHEMA.append(pa.field(SYNCED_AT, TS)).append(
    pa.field("activity_group", pa.string())
)

ACTIVITY_COLUMNS = {
    "marketoGUID": "Marketo's unique activity id (the key)",
    "leadId": "the Marketo lead id of the person (merged-away ids are remapped to the winner on read)",
    "activityDate": "when the activity happened (UTC)",
    "activityTypeId": "Marketo activity type id (see marketo_activity_types)",
    "campaignId": "smart campaign that produced the activity, if any",
    "primaryAttributeValueId": "id of the type's primary asset (email, form, program, page…), as text",
    "primaryAttributeValue": "name of the primary asset",
    "attributes": "the type's secondary attributes as a JSON object (Marketo's export format)",
    SYNCED_AT: "when Molequle read the row from Marketo",
    "activity_group": "Molequle's group of the type, from the settings (email, web, forms, …)",
}


def _attributes_json(items: Any) -> str | None:
    if not items:
        return None
    if isinstance(items, str):
        return items
    pairs = {
        str(a.get("name")): a.get("value")
        for a in items
        if isinstance(a, Mapping) and a.get("value") not in (None, "")
    }
    return json.dumps(pairs, separators=(",", ":"), ensure_ascii=False) if pairs else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any, field: str, record: Mapping[str, Any]) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"activity {record.get('marketoGUID')!r}: field {field} expected an integer, got {value!r}"
        ) from None


def rest_activities_table(records: Iterable[Mapping[str, Any]]) -> pa.Table:
    """REST activity records as rows of the bulk layout."""
    rows = []
    for r in records:
        guid = r.get("marketoGUID") if r.get("marketoGUID") is not None else r.get("id")
        date = r.get("activityDate")
        if guid is None or not isinstance(date, str):
            raise ValueError(f"activity record {dict(r)!r}: expected marketoGUID and activityDate")
        rows.append(
            {
                "marketoGUID": str(guid),
                "leadId": _int(r.get("leadId"), "leadId", r),
                "activityDate": parse_marketo_datetime(date),
                "activityTypeId": _int(r.get("activityTypeId"), "activityTypeId", r),
                "campaignId": _int(r.get("campaignId"), "campaignId", r),
                "primaryAttributeValueId": _text(r.get("primaryAttributeValueId")),
                "primaryAttributeValue": _text(r.get("primaryAttributeValue")),
                "attributes": _attributes_json(r.get("attributes")),
            }
        )
    return pa.Table.from_pylist(rows, ACTIVITY_CSV_SCHEMA)


def with_groups(table: pa.Table, groups: Mapping[int, str]) -> pa.Table:
    """Add `activity_group` from a type id → group map (types missing from it get null)."""
    keys = pa.array(list(groups), pa.int32())
    values = pa.array(list(groups.values()), pa.string())
    index = pc.index_in(table["activityTypeId"].cast(pa.int32()), value_set=keys)
    group = pc.take(values, index)
    base = table.drop_columns(["activity_group"]) if "activity_group" in table.column_names else table
    return base.append_column("activity_group", group)


def attribute(table_row_attributes: str | None, name: str) -> Any:
    """One secondary attribute's value from the stored JSON text (None when absent)."""
    if not table_row_attributes:
        return None
    try:
        return json.loads(table_row_attributes).get(name)
    except (ValueError, AttributeError):
        return None


def attributes_of(texts: Sequence[str | None]) -> list[dict[str, Any]]:
    out = []
    for text in texts:
        try:
            value = json.loads(text) if text else {}
        except ValueError:
            value = {}
        out.append(value if isinstance(value, dict) else {})
    return out
