"""Campaign and program-member routes over real HTTP (docs/marketo.md §9.3, §13): listing, Request
Campaign and Schedule Campaign validation and what they record, member queries and status sync (1037/1025,
the 104 activity)."""

from __future__ import annotations

from datetime import timedelta

import pyarrow.compute as pc
import pytest
import requests

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.sandbox.conftest import NOW, fast_config, load_fixture, rest_get, rest_post

ISO = "%Y-%m-%dT%H:%M:%SZ"


@pytest.fixture(scope="module")
def sandbox_config() -> SandboxConfig:
    return fast_config(enforce_limits=False, people=150, activities_per_person=3, programs=6)


def campaign(sandbox: SandboxServer, name: str) -> dict:
    return next(c for c in sandbox.control.state.campaigns if c["name"] == name)


def lead_ids(sandbox: SandboxServer, n: int) -> list[int]:
    return sandbox.control.state.people["id"].to_pylist()[:n]


def test_campaign_listing_keeps_only_requestable_ones_when_triggerable(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    items = rest_get(sandbox, api, "campaigns.json", batchSize=300)["result"]
    captured = load_fixture("campaigns/real_embulk__campaign_records.json")[0]
    assert set(captured) - {"description"} <= set(items[0])
    triggerable = rest_get(sandbox, api, "campaigns.json", isTriggerable="true")["result"]
    assert [c["name"] for c in triggerable] == ["Molequle Welcome Trigger"]
    one = rest_get(sandbox, api, f"campaigns/{triggerable[0]['id']}.json")["result"]
    assert one == triggerable
    assert rest_get(sandbox, api, "campaigns/999999.json")["errors"][0]["code"] == "1013"


def test_request_campaign_records_leads_and_tokens(sandbox: SandboxServer, api: requests.Session) -> None:
    welcome = campaign(sandbox, "Molequle Welcome Trigger")
    leads = lead_ids(sandbox, 3)
    body = rest_post(
        sandbox,
        api,
        f"campaigns/{welcome['id']}/trigger.json",
        {
            "input": {
                "leads": [{"id": i} for i in leads],
                "tokens": [{"name": "{{my.Welcome Message}}", "value": "Hi!"}],
            }
        },
    )
    doc = load_fixture("campaigns/doc_smart-campaigns__trigger__response.json")
    assert set(body) == set(doc) and body["result"] == [{"id": welcome["id"]}]
    recorded = sandbox.control.campaign_requests()[-1]
    assert recorded["kind"] == "trigger" and recorded["leadIds"] == leads
    assert recorded["tokens"] == {"{{my.Welcome Message}}": "Hi!"}
    assert recorded["api_user"] == "molequle@sandbox"


@pytest.mark.parametrize(
    "name,body,code",
    [
        ("Molequle Quarterly Newsletter", {"input": {"leads": [{"id": 1}]}}, "1003"),  # batch campaign
        ("Molequle Inactive Trigger", {"input": {"leads": [{"id": 1}]}}, "1003"),
        ("Molequle Form Fill Trigger", {"input": {"leads": [{"id": 1}]}}, "1003"),  # not requestable
        ("Molequle Welcome Trigger", {"input": {"leads": [{"id": i} for i in range(1, 102)]}}, "1003"),
        ("Molequle Welcome Trigger", {"input": {"leads": []}}, "1003"),
        (
            "Molequle Welcome Trigger",
            {"input": {"leads": [{"id": 1}], "tokens": [{"name": "my.Welcome Message", "value": "x"}]}},
            "1003",
        ),  # braces are required
        (
            "Molequle Welcome Trigger",
            {"input": {"leads": [{"id": 1}], "tokens": [{"name": "{{my.Nope}}", "value": "x"}]}},
            "1003",
        ),  # not a token of the program
    ],
)
def test_request_campaign_rejections_record_nothing(
    sandbox: SandboxServer, api: requests.Session, name: str, body: dict, code: str
) -> None:
    before = len(sandbox.control.campaign_requests())
    answer = rest_post(sandbox, api, f"campaigns/{campaign(sandbox, name)['id']}/trigger.json", body)
    assert answer["success"] is False and answer["errors"][0]["code"] == code
    assert len(sandbox.control.campaign_requests()) == before


def test_request_campaign_codes_are_settings(sandbox: SandboxServer, api: requests.Session) -> None:
    behaviour = sandbox.config.behaviour
    behaviour.trigger_inactive_error_code, behaviour.trigger_too_many_leads_error_code = "609", "1001"
    try:
        inactive = rest_post(
            sandbox,
            api,
            f"campaigns/{campaign(sandbox, 'Molequle Inactive Trigger')['id']}/trigger.json",
            {"input": {"leads": [{"id": 1}]}},
        )
        too_many = rest_post(
            sandbox,
            api,
            f"campaigns/{campaign(sandbox, 'Molequle Welcome Trigger')['id']}/trigger.json",
            {"input": {"leads": [{"id": i} for i in range(1, 102)]}},
        )
    finally:
        behaviour.trigger_inactive_error_code, behaviour.trigger_too_many_leads_error_code = "1003", "1003"
    assert inactive["errors"][0]["code"] == "609" and too_many["errors"][0]["code"] == "1001"
    assert (
        rest_post(sandbox, api, "campaigns/999999/trigger.json", {"input": {"leads": [{"id": 1}]}})["errors"][
            0
        ]["code"]
        == "1013"
    )


def test_schedule_campaign_run_at_rules(sandbox: SandboxServer, api: requests.Session) -> None:
    batch = campaign(sandbox, "Molequle Quarterly Newsletter")["id"]
    now = sandbox.control.clock.now()
    run_at = (now + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    body = rest_post(sandbox, api, f"campaigns/{batch}/schedule.json", {"input": {"runAt": run_at}})
    assert body["result"] == [{"id": batch}]
    assert sandbox.control.campaign_requests()[-1]["runAt"] == now + timedelta(minutes=10)
    assert (
        rest_post(sandbox, api, f"campaigns/{batch}/schedule.json", None)["success"] is True
    )  # body optional
    assert sandbox.control.campaign_requests()[-1]["runAt"] == now + timedelta(minutes=5)
    for too_soon_or_far in (now + timedelta(minutes=1), now + timedelta(days=3 * 365)):
        answer = rest_post(
            sandbox,
            api,
            f"campaigns/{batch}/schedule.json",
            {"input": {"runAt": too_soon_or_far.strftime(ISO)}},
        )
        assert answer["errors"][0] == {"code": "1042", "message": "Invalid runAt date"}
    trigger = campaign(sandbox, "Molequle Welcome Trigger")["id"]
    assert rest_post(sandbox, api, f"campaigns/{trigger}/schedule.json", None)["errors"][0]["code"] == "1003"


def test_program_members_query_by_lead_or_status_and_refuse_bad_filters(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    members = sandbox.control.state.memberships
    program_id = members["programId"][0].as_py()
    lead_id = members["leadId"][0].as_py()
    body = rest_get(
        sandbox, api, f"programs/{program_id}/members.json", filterType="leadId", filterValues=str(lead_id)
    )
    doc = load_fixture("program-members/doc_program-members__query__response.json")["result"][0]
    assert set(body["result"][0]) == set(doc)
    assert body["result"][0]["leadId"] == lead_id and body["result"][0]["programId"] == program_id
    status = members["statusName"][0].as_py()
    by_status = rest_get(
        sandbox,
        api,
        f"programs/{program_id}/members.json",
        filterType="statusName",
        filterValues=status,
        fields="statusName",
        batchSize=300,
    )["result"]
    expected = members.filter(
        pc.and_(pc.equal(members["programId"], program_id), pc.equal(members["statusName"], status))
    ).num_rows
    assert len(by_status) == expected and {m["statusName"] for m in by_status} == {status}
    assert (
        rest_get(sandbox, api, f"programs/{program_id}/members.json", filterType="title", filterValues="x")[
            "errors"
        ][0]["code"]
        == "1003"
    )
    assert (
        rest_get(sandbox, api, "programs/999999/members.json", filterType="leadId", filterValues="1")[
            "errors"
        ][0]["code"]
        == "1013"
    )
    described = rest_get(sandbox, api, "programs/members/describe.json")["result"][0]
    assert set(
        load_fixture("program-members/doc_program-members__describe__response.json")["result"][0]
    ) == set(described)


def test_member_status_sync_orders_steps_and_logs_104(sandbox: SandboxServer, api: requests.Session) -> None:
    state = sandbox.control.state
    program = state.programs.to_pylist()[0]
    statuses = next(c for c in state.channels if c["name"] == program["channel"])["progressionStatuses"]
    members = state.memberships.filter(pc.equal(state.memberships["programId"], program["id"]))
    outsider = next(i for i in state.people["id"].to_pylist() if i not in set(members["leadId"].to_pylist()))
    path = f"programs/{program['id']}/members/status.json"
    created = rest_post(
        sandbox, api, path, {"statusName": statuses[2]["name"], "input": [{"leadId": outsider}]}
    )
    assert created["result"] == [{"seq": 0, "status": "created", "leadId": outsider}]
    moved = rest_post(
        sandbox,
        api,
        path,
        {"statusName": statuses[3]["name"], "input": [{"leadId": outsider}, {"leadId": 987654321}]},
    )
    assert moved["result"][0] == {"seq": 0, "status": "updated", "leadId": outsider}
    assert moved["result"][1]["reasons"][0]["code"] == "1004"
    backwards = rest_post(
        sandbox, api, path, {"statusName": statuses[1]["name"], "input": [{"leadId": outsider}]}
    )
    doc = load_fixture("program-members/doc_program-members__program-member-status__response.json")["result"][
        0
    ]
    assert set(backwards["result"][0]) == set(doc)
    assert backwards["result"][0]["reasons"][0]["code"] == "1037"
    unknown = rest_post(sandbox, api, path, {"statusName": "Bogus", "input": [{"leadId": outsider}]})
    assert unknown["errors"][0]["code"] == "1025"
    sandbox.config.behaviour.unknown_status_on_member_sync = "record_skip"
    try:
        skipped = rest_post(sandbox, api, path, {"statusName": "Bogus", "input": [{"leadId": outsider}]})
    finally:
        sandbox.config.behaviour.unknown_status_on_member_sync = "request_error"
    assert skipped["success"] is True and skipped["result"][0]["reasons"][0]["code"] == "1025"
    row = state.memberships.filter(
        pc.and_(
            pc.equal(state.memberships["programId"], program["id"]),
            pc.equal(state.memberships["leadId"], outsider),
        )
    ).to_pylist()
    assert [r["statusName"] for r in row] == [statuses[3]["name"]]
    token = rest_get(sandbox, api, "activities/pagingtoken.json", sinceDatetime=NOW.strftime(ISO))[
        "nextPageToken"
    ]
    logged = rest_get(
        sandbox, api, "activities.json", nextPageToken=token, activityTypeIds="104", leadIds=outsider
    )
    changes = [{a["name"]: a["value"] for a in item["attributes"]} for item in logged["result"]]
    assert [(c["Old Status"], c["New Status"]) for c in changes] == [
        (statuses[0]["name"], statuses[2]["name"]),
        (statuses[2]["name"], statuses[3]["name"]),
    ]
    assert logged["result"][0]["primaryAttributeValueId"] == program["id"]
