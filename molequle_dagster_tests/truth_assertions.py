"""Lake == Marketo's ground truth: the assertions shared by the in-process sync tests and the end-to-end
tests of the deployment. Each takes the lake and a sandbox `InstanceState` (in-process, or a snapshot
taken from the sandbox's own process), so both kinds of test check the same thing the same way."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.lake import Lake
from molequle_dagster.partitions import partition_window
from molequle_dagster.sandbox import truth
from molequle_dagster.sandbox.model import InstanceState
from molequle_dagster.sync import overlay
from molequle_dagster.views import lifecycle_maps

PERSON_FIELDS = ["id", "email", "firstName", "lastName", "title", "company", "country"]
SMART_LIST = "All People for Molequle"  # the packaged settings' smart list
# The packaged settings' activity types (Email Open … Score Change), by Marketo id
ACTIVITY_TYPE_IDS = (10, 11, 8, 27, 6, 7, 46, 2, 1, 3, 22)
# One round of churn before "a tick after churn": every kind of change a tick must carry into the lake.
TICK_CHURN = {
    "new_people": 0.02,
    "attribute_updates": 0.05,
    "email_changes": 0.02,
    "merges": 0.01,
    "deletions": 0.01,
    "new_activities_per_person": 0.5,
    "program_status_changes": 0.05,
    "new_programs": 1,
}


def expected_people_ids(state: InstanceState, since: datetime) -> set[int]:
    """Smart-list members, plus anyone Marketo changed since `since` (picked up by the tick)."""
    smart_list = next(s for s in state.smart_lists if s["name"] == SMART_LIST)
    members = set(truth.smart_list_lead_ids(state, smart_list).to_pylist())
    changed = state.people.filter(
        pc.greater_equal(state.people["_modifiedAt"], pa.scalar(since, pa.timestamp("s", tz="UTC")))
    )
    return members | set(changed["id"].to_pylist())


def assert_people_match_truth(lake: Lake, state: InstanceState, since: datetime) -> pa.Table:
    people = lake.read_current("people")
    assert people is not None, "the lake has no people table"
    ids = people["id"].to_pylist()
    assert len(ids) == len(set(ids)), "people ids must be unique"
    assert set(ids) == expected_people_ids(state, since)
    expected = truth.people_truth(state, PERSON_FIELDS)
    expected = expected.filter(pc.is_in(expected["id"], value_set=people["id"].combine_chunks()))
    ours = people.select(PERSON_FIELDS).sort_by("id")
    for field in PERSON_FIELDS:
        assert ours[field].to_pylist() == expected[field].to_pylist(), field
    return people


def assert_activities_match_truth(
    lake: Lake,
    state: InstanceState,
    now: datetime,
    days: Sequence[str] | None = None,
    type_ids: Sequence[int] = ACTIVITY_TYPE_IDS,
) -> pa.Table:
    """The lake's activities of `days` (default: every day it holds, up to `now`) are exactly Marketo's:
    no duplicates, no gaps, the configured groups."""
    keys = list(days) if days is not None else lake.days("marketo_activities").days()
    assert keys, "the lake has no activities"
    start = partition_window(keys[0])[0]
    # The bulk window is inclusive of its end (docs/marketo.md §6.4): stop a second before the day after the
    # last one.
    end = min(now, partition_window(keys[-1])[1] - timedelta(seconds=1)) if days is not None else now
    expected = truth.activities_truth(state, list(type_ids), start, end, now, enforce_retention=True)
    raw = lake.days("marketo_activities").read_days(keys)
    assert raw is not None, f"the lake has no activities for {keys[0]} .. {keys[-1]}"
    # What Molequle reads as `activities`: the configured types, deletions and merges applied on read.
    configured = raw.filter(
        pc.is_in(raw["activityTypeId"].cast(pa.int32()), value_set=pa.array(type_ids, pa.int32()))
    )
    ours = overlay.apply(configured, *lifecycle_maps(lake))
    guids = ours["marketoGUID"].to_pylist()
    assert len(guids) == len(set(guids)), "activities must be deduplicated by marketoGUID"
    assert set(guids) == {str(g) for g in expected["marketoGUID"].to_pylist()}
    groups = dict(zip(ours["activityTypeId"].to_pylist(), ours["activity_group"].to_pylist(), strict=True))
    assert groups[10] == "email" and groups[22] == "scoring"
    return ours


def assert_memberships_match_truth(lake: Lake, state: InstanceState) -> None:
    ours = lake.read_current("memberships")
    held = lake.read_current("membership_retry")
    assert ours is not None and held is not None, "the lake has no memberships / membership_retry table"
    expected = truth.memberships_truth(state)
    got = {
        (r["program_id"], r["lead_id"]): r["status_name"]
        for r in ours.select(["program_id", "lead_id", "status_name"]).to_pylist()
    }
    got |= {
        (r["program_id"], r["lead_id"]): r["status_name"]
        for r in held.select(["program_id", "lead_id", "status_name"]).to_pylist()
    }
    want = {
        (r["programId"], r["leadId"]): r["statusName"]
        for r in expected.select(["programId", "leadId", "statusName"]).to_pylist()
    }
    assert got == want


ACCOUNT_FIELDS = {  # accounts column -> (sandbox company column, sandbox named-account column)
    "company": ("company", "name"),
    "industry": ("industry", "industry"),
    "numberOfEmployees": ("numberOfEmployees", "numberOfEmployees"),
    "billingCountry": ("billingCountry", "country"),
}


def assert_accounts_match_truth(lake: Lake, state: InstanceState) -> pa.Table:
    """Every account the lake holds carries the values its company or named account has in Marketo now,
    and every company a current person points at is there."""
    accounts = lake.read_current("accounts")
    assert accounts is not None, "the lake has no accounts table"
    sources = {
        "company": (state.companies, "id", 0, "company:"),
        "named_account": (state.named_accounts, "marketoGUID", 1, "named:"),
    }
    for source, (rows, key, side, prefix) in sources.items():
        ours = accounts.filter(pc.equal(accounts["source"], source))
        theirs = {f"{prefix}{r[key]}": r for r in rows.to_pylist()}
        wrong = []
        for row in ours.to_pylist():
            truth_row = theirs.get(row["account_id"])
            assert truth_row is not None, f"{row['account_id']} is not in Marketo"
            for column, names in ACCOUNT_FIELDS.items():
                if row[column] != truth_row[names[side]]:
                    wrong.append((row["account_id"], column, row[column], truth_row[names[side]]))
        assert not wrong, f"{len(wrong)} {source} values differ from Marketo, e.g. {wrong[:3]}"
    people = lake.read_current("people", ["externalCompanyId"])
    pointed = {c for c in people["externalCompanyId"].to_pylist() if c}
    companies = state.companies
    by_external = dict(
        zip(companies["externalCompanyId"].to_pylist(), companies["id"].to_pylist(), strict=True)
    )
    expected = {f"company:{by_external[c]}" for c in pointed if c in by_external}
    missing = expected - set(accounts["account_id"].to_pylist())
    assert not missing, f"{len(missing)} companies of current people are missing, e.g. {sorted(missing)[:3]}"
    return accounts
