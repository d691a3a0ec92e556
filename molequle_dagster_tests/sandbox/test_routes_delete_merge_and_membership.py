"""Delete Leads, Merge Leads, static list membership and program membership over real HTTP
(docs/marketo.md §9.4, §10, §12.2, §12.3) on a hand-built instance; replays captured grouparoo calls and
compares shapes with Adobe's doc examples."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
import requests

from molequle_dagster.sandbox.attributes import explicit_json
from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.control import empty_state
from molequle_dagster.sandbox.model import (
    ACTIVITIES_SCHEMA,
    MEMBERSHIPS_SCHEMA,
    PEOPLE_SCHEMA,
    PROGRAMS_SCHEMA,
    InstanceState,
)
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.fixtures import MARKETO_FIXTURES, sandbox_access_token

NOW = datetime(2026, 3, 10, 15, 0, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(days=30)
ISO = "%Y-%m-%dT%H:%M:%SZ"
CAPTURED_IDS = (7149, 7150, 7151, 7152)  # the lead ids of the grouparoo recordings
LEAD_IDS = (1, 2, 3, 4, 5, *CAPTURED_IDS)
WEBINAR, NEWSLETTER = 1127, 1044


def fixture(path: str) -> Any:
    return json.loads((MARKETO_FIXTURES / path).read_text())


def person(lead_id: int) -> dict[str, Any]:
    return {
        "id": lead_id,
        "email": f"p{lead_id}@acme.com",
        "firstName": f"First{lead_id}",
        "lastName": f"Last{lead_id}",
        "title": None if lead_id != 3 else "CTO",
        "company": "Acme",
        "externalCompanyId": None,
        "leadScore": 5,
        "country": None,
        "unsubscribed": False,
        "molequlePersonId": None,
        "createdAt": EARLIER,
        "updatedAt": EARLIER,
        "_modifiedAt": EARLIER,
    }


def program(program_id: int, name: str, channel: str) -> dict[str, Any]:
    return {
        "id": program_id,
        "name": name,
        "description": "",
        "type": "Default",
        "channel": channel,
        "folderId": 38,
        "folderName": "Test",
        "status": "",
        "workspace": "Default",
        "createdAt": EARLIER,
        "updatedAt": EARLIER,
    }


def membership(program_id: int, lead_id: int, status: str, success: bool = False) -> dict[str, Any]:
    return {
        "programId": program_id,
        "leadId": lead_id,
        "statusName": status,
        "membershipDate": EARLIER,
        "reachedSuccess": success,
        "reachedSuccessDate": EARLIER if success else None,
        "acquiredBy": True,
        "isExhausted": False,
        "createdAt": EARLIER,
        "updatedAt": EARLIER,
    }


def activity(guid: int, lead_id: int, when: datetime) -> dict[str, Any]:
    return {
        "marketoGUID": guid,
        "leadId": lead_id,
        "activityDate": when,
        "activityTypeId": 13,
        "campaignId": None,
        "primaryAttributeValueId": 50,
        "primaryAttributeValue": "Job Title",
        "attributeSeed": 0,
        "attributesJson": explicit_json({"Old Value": None, "New Value": "CTO", "Reason": "test"}),
    }


def instance() -> InstanceState:
    state = empty_state(7, NOW)
    state.people = pa.Table.from_pylist([person(i) for i in LEAD_IDS], schema=PEOPLE_SCHEMA)
    state.next_lead_id = 8000
    state.channels = [
        {
            "id": 1,
            "name": "Webinar",
            "applicableProgramType": "event",
            "progressionStatuses": [
                {"name": name, "step": step, "description": None, "hidden": False, "success": ok}
                for name, step, ok in (
                    ("Not in Program", 0, False),
                    ("Registered", 10, False),
                    ("Attended", 20, True),
                )
            ],
            "createdAt": EARLIER,
            "updatedAt": EARLIER,
        }
    ]
    state.programs = pa.Table.from_pylist(
        [program(WEBINAR, "Spring Webinar", "Webinar"), program(NEWSLETTER, "Newsletter", "Webinar")],
        schema=PROGRAMS_SCHEMA,
    )
    state.memberships = pa.Table.from_pylist(
        [
            membership(WEBINAR, 1, "Registered"),
            membership(WEBINAR, 2, "Attended", success=True),
            membership(WEBINAR, 4, "Registered"),
            membership(NEWSLETTER, 3, "Registered"),
            membership(NEWSLETTER, 1, "Attended", success=True),
        ],
        schema=MEMBERSHIPS_SCHEMA,
    )
    state.activities = pa.Table.from_pylist(
        [activity(1, 3, EARLIER), activity(2, 1, EARLIER + timedelta(hours=1))], schema=ACTIVITIES_SCHEMA
    )
    state.next_activity_guid = 100
    state.static_lists = [
        {"id": 1159, "name": "Grouparoo A", "lead_ids": [3], "createdAt": EARLIER, "updatedAt": EARLIER},
        {
            "id": 1160,
            "name": "Grouparoo B",
            "lead_ids": [7149, 3],
            "createdAt": EARLIER,
            "updatedAt": EARLIER,
        },
    ]
    return state


class Marketo:
    """A bearer-token session on one sandbox."""

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        token = sandbox_access_token(server.base_url)
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.session.request(method, f"{self.server.base_url}{path}", timeout=10, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self.call("GET", path, params=params)

    def activities(self, type_id: int, lead_id: int) -> list[dict[str, Any]]:
        token = self.get("/rest/v1/activities/pagingtoken.json", sinceDatetime="2020-01-01T00:00:00Z")
        page = self.get(
            "/rest/v1/activities.json",
            nextPageToken=token["nextPageToken"],
            activityTypeIds=type_id,
            leadIds=lead_id,
        )
        return page.get("result", [])


@pytest.fixture()
def marketo() -> Iterator[Marketo]:
    """A fresh instance per test: these endpoints delete, merge and move leads."""
    config = SandboxConfig.for_profile("fast")
    config.limits.enforce = False
    with SandboxServer(config, now=NOW, state=instance()) as server:
        client = Marketo(server)
        yield client
        client.session.close()  # no keep-alive connection left for the server's shutdown to wait on


@pytest.fixture(scope="module")
def shared() -> Iterator[Marketo]:
    """One instance for the reads and the refused writes: each of those tests asserts nothing changed."""
    config = SandboxConfig.for_profile("fast")
    config.limits.enforce = False
    with SandboxServer(config, now=NOW, state=instance()) as server:
        client = Marketo(server)
        yield client
        client.session.close()


def error_code(body: dict[str, Any]) -> str:
    assert body["success"] is False, body
    return body["errors"][0]["code"]


# --- Delete Leads ------------------------------------------------------------------------------------------


def test_delete_leads_reports_each_record_and_feeds_deleted_leads(marketo: Marketo) -> None:
    doc = fixture("leads/doc_leads__delete__response.json")
    body = marketo.call(
        "POST",
        "/rest/v1/leads/delete.json",
        json={"input": [{"id": 3}, {"id": 999}, {"id": 3}]},
    )
    assert set(body) == set(doc)
    assert set(body["result"][0]) == set(doc["result"][0])
    assert body["result"] == [
        {"id": 3, "status": "deleted"},
        {"id": 999, "status": "skipped", "reasons": [{"code": "1004", "message": "Lead not found"}]},
        {"id": 3, "status": "skipped", "reasons": [{"code": "1004", "message": "Lead not found"}]},
    ]
    assert marketo.get("/rest/v1/lead/3.json")["result"] == []
    doc_request = marketo.call(
        "POST", "/rest/v1/leads/delete.json", json=fixture("leads/doc_leads__delete__request.json")
    )
    assert [item["status"] for item in doc_request["result"]] == ["skipped", "skipped"]  # 235, 766 unknown
    since = marketo.get("/rest/v1/activities/pagingtoken.json", sinceDatetime=NOW.strftime(ISO))
    deleted = marketo.get("/rest/v1/activities/deletedleads.json", nextPageToken=since["nextPageToken"])
    assert [(d["leadId"], d["activityTypeId"], d["primaryAttributeValue"]) for d in deleted["result"]] == [
        (3, 37, "First3 Last3")
    ]
    # Marketo drops the person's history and memberships with them.
    assert marketo.activities(13, 3) == []
    assert marketo.get("/rest/v1/leads/3/programMembership.json")["result"] == []
    assert marketo.get("/rest/v1/leads/3/listMembership.json")["result"] == []


def test_delete_replays_captured_method_delete_and_legacy_delete(marketo: Marketo) -> None:
    capture = fixture("leads/real_grouparoo__leads_delete_via_method_DELETE.json")
    body = marketo.call(
        capture["method"], capture["path"], params=capture["query"], json=capture["requestBody"]
    )
    assert body["result"] == capture["responseBody"]["result"]
    legacy = marketo.call("DELETE", "/rest/v1/leads.json", json={"input": [{"id": 7150}]})
    assert legacy["result"] == [{"id": 7150, "status": "deleted"}]
    ids = marketo.get("/rest/v1/leads.json", filterType="id", filterValues="7149,7150,7151,7152,1")
    assert [lead["id"] for lead in ids["result"]] == [1]
    keys = marketo.server.control.call_counts()
    assert keys["POST /rest/v1/leads.json"] == 1 and keys["DELETE /rest/v1/leads.json"] == 1


def test_delete_is_strict_about_its_input(shared: Marketo) -> None:
    path = "/rest/v1/leads/delete.json"
    over = {"input": [{"id": i} for i in range(301)]}
    assert error_code(shared.call("POST", path, json=over)) == "1003"
    assert error_code(shared.call("POST", path, json={"input": []})) == "1003"
    assert error_code(shared.call("POST", path, json={"input": [{"id": "3"}]})) == "1003"
    assert error_code(shared.call("POST", path, json={"input": [{"id": 3}], "deleteBy": "id"})) == "1003"
    assert (
        error_code(shared.call("POST", path, data="input=3", headers={"Content-Type": "text/plain"})) == "612"
    )
    assert (
        error_code(shared.call("POST", path, data="{", headers={"Content-Type": "application/json"})) == "609"
    )
    assert (
        error_code(shared.call("POST", path, params={"batchsize": 3}, json={"input": [{"id": 3}]})) == "1003"
    )
    assert error_code(shared.call("GET", path)) == "605"
    assert shared.get("/rest/v1/lead/3.json")["result"][0]["id"] == 3  # nothing was deleted


# --- Merge Leads -------------------------------------------------------------------------------------------


def test_merge_moves_history_and_logs_a_merge_activity(marketo: Marketo) -> None:
    doc = fixture("leads/doc_leads__merge__response.json")
    body = marketo.call(
        "POST", "/rest/v1/leads/1/merge.json", params={"leadIds": "3,4", "mergeInCRM": "false"}
    )
    assert set(body) == set(doc) and body["success"] is True  # no `result`
    assert marketo.get("/rest/v1/leads.json", filterType="id", filterValues="3,4")["result"] == []
    winner = marketo.get("/rest/v1/lead/1.json", fields="title")["result"][0]
    assert winner["title"] == "CTO"  # the winner's empty field filled from a loser
    merges = marketo.activities(32, 1)
    assert [(m["primaryAttributeValueId"], m["primaryAttributeValue"]) for m in merges] == [
        (1, "First1 Last1")
    ]
    attributes = {a["name"]: a["value"] for a in merges[0]["attributes"]}
    assert attributes["Merge IDs"] == [3, 4]
    assert [a["leadId"] for a in marketo.activities(13, 1)] == [1, 1]  # the loser's change moved over
    programs = marketo.get("/rest/v1/leads/1/programMembership.json")["result"]
    # lead 1 already was in both programs: its own memberships win over the losers'.
    assert [(p["id"], p["progressionStatus"]) for p in programs] == [
        (NEWSLETTER, "Attended"),
        (WEBINAR, "Registered"),
    ]
    lists = marketo.get("/rest/v1/leads/1/listMembership.json")["result"]
    assert [item["listId"] for item in lists] == [1160, 1159]


def test_merge_single_loser_with_lead_id(marketo: Marketo) -> None:
    assert marketo.call("POST", "/rest/v1/leads/2/merge.json", params={"leadId": 5})["success"] is True
    assert marketo.get("/rest/v1/lead/5.json")["result"] == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"leadIds": ",".join(str(i) for i in range(10, 36))}, "1080"),  # 26 losers
        ({"leadId": 3, "leadIds": 4}, "1003"),
        ({}, "701"),
        ({"leadId": "3,4"}, "1003"),
        ({"leadIds": "3,3"}, "1003"),
        ({"leadIds": "1"}, "1003"),  # the winner cannot lose
        ({"leadIds": "x"}, "1001"),
        ({"leadIds": "999"}, "1004"),
        ({"leadIds": "3", "mergeInCRM": "maybe"}, "1001"),
        ({"leadIds": "3", "leadsIds": "4"}, "1003"),  # a typo is not ignored
    ],
)
def test_merge_rejects_bad_requests(shared: Marketo, params: dict[str, Any], code: str) -> None:
    assert error_code(shared.call("POST", "/rest/v1/leads/1/merge.json", params=params)) == code
    assert len(shared.get("/rest/v1/leads.json", filterType="id", filterValues="1,3,4")["result"]) == 3


def test_merge_into_unknown_winner_and_wrong_method(shared: Marketo) -> None:
    assert error_code(shared.call("POST", "/rest/v1/leads/999/merge.json", params={"leadId": 3})) == "1004"
    assert error_code(shared.call("GET", "/rest/v1/leads/1/merge.json", params={"leadId": 3})) == "605"


# --- static list membership --------------------------------------------------------------------------------


def test_list_add_and_remove_replay_captures(marketo: Marketo) -> None:
    added = fixture("lists/real_grouparoo__list_add_leads.json")
    body = marketo.call(added["method"], added["path"], json=added["requestBody"])
    assert body["result"] == added["responseBody"]["result"]
    removed = fixture("lists/real_grouparoo__list_remove_leads_1015_skip.json")
    body = marketo.call(removed["method"], removed["path"], params=removed["query"])
    assert body["result"] == removed["responseBody"]["result"]
    members = marketo.get("/rest/v1/lists/1159/leads.json")["result"]
    assert [m["id"] for m in members] == [3, 7149]
    assert [m["id"] for m in marketo.get("/rest/v1/lists/1160/leads.json")["result"]] == [3]


def test_list_add_skips_unknown_leads_like_the_doc_and_logs_activities(marketo: Marketo) -> None:
    doc = fixture("lists/doc_list-membership__add-to-list__response.json")
    body = marketo.call("POST", "/rest/v1/lists/1159/leads.json", json={"input": [{"id": 2}, {"id": 999}]})
    assert [set(item) for item in body["result"]] == [set(item) for item in doc["result"]]
    assert body["result"][1] == {
        "id": 999,
        "status": "skipped",
        "reasons": [{"code": "1004", "message": "Lead not found"}],
    }
    again = marketo.call("POST", "/rest/v1/lists/1159/leads.json", params={"id": "2,3"})
    assert [item["status"] for item in again["result"]] == ["added", "added"]  # idempotent
    adds = marketo.activities(24, 2)
    assert [(a["primaryAttributeValueId"], a["primaryAttributeValue"]) for a in adds] == [
        (1159, "Grouparoo A")
    ]
    doc_lists = fixture("leads/doc_leads__get-lists-by-lead-id__response.json")["result"][0]
    lists = marketo.get("/rest/v1/leads/2/listMembership.json")["result"]
    assert lists == [{"listId": 1159, "createdAt": NOW.strftime(ISO), "updatedAt": NOW.strftime(ISO)}]
    assert set(lists[0]) == set(doc_lists)
    removed = marketo.call("DELETE", "/rest/v1/lists/1159/leads.json", json={"input": [{"id": 2}]})
    assert removed["result"] == [{"id": 2, "status": "removed"}]
    assert [a["activityTypeId"] for a in marketo.activities(25, 2)] == [25]


def test_ismember_matches_the_doc_shape(shared: Marketo) -> None:
    doc = fixture("lists/doc_list-membership__member-of-list__response.json")
    body = shared.get("/rest/v1/lists/1160/leads/ismember.json", id="7149,1,999")
    assert [item["status"] for item in body["result"]] == [item["status"] for item in doc["result"]]
    assert [set(item) for item in body["result"]] == [set(item) for item in doc["result"]]
    repeated = shared.call("GET", "/rest/v1/lists/1160/leads/ismember.json", params=[("id", 3), ("id", 1)])
    assert [item["status"] for item in repeated["result"]] == ["memberof", "notmemberof"]


def test_list_reads_through_form_method_get_as_captured(shared: Marketo) -> None:
    capture = fixture("lists/real_grouparoo__list_leads_via_method_GET.json")
    body = shared.call(
        capture["method"],
        capture["path"],
        data=capture["requestBody"],
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert [lead["id"] for lead in body["result"]] == [3]  # list 1159 here holds lead 3
    assert set(body["result"][0]) <= set(capture["responseBody"]["result"][0])
    assert shared.get("/rest/v1/lists/1159/leads.json")["result"] == body["result"]  # nothing was added


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "code"),
    [
        (
            "POST",
            "/rest/v1/lists/1159/leads.json",
            {"json": {"input": [{"id": i} for i in range(301)]}},
            "1003",
        ),
        (
            "POST",
            "/rest/v1/lists/1159/leads.json",
            {"params": {"id": ",".join(map(str, range(301)))}},
            "1003",
        ),
        (
            "POST",
            "/rest/v1/lists/1159/leads.json",
            {"params": {"id": 1}, "json": {"input": [{"id": 2}]}},
            "1003",
        ),
        ("POST", "/rest/v1/lists/1159/leads.json", {}, "1003"),
        ("POST", "/rest/v1/lists/4242/leads.json", {"params": {"id": 1}}, "1013"),
        (
            "POST",
            "/rest/v1/lists/1159/leads.json",
            {"data": "id=1", "headers": {"Content-Type": "text/plain"}},
            "612",
        ),
        ("POST", "/rest/v1/lists/1159/leads.json", {"params": {"id": "1", "listid": "1159"}}, "1003"),
        ("DELETE", "/rest/v1/lists/1159/leads.json", {"params": {"id": "one"}}, "1001"),
        ("GET", "/rest/v1/lists/1159/leads/ismember.json", {}, "1003"),
        ("GET", "/rest/v1/lists/4242/leads/ismember.json", {"params": {"id": 1}}, "1013"),
        ("PUT", "/rest/v1/lists/1159/leads.json", {"params": {"id": 1}}, "605"),
    ],
)
def test_list_membership_rejects_bad_requests(
    shared: Marketo, method: str, path: str, kwargs: dict[str, Any], code: str
) -> None:
    assert error_code(shared.call(method, path, **kwargs)) == code
    assert [m["id"] for m in shared.get("/rest/v1/lists/1159/leads.json")["result"]] == [3]


def test_list_membership_of_a_lead_pages(shared: Marketo) -> None:
    first = shared.get("/rest/v1/leads/3/listMembership.json", batchSize=1)
    assert [item["listId"] for item in first["result"]] == [1160] and first["moreResult"] is True
    second = shared.get(
        "/rest/v1/leads/3/listMembership.json", batchSize=1, nextPageToken=first["nextPageToken"]
    )
    assert [item["listId"] for item in second["result"]] == [1159] and "nextPageToken" not in second
    assert second["result"][0]["createdAt"] == EARLIER.strftime(ISO)  # generated members: list creation


# --- program membership ------------------------------------------------------------------------------------


def test_leads_by_program_carry_a_membership_object(shared: Marketo) -> None:
    doc = fixture("leads/doc_leads__programs__response.json")["result"][0]
    first = shared.get(f"/rest/v1/leads/programs/{WEBINAR}.json", batchSize=2)
    assert [lead["id"] for lead in first["result"]] == [1, 2] and first["moreResult"] is True
    lead = first["result"][1]
    assert set(lead) == set(doc)
    assert set(lead["membership"]) == set(doc["membership"])
    assert lead["membership"] == {
        "id": WEBINAR,
        "progressionStatus": "Attended",
        "progressionStatusType": "Attended",
        "isExhausted": False,
        "acquiredBy": True,
        "reachedSuccess": True,
        "membershipDate": EARLIER.strftime(ISO),
        "updatedAt": EARLIER.strftime(ISO),
    }
    rest = shared.get(
        f"/rest/v1/leads/programs/{WEBINAR}.json", batchSize=2, nextPageToken=first["nextPageToken"]
    )
    assert [lead["id"] for lead in rest["result"]] == [4] and "moreResult" not in rest
    picked = shared.get(f"/rest/v1/leads/programs/{WEBINAR}.json", fields="email,membership", batchSize=1)
    assert set(picked["result"][0]) == {"id", "email", "membership"}


def test_programs_of_a_lead_match_the_doc_shape(shared: Marketo) -> None:
    doc = fixture("leads/doc_leads__programs__response_2.json")["result"][0]
    programs = shared.get("/rest/v1/leads/1/programMembership.json")["result"]
    assert [p["id"] for p in programs] == [NEWSLETTER, WEBINAR]
    assert all(set(p) == set(doc) for p in programs)
    only = shared.get("/rest/v1/leads/1/programMembership.json", filterType="programId", filterValues=WEBINAR)
    assert [(p["id"], p["progressionStatus"]) for p in only["result"]] == [(WEBINAR, "Registered")]
    assert shared.get("/rest/v1/leads/999/programMembership.json")["result"] == []


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        (f"/rest/v1/leads/programs/{4242}.json", {}, "1013"),
        (f"/rest/v1/leads/programs/{WEBINAR}.json", {"fields": "shoeSize"}, "1006"),
        (f"/rest/v1/leads/programs/{WEBINAR}.json", {"batchSize": 301}, "1003"),
        (f"/rest/v1/leads/programs/{WEBINAR}.json", {"filterType": "id"}, "1003"),
        ("/rest/v1/leads/1/programMembership.json", {"filterType": "name", "filterValues": "x"}, "1003"),
        ("/rest/v1/leads/1/programMembership.json", {"filterType": "programId"}, "701"),
        ("/rest/v1/leads/1/programMembership.json", {"filterValues": "1127"}, "701"),
        ("/rest/v1/leads/1/programMembership.json", {"nextPageToken": "NOTATOKEN"}, "1003"),
        ("/rest/v1/leads/1/listMembership.json", {"batchSize": 0}, "1003"),
    ],
)
def test_membership_reads_reject_bad_requests(
    shared: Marketo, path: str, params: dict[str, Any], code: str
) -> None:
    assert error_code(shared.get(path, **params)) == code


# --- the gate ----------------------------------------------------------------------------------------------


def test_delete_merge_and_membership_routes_sit_behind_the_gate(marketo: Marketo) -> None:
    control = marketo.server.control
    anonymous = requests.post(
        f"{marketo.server.base_url}/rest/v1/leads/delete.json", json={"input": [{"id": 3}]}
    )
    assert error_code(anonymous.json()) == "601"
    control.inject_fault("POST /rest/v1/leads/{id}/merge.json", "rate_limit")
    assert error_code(marketo.call("POST", "/rest/v1/leads/1/merge.json", params={"leadId": 3})) == "606"
    assert marketo.get("/rest/v1/lead/3.json")["result"][0]["id"] == 3  # the faulted merge did not run
    marketo.call("GET", "/rest/v1/lists/1160/leads/ismember.json", params={"id": 3})
    counts = control.call_counts()
    assert counts["POST /rest/v1/leads/{id}/merge.json"] == 1
    assert counts["GET /rest/v1/lists/{id}/leads/ismember.json"] == 1
    assert counts["POST /rest/v1/leads/delete.json"] == 1
