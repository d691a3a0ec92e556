"""Validation of Bulk Extract create bodies: Marketo's codes, with messages naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from molequle_dagster.sandbox.bulk_requests import ACTIVITY_DEFAULT_FIELDS, parse_create
from molequle_dagster.sandbox.config import BulkSettings
from molequle_dagster.sandbox.envelope import MarketoApiError
from molequle_dagster_tests.sandbox.bulk_fixtures import small_state

JAN = {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-31T23:59:59Z"}
STATE = small_state()


def _error(entity: str, body: Any, settings: BulkSettings | None = None) -> tuple[str, str]:
    with pytest.raises(MarketoApiError) as caught:
        parse_create(entity, body, settings or BulkSettings(), STATE)
    return caught.value.code, caught.value.message


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ({"fields": ["id"]}, "1002", "'filter'"),
        ({"filter": {"createdAt": JAN}}, "1002", "'fields'"),
        ({"fields": ["id", "nope"], "filter": {"createdAt": JAN}}, "1006", "Field 'nope' not found"),
        ({"fields": ["id"], "filter": {}}, "1003", "exactly one of"),
        ({"fields": ["id"], "filter": {"createdAt": JAN, "updatedAt": JAN}}, "1003", "exactly one of"),
        ({"fields": ["id"], "filter": {"bogus": 1}}, "1003", "unknown filter type 'bogus'"),
        (
            {
                "fields": ["id"],
                "filter": {"createdAt": {"startAt": "yesterday", "endAt": "2026-01-02T00:00:00Z"}},
            },
            "1003",
            "filter.createdAt.startAt",
        ),
        (
            {
                "fields": ["id"],
                "filter": {"createdAt": {"startAt": "2026-01-02T00:00:00Z", "endAt": "2026-01-01T00:00:00Z"}},
            },
            "1003",
            "before",
        ),
        (
            {
                "fields": ["id"],
                "filter": {"createdAt": {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-02-01T00:00:01Z"}},
            },
            "1003",
            "at most 31 days",
        ),
        ({"fields": ["id"], "filter": {"staticListId": 5}}, "1003", "static list 5 not found"),
        ({"fields": ["id"], "filter": {"createdAt": JAN}, "format": "XLS"}, "1003", "format"),
        (
            {"fields": ["id"], "filter": {"createdAt": JAN}, "columnHeaderNames": {"email": "E"}},
            "1003",
            "columnHeaderNames",
        ),
        ({"fields": ["id"], "filter": {"createdAt": JAN}, "extra": 1}, "1003", "unknown member 'extra'"),
        ([1, 2], "1003", "JSON object"),
    ],
)
def test_bad_lead_exports_are_refused_naming_the_member(body: Any, code: str, needle: str) -> None:
    got_code, message = _error("leads", body)
    assert got_code == code and needle in message, message


def test_window_code_and_unsupported_filters_follow_settings() -> None:
    wide = {
        "fields": ["id"],
        "filter": {"createdAt": {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-03-01T00:00:00Z"}},
    }
    assert _error("leads", wide, BulkSettings(window_error_code="1035"))[0] == "1035"
    settings = BulkSettings(unsupported_filters=["updatedAt", "smartListName"])
    for kind, value in (("updatedAt", JAN), ("smartListName", "All People for Molequle")):
        body = {"fields": ["id"], "filter": {kind: value}}
        assert _error("leads", body, settings) == ("1035", "Unsupported filter type for target subscription")
    pm = {"fields": ["leadId"], "filter": {"programId": 1001, "updatedAt": JAN}}
    assert _error("program/members", pm, settings)[0] == "1035"


def test_a_window_of_exactly_31_days_with_offsets_is_accepted() -> None:
    spec = parse_create(
        "leads",
        {
            "fields": ["id"],
            "filter": {
                "updatedAt": {"startAt": "2026-01-01T00:00:00-06:00", "endAt": "2026-02-01T06:00:00Z"}
            },
        },
        BulkSettings(),
        STATE,
    )
    assert spec.filter["updatedAt"].as_json() == {
        "startAt": "2026-01-01T06:00:00Z",
        "endAt": "2026-02-01T06:00:00Z",
    }


@pytest.mark.parametrize(
    ("filters", "needle"),
    [
        ({}, "'filter.createdAt'"),
        ({"createdAt": JAN, "activityTypeIds": [1, 37]}, "Delete Lead (37)"),
        ({"createdAt": JAN, "activityTypeIds": []}, "non-empty list"),
        ({"createdAt": JAN, "primaryAttributeValueIds": [1]}, "requires filter.activityTypeIds"),
        (
            {
                "createdAt": JAN,
                "activityTypeIds": [2],
                "primaryAttributeValueIds": [1],
                "primaryAttributeValues": ["a"],
            },
            "mutually exclusive",
        ),
        ({"createdAt": JAN, "activityTypeIds": [2, 104], "primaryAttributeValueIds": [1]}, "one asset group"),
        (
            {"createdAt": JAN, "activityTypeIds": [2], "primaryAttributeValueIds": list(range(51))},
            "at most 50",
        ),
    ],
)
def test_bad_activity_exports_are_refused_naming_the_member(filters: dict, needle: str) -> None:
    assert needle in _error("activities", {"filter": filters})[1]


def test_activity_fields_absent_empty_or_null_mean_the_eight_defaults() -> None:
    for fields in ({}, {"fields": []}, {"fields": None}):
        spec = parse_create("activities", {**fields, "filter": {"createdAt": JAN}}, BulkSettings(), STATE)
        assert spec.fields == ACTIVITY_DEFAULT_FIELDS
    assert _error("activities", {"fields": ["leadId", "x"], "filter": {"createdAt": JAN}})[0] == "1006"


@pytest.mark.parametrize(
    ("filters", "code", "needle"),
    [
        ({}, "1002", "filter.programId"),
        ({"programId": 1001, "programIds": [1001]}, "1003", "not both"),
        ({"programIds": list(range(11))}, "1003", "at most 10"),
        ({"programId": 5}, "1003", "program 5 not found"),
        ({"programId": 1001, "statusNames": ["Graduated"]}, "1003", "'Graduated' not found"),
        ({"programId": 1001, "isExhausted": "yes"}, "1003", "filter.isExhausted"),
    ],
)
def test_bad_program_member_exports_are_refused_naming_the_member(
    filters: dict, code: str, needle: str
) -> None:
    got_code, message = _error("program/members", {"fields": ["leadId"], "filter": filters})
    assert got_code == code and needle in message, message


def test_program_ids_add_a_leading_program_id_column_and_fields_mix_lead_and_member() -> None:
    body = {
        "fields": ["email", "statusName"],
        "columnHeaderNames": {"statusName": "Status"},
        "filter": {"programIds": [1001, 1002], "statusNames": ["No Show"]},
    }  # a channel status
    spec = parse_create("program/members", body, BulkSettings(), STATE)
    assert spec.fields == ("programId", "email", "statusName")
    assert spec.headers == ("programId", "email", "Status")
