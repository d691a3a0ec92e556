"""The sandbox's state: one simulated Marketo instance as Arrow tables (no Python object per row).

This module is the contract between the data generator/churn (`generator.py`, `churn.py`), the REST and
Bulk routes (`routes_*.py`, `bulk.py`) and the control surface (`control.py`). Big entities (people,
activities, memberships) are `pyarrow.Table`s with the schemas below; small ones (channels, campaigns,
lists) are lists of plain dicts. Every reader and writer holds `InstanceState.lock`: routes run on the
server's threads while tests mutate the instance through the control surface.

Timestamps are UTC, second precision. Ids are int64. `marketoGUID` of activities is int64 here and is
rendered as a string on the wire.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

TS = pa.timestamp("s", tz="UTC")

# --- people: the stored lead fields (lead_fields.py lists every field, lead_view.py derives the rest) -----
PEOPLE_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("email", pa.string()),
        ("firstName", pa.string()),
        ("lastName", pa.string()),
        ("title", pa.string()),
        ("company", pa.string()),
        ("externalCompanyId", pa.string()),
        ("leadScore", pa.int32()),
        ("country", pa.string()),
        ("unsubscribed", pa.bool_()),
        ("molequlePersonId", pa.string()),
        ("createdAt", TS),
        ("updatedAt", TS),  # the visible field: reflects standard-field changes
        # True last-modified time of any field; what the bulk `updatedAt` filter uses (docs/marketo.md §6.5).
        # Not a field.
        ("_modifiedAt", TS),
        # Seed of the person's generated profile, from which lead_view derives the other ~90 fields at read
        # time; null for leads created through the API (their unset fields stay empty). Not a field.
        ("_seed", pa.int64()),
    ]
)

COMPANY_FIELDS: tuple[tuple[str, str, str, int | None], ...] = (
    ("id", "Id", "integer", None),
    ("externalCompanyId", "External Company Id", "string", 100),
    ("company", "Company Name", "string", 255),
    ("website", "Website", "url", 255),
    ("industry", "Industry", "string", 255),
    ("numberOfEmployees", "Num Employees", "integer", None),
    ("billingCountry", "Billing Country", "string", 255),
    ("createdAt", "Created At", "datetime", None),
    ("updatedAt", "Updated At", "datetime", None),
)
COMPANIES_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("externalCompanyId", pa.string()),
        ("company", pa.string()),
        ("website", pa.string()),
        ("industry", pa.string()),
        ("numberOfEmployees", pa.int32()),
        ("billingCountry", pa.string()),
        ("createdAt", TS),
        ("updatedAt", TS),
    ]
)

NAMED_ACCOUNTS_SCHEMA = pa.schema(
    [
        ("marketoGUID", pa.string()),
        ("name", pa.string()),
        ("domainName", pa.string()),
        ("industry", pa.string()),
        ("country", pa.string()),
        ("numberOfEmployees", pa.int32()),
        ("createdAt", TS),
        ("updatedAt", TS),
    ]
)

ACTIVITIES_SCHEMA = pa.schema(
    [
        ("marketoGUID", pa.int64()),
        ("leadId", pa.int64()),
        ("activityDate", TS),
        ("activityTypeId", pa.int32()),
        ("campaignId", pa.int64()),  # nullable
        ("primaryAttributeValueId", pa.int64()),  # nullable
        ("primaryAttributeValue", pa.string()),  # nullable
        # Compact seed from which `attributes.render_attributes` builds the JSON attributes object, so
        # 20M activities do not hold 20M JSON strings. Churned activities may set explicit JSON instead.
        ("attributeSeed", pa.int64()),
        ("attributesJson", pa.string()),  # nullable; when set it wins over attributeSeed
    ]
)

MEMBERSHIPS_SCHEMA = pa.schema(
    [
        ("programId", pa.int64()),
        ("leadId", pa.int64()),
        ("statusName", pa.string()),
        ("membershipDate", TS),
        ("reachedSuccess", pa.bool_()),
        ("reachedSuccessDate", TS),  # nullable
        ("acquiredBy", pa.bool_()),
        ("isExhausted", pa.bool_()),
        ("createdAt", TS),
        ("updatedAt", TS),
    ]
)

PROGRAMS_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("name", pa.string()),
        ("description", pa.string()),
        ("type", pa.string()),  # Default | Event | Event with Webinar | Engagement | Email
        ("channel", pa.string()),  # channel name
        ("folderId", pa.int64()),
        ("folderName", pa.string()),
        ("status", pa.string()),
        ("workspace", pa.string()),
        ("createdAt", TS),
        ("updatedAt", TS),
    ]
)

DELETED_LEADS_SCHEMA = pa.schema(
    [("marketoGUID", pa.int64()), ("leadId", pa.int64()), ("deletedAt", TS), ("name", pa.string())]
)

MERGES_SCHEMA = pa.schema([("winnerId", pa.int64()), ("loserId", pa.int64()), ("mergedAt", TS)])


@dataclass
class InstanceState:
    """Everything one simulated Marketo instance holds. Mutate only under `lock`."""

    seed: int
    people: pa.Table  # PEOPLE_SCHEMA, current (deleted and merged-away leads removed)
    companies: pa.Table  # COMPANIES_SCHEMA
    named_accounts: pa.Table  # NAMED_ACCOUNTS_SCHEMA
    activities: pa.Table  # ACTIVITIES_SCHEMA, sorted by activityDate then marketoGUID
    programs: pa.Table  # PROGRAMS_SCHEMA
    memberships: pa.Table  # MEMBERSHIPS_SCHEMA
    deleted_leads: pa.Table  # DELETED_LEADS_SCHEMA
    merges: pa.Table  # MERGES_SCHEMA
    # Small entities as JSON-shaped dicts, exactly in the Asset API's shape (timestamps as datetimes).
    channels: list[dict[str, Any]] = field(default_factory=list)
    # {id, name, rule: {"kind": "subscribed"}}; membership is computed from the rule (see smart_list_lead_ids)
    smart_lists: list[dict[str, Any]] = field(default_factory=list)
    static_lists: list[dict[str, Any]] = field(default_factory=list)  # {id, name, lead_ids: list[int], ...}
    campaigns: list[dict[str, Any]] = field(default_factory=list)  # asset shape
    emails: list[dict[str, Any]] = field(default_factory=list)  # asset shape (emails.json)
    segmentations: list[dict[str, Any]] = field(default_factory=list)  # asset shape, with their `segments`
    # My Tokens {folderType: "Program"|"Folder", folderId, name, type, value}; programs inherit folders'
    my_tokens: list[dict[str, Any]] = field(default_factory=list)
    activity_types: list[dict[str, Any]] = field(default_factory=list)  # types.json shape
    # Ground truth of what the API received (for test assertions).
    campaign_requests: list[dict[str, Any]] = field(default_factory=list)
    leads_written: list[dict[str, Any]] = field(default_factory=list)
    # Values written to derived lead fields: {field: {lead id: value}}; they win over the derived value.
    lead_overrides: dict[str, dict[int, Any]] = field(default_factory=dict)
    next_lead_id: int = 1
    next_activity_guid: int = 1
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    created_at: datetime | None = None
