"""Activity routes over real HTTP (docs/marketo.md §5.2-§5.5, §8) on a hand-built instance: types, paging
tokens, paging rules (always a token, empty pages, no `result` when empty), filters and their limits,
retention, lead changes and deleted leads; shapes compared with the Adobe doc examples."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pyarrow as pa
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from molequle_dagster.sandbox import catalog, routes_activities
from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.control import empty_state
from molequle_dagster.sandbox.lead_fields import FIELD_IDS
from molequle_dagster.sandbox.model import ACTIVITIES_SCHEMA, DELETED_LEADS_SCHEMA, InstanceState
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.sandbox.conftest import NOW, fast_config, load_fixture, rest_get

DAY = timedelta(days=1)
ISO = "%Y-%m-%dT%H:%M:%SZ"


def activity(guid: int, lead: int, when: datetime, type_id: int, attributes: dict | None = None) -> dict:
    return {
        "marketoGUID": guid,
        "leadId": lead,
        "activityDate": when,
        "activityTypeId": type_id,
        "campaignId": 2001 if type_id == 6 else None,
        "primaryAttributeValueId": 5000 + guid,
        "primaryAttributeValue": f"Asset {guid}",
        "attributeSeed": guid,
        "attributesJson": json.dumps(
            attributes
            if attributes is not None
            else {"Client IP Address": "10.0.0.1", "Query Parameters": ""}
        ),
    }


ROWS = [
    activity(1, 1, NOW - 200 * DAY, 1),  # a web visit past the 90-day retention
    activity(2, 1, NOW - 30 * DAY, 2),
    activity(3, 2, NOW - 20 * DAY, 6),
    activity(4, 2, NOW - 20 * DAY, 2),  # same second as guid 3: order falls back to the GUID
    activity(5, 3, NOW - 10 * DAY, 13, {"New Value": "Ada", "Old Value": "Ad", "Reason": "Web service API"}),
    activity(6, 3, NOW - 9 * DAY, 12, {"Source Type": "New person"}),
    activity(7, 1, NOW - 8 * DAY, 13, {"New Value": "CTO", "Old Value": "Dev"}),
    activity(8, 2, NOW - 5 * DAY, 2),
    activity(9, 3, NOW - 2 * DAY, 1),
]
ROWS[4]["primaryAttributeValue"] = "First Name"
ROWS[6]["primaryAttributeValue"] = "Job Title"


@pytest.fixture(scope="module")
def sandbox_state() -> InstanceState:
    """The hand-built instance every test in this module runs against."""
    state = empty_state(1, NOW)
    state.activities = pa.Table.from_pylist(ROWS, schema=ACTIVITIES_SCHEMA)
    state.activity_types = catalog.activity_types(True)
    state.static_lists = [
        {"id": 3001, "name": "Seed", "lead_ids": [2, 3], "createdAt": NOW, "updatedAt": NOW}
    ]
    state.deleted_leads = pa.Table.from_pylist(
        [
            {"marketoGUID": 100, "leadId": 40, "deletedAt": NOW - 3 * DAY, "name": "Gone Person"},
            {
                "marketoGUID": 101,
                "leadId": 41,
                "deletedAt": NOW - 30 * DAY,
                "name": "Long Gone",
            },  # past 14 days
        ],
        schema=DELETED_LEADS_SCHEMA,
    )
    return state


@pytest.fixture(scope="module")
def sandbox_config() -> SandboxConfig:
    return fast_config(enforce_limits=False)


def since(sandbox: SandboxServer, api: requests.Session, when: datetime) -> str:
    return rest_get(sandbox, api, "activities/pagingtoken.json", sinceDatetime=when.strftime(ISO))[
        "nextPageToken"
    ]


def all_pages(
    sandbox: SandboxServer, api: requests.Session, path: str, token: str, **params: object
) -> list[dict]:
    pages = []
    while True:
        page = rest_get(sandbox, api, path, nextPageToken=token, **params)
        assert page["success"] is True, page
        pages.append(page)
        token = page["nextPageToken"]  # always present
        if not page["moreResult"]:
            return pages


def test_types_match_the_documented_shape(sandbox: SandboxServer, api: requests.Session) -> None:
    body = rest_get(sandbox, api, "activities/types.json")
    by_id = {t["id"]: t for t in body["result"]}
    assert by_id[2]["primaryAttribute"] == {"name": "Webform ID", "dataType": "integer"}
    assert "primaryAttribute" not in by_id[12]  # New Lead has none (docs/marketo.md §8.1)
    assert {"id", "name", "description", "attributes"} <= set(by_id[1])


def test_paging_token_shape_and_errors(sandbox: SandboxServer, api: requests.Session) -> None:
    doc = load_fixture("activities-rest/doc_paging-tokens__date-based__response.json")
    body = rest_get(sandbox, api, "activities/pagingtoken.json", sinceDatetime="2026-01-01T00:00:00+00:00")
    assert set(body) == set(doc)
    assert body["nextPageToken"].isupper()
    assert (
        rest_get(sandbox, api, "activities/pagingtoken.json", sinceDatetime="last tuesday")["errors"][0][
            "code"
        ]
        == "704"
    )
    assert rest_get(sandbox, api, "activities/pagingtoken.json")["errors"][0]["code"] == "701"


def test_pages_walk_forward_in_order_with_a_token_on_every_page(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    pages = all_pages(
        sandbox,
        api,
        "activities.json",
        since(sandbox, api, NOW - 365 * DAY),
        activityTypeIds="1,2,6",
        batchSize=2,
    )
    guids = [item["marketoGUID"] for page in pages for item in page.get("result", [])]
    assert guids == ["2", "3", "4", "8", "9"]  # guid 1 is past retention
    assert all(page["moreResult"] for page in pages[:-1]) and pages[-1]["moreResult"] is False
    item = pages[0]["result"][0]
    doc_item = load_fixture("activities-rest/doc_activities__query__response.json")["result"][0]
    assert set(doc_item) <= set(item)
    assert item["activityDate"] == (NOW - 30 * DAY).strftime(ISO)
    assert item["attributes"] == [{"name": "Client IP Address", "value": "10.0.0.1"}]  # empty values omitted
    assert isinstance(item["id"], int) and isinstance(item["marketoGUID"], str)


def test_token_from_the_last_page_picks_up_new_activity_later(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    pages = all_pages(
        sandbox, api, "activities.json", since(sandbox, api, NOW - 3 * DAY), activityTypeIds="1"
    )
    assert [i["marketoGUID"] for p in pages for i in p.get("result", [])] == ["9"]
    again = rest_get(
        sandbox, api, "activities.json", nextPageToken=pages[-1]["nextPageToken"], activityTypeIds="1"
    )
    assert again == {**again, "success": True, "moreResult": False}
    assert "result" not in again  # nothing new: `result` is omitted, the token is still there
    assert again["nextPageToken"]


def test_empty_pages_with_more_result_are_bounded(
    sandbox: SandboxServer, api: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes_activities, "SCAN_CHUNK", 1)
    monkeypatch.setattr(routes_activities, "MAX_SCAN_CHUNKS", 1)
    pages = all_pages(
        sandbox,
        api,
        "activities.json",
        since(sandbox, api, NOW - 365 * DAY),
        activityTypeIds="1",
        batchSize=5,
    )
    empty_run, longest = 0, 0
    for page in pages:
        empty_run = empty_run + 1 if "result" not in page and page["moreResult"] else 0
        longest = max(longest, empty_run)
    assert longest == sandbox.config.behaviour.max_empty_activity_pages
    assert [i["marketoGUID"] for p in pages for i in p.get("result", [])] == ["9"]


def test_filters_and_their_limits(sandbox: SandboxServer, api: requests.Session) -> None:
    token = since(sandbox, api, NOW - 365 * DAY)

    def guids(**params: object) -> list[str]:
        pages = all_pages(sandbox, api, "activities.json", token, **params)
        return [i["marketoGUID"] for p in pages for i in p.get("result", [])]

    assert guids(activityTypeIds="2", leadIds="2") == ["4", "8"]
    assert guids(activityTypeIds="1,2,6", listId=3001) == ["3", "4", "8", "9"]
    assert guids(activityTypeIds="6", assetIds="5003") == ["3"]
    too_many_types = rest_get(
        sandbox,
        api,
        "activities.json",
        nextPageToken=token,
        activityTypeIds=",".join(str(i) for i in range(1, 12)),
    )
    assert too_many_types["errors"][0]["code"] == sandbox.config.behaviour.too_many_activity_types_error_code
    too_many_leads = rest_get(
        sandbox,
        api,
        "activities.json",
        nextPageToken=token,
        activityTypeIds="1",
        leadIds=",".join(str(i) for i in range(31)),
    )
    assert too_many_leads["errors"][0]["code"] == "1003"
    assert rest_get(sandbox, api, "activities.json", nextPageToken=token)["errors"][0]["code"] == "701"
    assert (
        rest_get(sandbox, api, "activities.json", nextPageToken=token, activityTypeIds="1", listId=999)[
            "errors"
        ][0]["code"]
        == "1013"
    )
    assert (
        rest_get(
            sandbox,
            api,
            "activities.json",
            nextPageToken="NOTATOKEN",
            activityTypeIds="1",
        )["errors"][0]["code"]
        == "1003"
    )
    assert (
        rest_get(sandbox, api, "activities.json", nextPageToken=token, activityTypeIds="1", batchSize=301)[
            "errors"
        ][0]["code"]
        == "1003"
    )


def test_retention_can_be_switched_off(sandbox: SandboxServer, api: requests.Session) -> None:
    sandbox.config.behaviour.enforce_retention = False
    try:
        pages = all_pages(
            sandbox, api, "activities.json", since(sandbox, api, NOW - 365 * DAY), activityTypeIds="1"
        )
    finally:
        sandbox.config.behaviour.enforce_retention = True
    assert [i["marketoGUID"] for p in pages for i in p.get("result", [])] == ["1", "9"]


def test_lead_changes_report_requested_fields(sandbox: SandboxServer, api: requests.Session) -> None:
    pages = all_pages(
        sandbox,
        api,
        "activities/leadchanges.json",
        since(sandbox, api, NOW - 365 * DAY),
        fields="firstName,email",
    )
    items = [i for p in pages for i in p.get("result", [])]
    assert [(i["marketoGUID"], i["activityTypeId"]) for i in items] == [("5", 13), ("6", 12)]  # title unasked
    doc_item = load_fixture("activities-rest/doc_activities__data-value-changes__response.json")["result"][0]
    assert set(doc_item) <= set(items[0])
    assert items[0]["fields"] == [
        {"id": FIELD_IDS["firstName"], "name": "firstName", "newValue": "Ada", "oldValue": "Ad"}
    ]
    token = since(sandbox, api, NOW - 365 * DAY)
    assert (
        rest_get(sandbox, api, "activities/leadchanges.json", nextPageToken=token)["errors"][0]["code"]
        == "701"
    )


def test_deleted_leads_within_retention(sandbox: SandboxServer, api: requests.Session) -> None:
    pages = all_pages(sandbox, api, "activities/deletedleads.json", since(sandbox, api, NOW - 365 * DAY))
    items = [i for p in pages for i in p.get("result", [])]
    doc_item = load_fixture("activities-rest/doc_activities__deleted-leads__response.json")["result"][0]
    assert [i["leadId"] for i in items] == [40]  # the 30-day-old delete is past the 14-day retention
    assert set(doc_item) <= set(items[0])
    assert items[0]["activityTypeId"] == 37 and items[0]["attributes"] == []
    assert items[0]["primaryAttributeValue"] == "Gone Person"


@settings(max_examples=25, deadline=None)
@given(
    types=st.sets(st.sampled_from([1, 2, 6, 12, 13]), min_size=1),
    batch=st.integers(min_value=1, max_value=6),
    days_back=st.integers(min_value=0, max_value=400),
)
def test_paging_yields_exactly_the_matching_activities(
    sandbox: SandboxServer, api: requests.Session, types: set[int], batch: int, days_back: int
) -> None:
    start = NOW - days_back * DAY
    pages = all_pages(
        sandbox,
        api,
        "activities.json",
        since(sandbox, api, start),
        activityTypeIds=",".join(map(str, sorted(types))),
        batchSize=batch,
    )
    got = [int(i["marketoGUID"]) for p in pages for i in p.get("result", [])]
    retained = [r for r in ROWS if not (r["activityTypeId"] == 1 and r["activityDate"] < NOW - 90 * DAY)]
    expected = [
        r["marketoGUID"] for r in retained if r["activityTypeId"] in types and r["activityDate"] >= start
    ]
    assert got == expected
    assert all(len(p.get("result", [])) <= batch for p in pages)
