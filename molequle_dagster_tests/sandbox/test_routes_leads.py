"""Lead database routes over real HTTP (docs/marketo.md §5.7, §10-§12) on a hand-built instance: describe,
query, Sync Leads (actions, reasons, what was written), companies, named accounts and static lists; shapes
compared with captured responses and Adobe doc examples."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pytest
import requests

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.control import empty_state
from molequle_dagster.sandbox.lead_fields import FIELD_IDS
from molequle_dagster.sandbox.model import (
    COMPANIES_SCHEMA,
    NAMED_ACCOUNTS_SCHEMA,
    PEOPLE_SCHEMA,
    InstanceState,
)
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.sandbox.conftest import NOW, fast_config, load_fixture, rest_get, rest_post

EARLIER = NOW - timedelta(days=100)
ISO = "%Y-%m-%dT%H:%M:%SZ"


def person(lead_id: int, email: str | None, first: str = "Ann", **extra: object) -> dict:
    return {
        "id": lead_id,
        "email": email,
        "firstName": first,
        "lastName": f"L{lead_id}",
        "title": None,
        "company": "Acme",
        "externalCompanyId": "EXT-1",
        "leadScore": 10,
        "country": "Germany",
        "unsubscribed": False,
        "molequlePersonId": f"mp-{lead_id}",
        "createdAt": EARLIER,
        "updatedAt": EARLIER,
        "_modifiedAt": EARLIER,
        **extra,
    }


@pytest.fixture(scope="module")
def sandbox_state() -> InstanceState:
    """The hand-built instance every test in this module runs against."""
    state = empty_state(1, NOW)
    people = [person(i, f"p{i}@acme.com") for i in range(1, 6)]
    people += [person(100 + i, "shared@acme.com") for i in range(1001)]  # > 1000 matches for one value
    state.people = pa.Table.from_pylist(people, schema=PEOPLE_SCHEMA)
    state.next_lead_id = 5000
    state.companies = pa.Table.from_pylist(
        [
            {
                "id": 1,
                "externalCompanyId": "EXT-1",
                "company": "Acme",
                "website": "acme.com",
                "industry": "Software",
                "numberOfEmployees": 50,
                "billingCountry": "Germany",
                "createdAt": EARLIER,
                "updatedAt": EARLIER,
            },
            {
                "id": 2,
                "externalCompanyId": "EXT-2",
                "company": "Globex",
                "website": None,
                "industry": None,
                "numberOfEmployees": None,
                "billingCountry": None,
                "createdAt": EARLIER,
                "updatedAt": EARLIER,
            },
        ],
        schema=COMPANIES_SCHEMA,
    )
    state.named_accounts = pa.Table.from_pylist(
        [
            {
                "marketoGUID": "na-1",
                "name": "Acme",
                "domainName": "acme.com",
                "industry": "Software",
                "country": "Germany",
                "numberOfEmployees": 50,
                "createdAt": EARLIER,
                "updatedAt": EARLIER,
            }
        ],
        schema=NAMED_ACCOUNTS_SCHEMA,
    )
    state.static_lists = [
        {
            "id": 3001,
            "name": "Seed",
            "description": "Seed list",
            "lead_ids": [3, 1, 2, 4],
            "createdAt": EARLIER,
            "updatedAt": EARLIER,
            "workspace": "Default",
        }
    ]
    return state


@pytest.fixture(scope="module")
def sandbox_config() -> SandboxConfig:
    return fast_config(enforce_limits=False)


def sync(sandbox: SandboxServer, api: requests.Session, body: dict) -> dict:
    return rest_post(sandbox, api, "leads.json", body)


def test_describe_and_describe2_match_the_doc_shapes(sandbox: SandboxServer, api: requests.Session) -> None:
    doc = load_fixture("leads/doc_leads__describe__response.json")["result"][0]
    items = rest_get(sandbox, api, "leads/describe.json")["result"]
    email = next(i for i in items if i["rest"]["name"] == "email")
    assert set(doc) == set(email)
    assert set(doc["rest"]) == set(email["rest"])
    described = rest_get(sandbox, api, "leads/describe2.json")["result"][0]
    assert described["name"] == "API Lead"
    assert ["email"] in described["searchableFields"]
    assert {"name", "displayName", "dataType", "updateable"} <= set(described["fields"][0])


def test_query_by_filter_type(sandbox: SandboxServer, api: requests.Session) -> None:
    body = rest_get(sandbox, api, "leads.json", filterType="email", filterValues="p2@acme.com,p1@acme.com")
    doc = load_fixture("leads/doc_leads__query__response.json")["result"][0]
    assert sorted(r["id"] for r in body["result"]) == [1, 2]
    assert set(body["result"][0]) == set(doc)  # the default field set
    assert body["result"][0]["createdAt"] == EARLIER.strftime(ISO)
    empty = rest_get(sandbox, api, "leads.json", filterType="email", filterValues="nobody@acme.com")
    assert set(empty) == {"requestId", "success", "result"} and empty["result"] == []  # as captured
    picked = rest_get(
        sandbox, api, "leads.json", filterType="id", filterValues="3", fields="email,title,leadScore"
    )
    assert picked["result"] == [{"id": 3, "email": "p3@acme.com", "leadScore": 10}]  # null title omitted


def test_query_limits_and_errors(sandbox: SandboxServer, api: requests.Session) -> None:
    many = rest_get(sandbox, api, "leads.json", filterType="email", filterValues="shared@acme.com")
    assert many["errors"][0] == {"code": "1003", "message": "Too many results match the filter"}
    assert (
        rest_get(sandbox, api, "leads.json", filterType="firstName", filterValues="Ann")["errors"][0]["code"]
        == "1011"
    )
    assert (
        rest_get(sandbox, api, "leads.json", filterType="id", filterValues="1", fields="shoeSize")["errors"][
            0
        ]["code"]
        == "1006"
    )
    too_many = ",".join(str(i) for i in range(301))
    assert (
        rest_get(sandbox, api, "leads.json", filterType="id", filterValues=too_many)["errors"][0]["code"]
        == "1003"
    )
    assert rest_get(sandbox, api, "leads.json", filterType="id")["errors"][0]["code"] == "701"


def test_query_pages_with_position_tokens(sandbox: SandboxServer, api: requests.Session) -> None:
    first = rest_get(sandbox, api, "leads.json", filterType="id", filterValues="1,2,3,4,5", batchSize=2)
    assert first["moreResult"] is True
    ids = [r["id"] for r in first["result"]]
    token = first["nextPageToken"]
    while token:
        page = rest_get(
            sandbox,
            api,
            "leads.json",
            filterType="id",
            filterValues="1,2,3,4,5",
            batchSize=2,
            nextPageToken=token,
        )
        ids += [r["id"] for r in page["result"]]
        token = page.get("nextPageToken")
    assert ids == [1, 2, 3, 4, 5]


def test_lead_by_id_is_one_record_or_an_empty_result(sandbox: SandboxServer, api: requests.Session) -> None:
    assert [r["id"] for r in rest_get(sandbox, api, "lead/4.json")["result"]] == [4]
    assert rest_get(sandbox, api, "lead/999999.json")["result"] == []


def test_sync_leads_actions_and_reasons_in_input_order(sandbox: SandboxServer, api: requests.Session) -> None:
    sandbox.control.advance(60)
    body = sync(
        sandbox,
        api,
        {
            "action": "createOrUpdate",
            "lookupField": "email",
            "input": [
                {"email": "p1@acme.com", "title": "CTO"},
                {"email": "new@acme.com", "firstName": "Neu", "leadScore": "7"},
                {"email": "p2@acme.com", "shoeSize": 44},
                {"email": "p3@acme.com", "leadScore": "lots"},
                {"firstName": "No Key"},
            ],
        },
    )
    doc = load_fixture("leads/doc_leads__create-and-update__response.json")
    assert set(body) == set(doc)
    results = body["result"]
    assert results[0] == {"id": 1, "status": "updated"}
    assert results[1]["status"] == "created" and results[1]["id"] >= 5000
    assert results[2] == {
        "status": "skipped",
        "reasons": [{"code": "1006", "message": "Field 'shoeSize' not found"}],
    }
    assert results[3]["reasons"] == [  # as captured (real_grouparoo__leads_updateOnly_skipped_1003_boolean)
        {"code": "1003", "message": "Invalid value for field 'leadScore' and value 'lots'"}
    ]
    assert results[4]["reasons"][0]["code"] == "1003"
    assert all("seq" not in r for r in results)
    written = sandbox.control.leads_written()[-2:]
    assert [(w["id"], w["status"]) for w in written] == [(1, "updated"), (results[1]["id"], "created")]
    updated = rest_get(sandbox, api, "lead/1.json", fields="title,updatedAt")["result"][0]
    assert updated["title"] == "CTO"
    assert updated["updatedAt"] == sandbox.control.clock.now().strftime(ISO)
    created = rest_get(sandbox, api, f"lead/{results[1]['id']}.json", fields="firstName,leadScore")["result"][
        0
    ]
    assert created["firstName"] == "Neu" and created["leadScore"] == 7


def test_sync_leads_logs_changes_and_custom_fields_keep_updated_at(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    sandbox.control.advance(60)
    since = sandbox.control.clock.now().strftime(ISO)
    sync(
        sandbox, api, {"input": [{"email": "p2@acme.com", "lastName": "Changed", "molequlePersonId": "mp-x"}]}
    )
    token = rest_get(sandbox, api, "activities/pagingtoken.json", sinceDatetime=since)["nextPageToken"]
    changes = rest_get(sandbox, api, "activities/leadchanges.json", nextPageToken=token, fields="lastName")[
        "result"
    ]
    assert [c["fields"] for c in changes if c["leadId"] == 2] == [
        [{"id": FIELD_IDS["lastName"], "name": "lastName", "newValue": "Changed", "oldValue": "L2"}]
    ]
    sync(sandbox, api, {"input": [{"email": "p5@acme.com", "molequlePersonId": "mp-custom"}]})
    lead = rest_get(sandbox, api, "lead/5.json", fields="updatedAt,molequlePersonId")["result"][0]
    assert lead["molequlePersonId"] == "mp-custom"
    assert lead["updatedAt"] == EARLIER.strftime(ISO)  # a custom field does not move the visible updatedAt


def test_sync_leads_create_only_update_only_and_request_errors(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    create_only = sync(sandbox, api, {"action": "createOnly", "input": [{"email": "p4@acme.com"}]})
    assert create_only["result"][0]["reasons"][0] == {"code": "1005", "message": "Lead already exists"}
    update_only = sync(sandbox, api, {"action": "updateOnly", "input": [{"email": "ghost@acme.com"}]})
    assert update_only["result"][0]["reasons"][0] == {"code": "1004", "message": "Lead not found"}
    by_id = sync(
        sandbox, api, {"action": "updateOnly", "lookupField": "id", "input": [{"id": 5, "country": "France"}]}
    )
    assert by_id["result"] == [{"id": 5, "status": "updated"}]
    assert sync(sandbox, api, {"lookupField": "id", "input": [{"id": 5}]})["errors"][0]["code"] == "1003"
    assert (
        sync(sandbox, api, {"action": "upsert", "input": [{"email": "a@b.c"}]})["errors"][0]["code"] == "1003"
    )
    too_many = sync(sandbox, api, {"input": [{"email": f"x{i}@acme.com"} for i in range(301)]})
    assert too_many["errors"][0]["code"] == "1003"


def test_companies_and_named_accounts(sandbox: SandboxServer, api: requests.Session) -> None:
    doc_describe = load_fixture("companies/doc_companies__describe__response.json")["result"][0]
    described = rest_get(sandbox, api, "companies/describe.json")["result"][0]
    assert set(doc_describe) == set(described)
    assert described["searchableFields"] == doc_describe["searchableFields"]
    query = rest_get(
        sandbox,
        api,
        "companies.json",
        filterType="externalCompanyId",
        filterValues="EXT-2,EXT-1",
        fields="externalCompanyId,company",
    )
    doc_query = load_fixture("companies/doc_companies__query__response.json")["result"][0]
    assert set(query["result"][0]) == set(doc_query)
    assert [r["seq"] for r in query["result"]] == [0, 1]
    assert (
        rest_get(sandbox, api, "companies.json", filterType="website", filterValues="x")["errors"][0]["code"]
        == "1003"
    )
    accounts = rest_get(sandbox, api, "namedaccounts.json", filterType="name", filterValues="Acme")
    assert accounts["result"] == [
        {
            "seq": 0,
            "marketoGUID": "na-1",
            "name": "Acme",
            "createdAt": EARLIER.strftime(ISO),
            "updatedAt": EARLIER.strftime(ISO),
        }
    ]
    assert rest_get(sandbox, api, "namedaccounts/describe.json")["result"][0]["idField"] == "marketoGUID"


def test_static_lists_lead_db_view(sandbox: SandboxServer, api: requests.Session) -> None:
    lists = rest_get(sandbox, api, "lists.json")["result"]
    captured = load_fixture("lists/real_embulk__list_records.json")[0]
    assert set(captured) <= set(lists[0])
    assert rest_get(sandbox, api, "lists/3001.json")["result"][0]["name"] == "Seed"
    assert rest_get(sandbox, api, "lists/4040.json")["errors"][0]["code"] == "1013"
    first = rest_get(sandbox, api, "lists/3001/leads.json", batchSize=3)
    assert [r["id"] for r in first["result"]] == [3, 1, 2] and first["moreResult"] is True
    rest = rest_get(sandbox, api, "lists/3001/leads.json", batchSize=3, nextPageToken=first["nextPageToken"])
    assert [r["id"] for r in rest["result"]] == [4] and "nextPageToken" not in rest
