"""The churn driver changes everything it reports, deterministically, through the mutation API."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from molequle_dagster.sandbox import churn
from molequle_dagster.sandbox.config import DataSettings
from molequle_dagster.sandbox.generator import generate
from molequle_dagster.sandbox.model import InstanceState
from molequle_dagster_tests.sandbox.instance_checks import BUILT, LATER, assert_consistent, small_instance


@pytest.fixture
def state() -> InstanceState:
    return small_instance()


def test_same_seed_gives_the_same_churn() -> None:
    one, two = (generate(DataSettings(people=300), BUILT) for _ in range(2))
    rates = churn.ChurnRates(status_renames=1, account_updates=0.1)
    report_one = churn.apply_churn(one, LATER, rates, seed=5)
    report_two = churn.apply_churn(two, LATER, rates, seed=5)
    assert report_one == report_two
    for name in ("people", "activities", "memberships", "programs", "deleted_leads", "merges", "companies",
                 "named_accounts"):
        assert getattr(one, name).equals(getattr(two, name)), name
    assert one.channels == two.channels and one.static_lists == two.static_lists


def test_apply_churn_changes_everything_it_reports_and_stays_consistent(state: InstanceState) -> None:
    before = state.people.num_rows
    rates = {"status_renames": 1, "merges": 0.01, "deletions": 0.01, "account_updates": 0.1}
    report = churn.apply_churn(state, LATER, rates, seed=1)
    counts = report.counts()
    assert all(counts[k] > 0 for k in counts), counts
    assert (
        state.people.num_rows == before + counts["new_people"] - counts["merged_away"] - counts["deletions"]
    )
    assert_consistent(state)
    assert set(report.new_program_ids) <= set(state.programs["id"].to_pylist())
    deleted = set(state.deleted_leads["leadId"].to_pylist())
    assert deleted == set(report.deleted_lead_ids)
    assert {(w, loser) for w, losers in report.merges for loser in losers} == set(
        zip(state.merges["winnerId"].to_pylist(), state.merges["loserId"].to_pylist(), strict=True)
    )
    for table, key, edited in (("companies", "id", report.updated_company_ids),
                               ("named_accounts", "marketoGUID", report.updated_named_account_ids)):
        rows = [r for r in getattr(state, table).to_pylist() if r[key] in set(edited)]
        assert len(rows) == len(edited) and all(r["updatedAt"] == LATER for r in rows), table
    channel, old, new = report.renamed_statuses[0]
    names = [s["name"] for c in state.channels if c["name"] == channel for s in c["progressionStatuses"]]
    assert new in names and old not in names


def test_rates_are_validated() -> None:
    with pytest.raises(ValidationError, match="new_people"):
        churn.ChurnRates(new_people=-1)
    with pytest.raises(ValidationError, match="surprise"):
        churn.ChurnRates.model_validate({"surprise": 1})
