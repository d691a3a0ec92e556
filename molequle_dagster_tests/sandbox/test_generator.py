"""The generated instance: deterministic, schema-exact, realistic and internally consistent."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from molequle_dagster.sandbox import catalog, my_tokens
from molequle_dagster.sandbox.attributes import render_attributes
from molequle_dagster.sandbox.config import DataSettings
from molequle_dagster.sandbox.generator import generate
from molequle_dagster.sandbox.lead_fields import FIELD_IDS
from molequle_dagster.sandbox.model import (
    ACTIVITIES_SCHEMA,
    COMPANIES_SCHEMA,
    MEMBERSHIPS_SCHEMA,
    NAMED_ACCOUNTS_SCHEMA,
    PEOPLE_SCHEMA,
    PROGRAMS_SCHEMA,
    InstanceState,
)
from molequle_dagster.sandbox.truth import smart_list_lead_ids
from molequle_dagster_tests.fixtures import MARKETO_FIXTURES

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
FIXTURES = MARKETO_FIXTURES
DEFAULT_TYPES = {10, 11, 8, 27, 6, 7, 46, 2, 1, 3, 22}


@pytest.fixture(scope="module")
def state() -> InstanceState:
    return generate(DataSettings(people=2000, programs=30), NOW)


def seconds(column: pa.ChunkedArray) -> np.ndarray:
    return pc.cast(column, pa.int64()).to_numpy()


def test_same_seed_and_size_give_identical_instances(state: InstanceState) -> None:
    again = generate(DataSettings(people=2000, programs=30), NOW)
    for name in ("people", "companies", "named_accounts", "activities", "programs", "memberships"):
        assert getattr(again, name).equals(getattr(state, name)), name
    assert again.channels == state.channels
    assert again.campaigns == state.campaigns
    assert again.static_lists == state.static_lists
    assert (again.next_lead_id, again.next_activity_guid) == (state.next_lead_id, state.next_activity_guid)


def test_another_seed_gives_other_people() -> None:
    one = generate(DataSettings(people=300, seed=1), NOW)
    two = generate(DataSettings(people=300, seed=2), NOW)
    assert not one.people["email"].equals(two.people["email"])


def test_tables_follow_the_model_schemas_exactly(state: InstanceState) -> None:
    assert state.people.schema == PEOPLE_SCHEMA
    assert state.companies.schema == COMPANIES_SCHEMA
    assert state.named_accounts.schema == NAMED_ACCOUNTS_SCHEMA
    assert state.activities.schema == ACTIVITIES_SCHEMA
    assert state.programs.schema == PROGRAMS_SCHEMA
    assert state.memberships.schema == MEMBERSHIPS_SCHEMA


def test_people_are_realistic(state: InstanceState) -> None:
    people = state.people
    assert people["id"].to_pylist() == list(range(1, 2001))
    assert state.next_lead_id == 2001
    created, updated, modified = (seconds(people[c]) for c in ("createdAt", "updatedAt", "_modifiedAt"))
    assert (updated >= created).all() and (modified >= updated).all()
    assert (np.diff(created) >= 0).all(), "ids grow with creation time"
    assert created.min() >= NOW.timestamp() - 760 * 86400 and created.max() <= NOW.timestamp()
    assert 0.02 < pc.mean(pc.cast(people["unsubscribed"], pa.float64())).as_py() < 0.09
    assert people["molequlePersonId"].null_count == people.num_rows
    emails = pc.drop_null(people["email"]).to_pylist()
    assert 0 < people["email"].null_count < 40
    assert len(set(emails)) == len(emails), "emails are unique"
    assert all(e.isascii() and e.count("@") == 1 for e in emails)
    personal = [e for e in emails if e.split("@")[1] in catalog.PERSONAL_DOMAINS]
    assert 0.05 < len(personal) / len(emails) < 0.2
    assert people["firstName"].null_count == 0 and people["lastName"].null_count == 0


def test_corporate_emails_use_their_company_domain(state: InstanceState) -> None:
    domains = dict(
        zip(
            state.companies["externalCompanyId"].to_pylist(),
            [w.removeprefix("https://www.") for w in state.companies["website"].to_pylist()],
            strict=True,
        )
    )
    rows = state.people.select(["email", "firstName", "lastName", "externalCompanyId"]).to_pylist()
    corporate = [r for r in rows if r["email"] and r["email"].split("@")[1] not in catalog.PERSONAL_DOMAINS]
    assert corporate
    for row in corporate:
        assert row["email"].split("@")[1] == domains[row["externalCompanyId"]]
    assert any(
        r["email"].split("@")[0] == f"{r['firstName'].lower()}.{r['lastName'].lower()}" for r in corporate
    )


def test_companies_and_named_accounts_link_up(state: InstanceState) -> None:
    companies = state.companies
    assert companies.num_rows == 200  # people * companies_ratio
    external = companies["externalCompanyId"].to_pylist()
    assert len(set(external)) == len(external)
    assert pc.all(
        pc.is_in(state.people["externalCompanyId"], value_set=companies["externalCompanyId"])
    ).as_py()
    assert companies["website"].null_count == 0 and companies["industry"].null_count == 0
    named = state.named_accounts
    assert 1 <= named.num_rows < companies.num_rows
    assert pc.all(pc.is_in(named["name"], value_set=companies["company"])).as_py()
    assert len(set(named["marketoGUID"].to_pylist())) == named.num_rows


def test_activities_are_sorted_unique_and_reference_people(state: InstanceState) -> None:
    acts = state.activities
    dates, guids = seconds(acts["activityDate"]), acts["marketoGUID"].to_numpy()
    order = np.lexsort((guids, dates))
    assert (order == np.arange(len(order))).all(), "sorted by activityDate then marketoGUID"
    assert len(np.unique(guids)) == len(guids)
    assert state.next_activity_guid > guids.max()
    assert pc.all(pc.is_in(acts["leadId"], value_set=state.people["id"])).as_py()
    assert dates.max() <= NOW.timestamp()
    created = dict(
        zip(state.people["id"].to_pylist(), seconds(state.people["createdAt"]).tolist(), strict=True)
    )
    lead_created = np.array([created[x] for x in acts["leadId"].to_pylist()])
    assert (dates >= lead_created).all(), "no activity before its person was created"
    mean = acts.num_rows / state.people.num_rows
    assert 17 < mean < 23  # activities_per_person = 20


def test_every_person_has_exactly_one_new_lead_at_creation(state: InstanceState) -> None:
    new_lead = state.activities.filter(pc.equal(state.activities["activityTypeId"], catalog.NEW_LEAD))
    assert sorted(new_lead["leadId"].to_pylist()) == state.people["id"].to_pylist()
    assert new_lead["primaryAttributeValueId"].equals(new_lead["leadId"])
    by_lead = new_lead.sort_by("leadId")
    assert seconds(by_lead["activityDate"]).tolist() == seconds(state.people["createdAt"]).tolist()


def test_all_default_types_occur_and_are_declared(state: InstanceState) -> None:
    present = set(pc.unique(state.activities["activityTypeId"]).to_pylist())
    assert present >= DEFAULT_TYPES | {9, 12, 13, 24, 104}
    assert present <= {t["id"] for t in state.activity_types}


def test_instances_without_interesting_moments_lack_type_46_everywhere() -> None:
    lean = generate(DataSettings(people=300, interesting_moments=False), NOW)
    assert 46 not in set(pc.unique(lean.activities["activityTypeId"]).to_pylist())
    assert 46 not in {t["id"] for t in lean.activity_types}
    assert 46 in {t["id"] for t in catalog.ACTIVITY_TYPES}


def test_primary_attributes_follow_marketo_semantics(state: InstanceState) -> None:
    acts = state.activities.select(
        ["activityTypeId", "primaryAttributeValueId", "primaryAttributeValue", "campaignId"]
    ).to_pylist()
    program_names = set(state.programs["name"].to_pylist())
    programs = dict(zip(state.programs["id"].to_pylist(), state.programs["name"].to_pylist(), strict=True))
    for row in acts:
        kind, value = row["activityTypeId"], row["primaryAttributeValue"]
        if kind in (*catalog.EMAIL_TYPES, catalog.UNSUBSCRIBE_EMAIL):
            program, _, asset = value.rpartition(".")
            assert program in program_names and asset.startswith("Email"), value
            assert row["campaignId"] is not None
        elif kind == 2:
            assert value in {
                "Contact Us Form",
                "Newsletter Signup",
                "Demo Request",
                "Whitepaper Download",
            } or (value.endswith(".Form") and value.removesuffix(".Form") in program_names), value
        elif kind == 22:
            assert (row["primaryAttributeValueId"], value) == (
                FIELD_IDS["leadScore"],
                "Lead Score",
            )
        elif kind == 104:
            assert programs[row["primaryAttributeValueId"]] == value
        elif kind == 13:
            assert value in {"Job Title", "Country", "Company Name"}
        elif kind in (1, 3):
            assert value and row["campaignId"] is None


def test_memberships_are_consistent_with_channels_and_104_activities(state: InstanceState) -> None:
    channel_of = dict(
        zip(state.programs["id"].to_pylist(), state.programs["channel"].to_pylist(), strict=True)
    )
    statuses = {
        c["name"]: {s["name"]: s["success"] for s in c["progressionStatuses"]} for c in state.channels
    }
    members = state.memberships.to_pylist()
    assert len(members) > state.people.num_rows * 0.8
    keys = {(m["programId"], m["leadId"]) for m in members}
    assert len(keys) == len(members)
    for member in members:
        valid = statuses[channel_of[member["programId"]]]
        assert member["statusName"] in valid and member["statusName"] != "Not in Program"
        assert member["reachedSuccess"] == valid[member["statusName"]]
        assert (member["reachedSuccessDate"] is not None) == member["reachedSuccess"]
    assert any(m["acquiredBy"] for m in members) and not all(m["acquiredBy"] for m in members)

    status = state.activities.filter(pc.equal(state.activities["activityTypeId"], catalog.CHANGE_STATUS))
    assert status.num_rows == len(members)
    rendered = [json.loads(t) for t in render_attributes(state, status).to_pylist()]
    logged = {
        (p, lead): a
        for p, lead, a in zip(
            status["primaryAttributeValueId"].to_pylist(), status["leadId"].to_pylist(), rendered, strict=True
        )
    }
    for member in members:
        attrs = logged[(member["programId"], member["leadId"])]
        assert attrs["Old Status"] == "Not in Program"
        assert attrs["New Status"] == member["statusName"]
        assert attrs["Success"] == member["reachedSuccess"]
        assert attrs["Acquired By"] == member["acquiredBy"]


def test_channels_and_programs_have_the_asset_shape(state: InstanceState) -> None:
    doc = json.loads((FIXTURES / "channels/doc_channels__browse__response.json").read_text())["result"][0]
    names = {c["name"] for c in state.channels}
    assert names >= {
        "Webinar",
        "Live Event",
        "Email Blast",
        "Nurture",
        "Content",
        "Online Advertising",
        "Tradeshow",
    }
    for channel in state.channels:
        assert set(channel) == set(doc)
        assert set(channel["progressionStatuses"][0]) == set(doc["progressionStatuses"][0])
        assert channel["progressionStatuses"][0] == {
            "name": "Not in Program",
            "step": 0,
            "description": None,
            "hidden": False,
            "success": False,
        }
        assert any(s["success"] for s in channel["progressionStatuses"])
    programs = state.programs.to_pylist()
    assert {p["type"] for p in programs} == {"Default", "Event", "Event with Webinar", "Engagement", "Email"}
    assert {p["workspace"] for p in programs} == {"Default"}
    assert all(p["folderId"] and p["folderName"] for p in programs)


def test_required_campaigns_exist_with_their_tokens(state: InstanceState) -> None:
    doc = json.loads((FIXTURES / "campaigns/doc_smart-campaigns__browse__response.json").read_text())[
        "result"
    ][0]
    by_name = {c["name"]: c for c in state.campaigns}
    welcome = by_name["Molequle Welcome Trigger"]
    assert (welcome["type"], welcome["isActive"], welcome["isRequestable"]) == ("trigger", True, True)
    own = {
        t["name"] for t in my_tokens.tokens_of(state, "Program", welcome["parentProgramId"], inherited=False)
    }
    assert {"Welcome Message", "Offer URL"} <= own
    newsletter = by_name["Molequle Quarterly Newsletter"]
    assert newsletter["type"] == "batch"
    assert "Edition" in my_tokens.token_names(state, "Program", newsletter["parentProgramId"])
    assert any(c["type"] == "trigger" and not c["isActive"] for c in state.campaigns)
    assert any(c["type"] == "trigger" and c["isActive"] and not c["isRequestable"] for c in state.campaigns)
    program_ids = set(state.programs["id"].to_pylist())
    for campaign in state.campaigns:
        assert set(doc) <= set(campaign), set(doc) - set(campaign)
        assert campaign["parentProgramId"] in program_ids
        assert campaign["status"] in {
            "Inactive",
            "Single Run",
            "Invalid",
            "Recurring Run",
            "Active",
            "Requested",
            "Never Run",
        }


def test_smart_and_static_lists(state: InstanceState) -> None:
    by_name = {s["name"]: s for s in state.smart_lists}
    everyone = smart_list_lead_ids(state, by_name[catalog.ALL_PEOPLE_SMART_LIST])
    subscribed = state.people.filter(pc.invert(state.people["unsubscribed"]))["id"]
    assert everyone.to_pylist() == subscribed.to_pylist()
    assert len(everyone) > 0.85 * state.people.num_rows
    assert len(state.smart_lists) >= 3
    people = set(state.people["id"].to_pylist())
    add_to_list = state.activities.filter(pc.equal(state.activities["activityTypeId"], catalog.ADD_TO_LIST))
    for static in state.static_lists:
        assert static["lead_ids"] and set(static["lead_ids"]) <= people
        logged = add_to_list.filter(pc.equal(add_to_list["primaryAttributeValueId"], static["id"]))
        assert sorted(logged["leadId"].to_pylist()) == sorted(static["lead_ids"])
        assert set(logged["primaryAttributeValue"].to_pylist()) == {static["name"]}


def test_data_carries_csv_hostile_characters(state: InstanceState) -> None:
    titles = "".join(pc.drop_null(state.people["title"]).to_pylist())
    forms = state.activities.filter(pc.equal(state.activities["activityTypeId"], 2))
    form_values = "".join(
        json.loads(t).get("Form Fields", "") for t in render_attributes(state, forms).to_pylist()
    )
    for char in ('"', ",", "\n", "\r", "\x00"):
        assert char in titles, repr(char)
        assert char in form_values, repr(char)


def test_activity_types_match_the_captured_types_json() -> None:
    captured = [
        json.loads(line)["data"]
        for line in (FIXTURES / "activities-rest/real_airbyte__activity_types_records.jsonl")
        .read_text()
        .splitlines()
    ]
    ours = {t["id"]: t for t in catalog.ACTIVITY_TYPES}
    for real in captured:
        assert ours[real["id"]] == real, real["id"]
    assert set(ours) >= {1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 22, 24, 25, 27, 32, 37, 46, 47, 104, 113, 123}


def test_bad_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="now"):
        generate(DataSettings(people=10), datetime(2026, 1, 1))
