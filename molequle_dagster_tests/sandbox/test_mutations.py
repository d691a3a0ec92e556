"""The mutation API keeps every dependent table consistent: people, activities, memberships, lists, merges,
deletions, statuses."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from molequle_dagster.sandbox import mutations
from molequle_dagster.sandbox.lead_fields import FIELD_IDS
from molequle_dagster.sandbox.model import InstanceState
from molequle_dagster.sandbox.truth import activities_truth, memberships_truth, people_truth
from molequle_dagster_tests.sandbox.instance_checks import (
    BUILT,
    LATER,
    assert_consistent,
    last_activity,
    person,
    small_instance,
)


@pytest.fixture
def state() -> InstanceState:
    return small_instance()


def test_new_people_get_a_new_lead_activity(state: InstanceState) -> None:
    first_id = state.next_lead_id
    ids = mutations.add_people(state, 3, LATER, seed=9)
    assert ids == [first_id, first_id + 1, first_id + 2]
    assert state.next_lead_id == first_id + 3
    for lead_id in ids:
        row = person(state, lead_id)
        assert row["createdAt"] == row["updatedAt"] == row["_modifiedAt"] == LATER
    new_lead = state.activities.filter(
        pc.and_(
            pc.equal(state.activities["activityTypeId"], 12),
            pc.is_in(state.activities["leadId"], pa.array(ids)),
        )
    )
    assert sorted(new_lead["leadId"].to_pylist()) == ids
    emails = pc.drop_null(state.people["email"]).to_pylist()
    assert len(set(emails)) == len(emails)
    assert_consistent(state)


def test_update_attribute_bumps_timestamps_and_logs_change_data_value(state: InstanceState) -> None:
    before = person(state, 7)
    mutations.update_attribute(state, 7, "title", 'Chief "Data", Officer', LATER)
    after = person(state, 7)
    assert after["title"] == 'Chief "Data", Officer'
    assert after["updatedAt"] == after["_modifiedAt"] == LATER
    logged = last_activity(state)
    assert (logged["leadId"], logged["activityTypeId"], logged["primaryAttributeValue"]) == (
        7,
        13,
        "Job Title",
    )
    assert logged["primaryAttributeValueId"] == FIELD_IDS["title"]
    assert logged["attributes"]["Old Value"] == before["title"]
    assert logged["attributes"]["New Value"] == 'Chief "Data", Officer'


def test_custom_field_changes_move_only_the_hidden_modified_time(state: InstanceState) -> None:
    before = person(state, 8)
    mutations.update_attribute(state, 8, "molequlePersonId", "mq-8", LATER)
    after = person(state, 8)
    assert after["molequlePersonId"] == "mq-8"
    assert after["updatedAt"] == before["updatedAt"]
    assert after["_modifiedAt"] == LATER


def test_score_changes_log_change_score(state: InstanceState) -> None:
    old = person(state, 9)["leadScore"]
    mutations.update_attribute(state, 9, "leadScore", old + 15, LATER)
    logged = last_activity(state)
    assert (logged["activityTypeId"], logged["primaryAttributeValue"]) == (22, "Lead Score")
    assert logged["attributes"] == {
        "Change Value": "+15",
        "Old Value": old,
        "New Value": old + 15,
        "Reason": mutations.REASON,
    }


@pytest.mark.parametrize(
    ("lead_id", "field", "value", "message"),
    [
        (1, "nickname", "x", "field: 'nickname' is not a writable lead field"),
        (1, "createdAt", "x", "field: 'createdAt' is not a writable"),
        (1, "leadScore", "high", "value: field 'leadScore' expects an integer"),
        (1, "unsubscribed", "yes", "value: field 'unsubscribed' expects a boolean"),
        (1, "email", "not-an-email", "value: field 'email' expects an ASCII address"),
        (99_999, "title", "CEO", "lead_id: no current person with id"),
    ],
)
def test_bad_edits_are_rejected_with_the_field_named(
    state: InstanceState, lead_id: int, field: str, value: object, message: str
) -> None:
    rows = state.activities.num_rows
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        mutations.update_attribute(state, lead_id, field, value, LATER)
    assert state.activities.num_rows == rows


def test_change_email_keeps_the_id(state: InstanceState) -> None:
    mutations.change_email(state, 11, "renamed.person@example.com", LATER)
    assert person(state, 11)["email"] == "renamed.person@example.com"
    logged = last_activity(state)
    assert (logged["leadId"], logged["primaryAttributeValue"]) == (11, "Email Address")


def test_merge_moves_history_memberships_and_lists_to_the_winner(state: InstanceState) -> None:
    members = state.memberships.to_pylist()
    winner, loser = members[0]["leadId"], members[-1]["leadId"]
    if winner == loser:
        loser = next(m["leadId"] for m in members if m["leadId"] != winner)
    mutations.update_attribute(state, winner, "country", None, LATER)
    loser_country = person(state, loser)["country"]
    programs_before = {m["programId"] for m in members if m["leadId"] in (winner, loser)}
    acts_before = pc.sum(pc.is_in(state.activities["leadId"], pa.array([winner, loser]))).as_py()
    bystander = next(i for i in state.people["id"].to_pylist() if i not in (winner, loser))
    state.static_lists[0]["lead_ids"] = [loser, winner, bystander]

    mutations.merge_leads(state, winner, [loser], LATER)

    assert pc.sum(pc.equal(state.people["id"], loser)).as_py() == 0
    assert person(state, winner)["country"] == loser_country, (
        "the winner's empty field is filled from the loser"
    )
    assert pc.sum(pc.equal(state.activities["leadId"], winner)).as_py() == acts_before + 1
    after = {m["programId"] for m in state.memberships.to_pylist() if m["leadId"] == winner}
    assert after == programs_before
    assert state.static_lists[0]["lead_ids"] == [winner, bystander]
    assert state.merges.to_pylist() == [{"winnerId": winner, "loserId": loser, "mergedAt": LATER}]
    logged = last_activity(state)
    assert (logged["activityTypeId"], logged["leadId"], logged["primaryAttributeValueId"]) == (
        32,
        winner,
        winner,
    )
    assert logged["attributes"]["Merge IDs"] == [loser]
    assert_consistent(state)


def test_merge_rejects_overlapping_ids(state: InstanceState) -> None:
    with pytest.raises(ValueError, match="loser_ids"):
        mutations.merge_leads(state, 5, [5], LATER)
    with pytest.raises(ValueError, match="loser_ids"):
        mutations.merge_leads(state, 5, [], LATER)


def test_delete_removes_the_person_everywhere_and_records_it(state: InstanceState) -> None:
    lead = state.memberships["leadId"][0].as_py()
    name = f"{person(state, lead)['firstName']} {person(state, lead)['lastName']}"
    mutations.delete_lead(state, lead, LATER)
    assert pc.sum(pc.equal(state.people["id"], lead)).as_py() == 0
    assert pc.sum(pc.equal(state.memberships["leadId"], lead)).as_py() == 0
    assert pc.sum(pc.equal(state.activities["leadId"], lead)).as_py() == 0
    row = state.deleted_leads.to_pylist()[-1]
    assert (row["leadId"], row["deletedAt"], row["name"]) == (lead, LATER, name)
    with pytest.raises(ValueError, match="lead_id"):
        mutations.delete_lead(state, lead, LATER)
    assert_consistent(state)


def test_membership_status_upsert_logs_104(state: InstanceState) -> None:
    program = state.programs.to_pylist()[0]
    statuses = [
        s for c in state.channels if c["name"] == program["channel"] for s in c["progressionStatuses"]
    ]
    outsider = next(
        i
        for i in state.people["id"].to_pylist()
        if not pc.any(
            pc.and_(
                pc.equal(state.memberships["programId"], program["id"]),
                pc.equal(state.memberships["leadId"], i),
            )
        ).as_py()
    )
    assert mutations.set_membership_status(state, program["id"], outsider, statuses[1]["name"], LATER)
    logged = last_activity(state)
    assert (logged["activityTypeId"], logged["primaryAttributeValueId"], logged["primaryAttributeValue"]) == (
        104,
        program["id"],
        program["name"],
    )
    assert logged["attributes"]["Old Status"] == "Not in Program"
    assert logged["attributes"]["New Status"] == statuses[1]["name"]

    success = next(s["name"] for s in statuses if s["success"])
    later = LATER + timedelta(minutes=5)
    assert mutations.set_membership_status(state, program["id"], outsider, success, later)
    member = [
        m
        for m in memberships_truth(state).to_pylist()
        if (m["programId"], m["leadId"]) == (program["id"], outsider)
    ]
    assert len(member) == 1
    assert (member[0]["statusName"], member[0]["reachedSuccess"], member[0]["updatedAt"]) == (
        success,
        True,
        later,
    )
    assert member[0]["reachedSuccessDate"] == later and member[0]["membershipDate"] == LATER
    assert last_activity(state)["attributes"]["Old Status"] == statuses[1]["name"]

    rows = state.activities.num_rows
    assert not mutations.set_membership_status(state, program["id"], outsider, success, later)
    assert state.activities.num_rows == rows
    with pytest.raises(ValueError, match="status_name: 'Bogus' is not a status"):
        mutations.set_membership_status(state, program["id"], outsider, "Bogus", later)
    with pytest.raises(ValueError, match="program_id"):
        mutations.set_membership_status(state, 1, outsider, success, later)


def test_status_rename_moves_members_and_keeps_history(state: InstanceState) -> None:
    member = state.memberships.to_pylist()[0]
    channel = state.programs.filter(pc.equal(state.programs["id"], member["programId"]))["channel"][0].as_py()
    old = member["statusName"]
    history = activities_truth(state, [104], BUILT - timedelta(days=800), BUILT, BUILT, False)
    mutations.rename_status(state, channel, old, f"{old} v2", LATER)

    names = [s["name"] for c in state.channels if c["name"] == channel for s in c["progressionStatuses"]]
    assert f"{old} v2" in names and old not in names
    renamed = next(
        m
        for m in state.memberships.to_pylist()
        if (m["programId"], m["leadId"]) == (member["programId"], member["leadId"])
    )
    assert renamed["statusName"] == f"{old} v2"
    assert renamed["updatedAt"] == member["updatedAt"], "the member record itself did not change"
    assert activities_truth(state, [104], BUILT - timedelta(days=800), BUILT, BUILT, False)[
        "attributes"
    ].equals(history["attributes"]), "past activities keep the names they were logged with"
    with pytest.raises(ValueError, match="old: channel"):
        mutations.rename_status(state, channel, old, "anything", LATER)
    with pytest.raises(ValueError, match="channel_name"):
        mutations.rename_status(state, "No Such Channel", "a", "b", LATER)


def test_add_activities_generates_typed_rows(state: InstanceState) -> None:
    guids = mutations.add_activities(state, [1, 2, 3], [10, 2, 1], LATER, seed=4)
    added = state.activities.slice(state.activities.num_rows - 3).to_pylist()
    assert [a["marketoGUID"] for a in added] == guids
    assert [(a["leadId"], a["activityTypeId"]) for a in added] == [(1, 10), (2, 2), (3, 1)]
    assert all(a["primaryAttributeValue"] for a in added)
    with pytest.raises(ValueError, match="type_ids"):
        mutations.add_activities(state, [1], [104], LATER, seed=1)
    with pytest.raises(ValueError, match="type_ids"):
        mutations.add_activities(state, [1, 2], [10, 2, 1], LATER, seed=1)


def test_activities_added_in_the_past_keep_the_table_sorted(state: InstanceState) -> None:
    mutations.add_activities(state, [1], 10, BUILT - timedelta(days=3), seed=2)
    assert_consistent(state)


def test_people_truth_validates_fields(state: InstanceState) -> None:
    assert people_truth(state, ["id", "email"]).column_names == ["id", "email"]
    with pytest.raises(ValueError, match="fields"):
        people_truth(state, ["id", "nope"])
