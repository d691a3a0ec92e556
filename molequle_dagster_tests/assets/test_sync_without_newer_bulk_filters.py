"""An instance without Marketo's newer bulk filters ("Corona", docs/marketo.md §6.5): smart-list and
updatedAt filters answer 1035. It also lacks the Interesting Moment activity type, which must be a
warning, not a failure.

The population falls back to createdAt sweeps (everyone, since a smart list cannot be evaluated
client-side) and the updates to the lead-changes feed; both say so in metadata, and the data stays right.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pyarrow.compute as pc
import pytest

from molequle_dagster.conventions import step_totals
from molequle_dagster.sandbox import truth
from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sync_runner import run_sync
from molequle_dagster_tests.conftest import fast_settings_dict, open_sync_env

FIELDS = ["id", "email", "firstName", "lastName", "company"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("no-corona")
    config = SandboxConfig.for_profile("fast")
    config.data.people = 150
    config.data.programs = 4
    config.data.history_days = 300
    config.bulk.unsupported_filters = ["updatedAt", "smartListId", "smartListName"]
    config.data.interesting_moments = False
    sweep_start = (datetime.now(UTC) - timedelta(days=400)).date().isoformat()
    with open_sync_env(root, config, fast_settings_dict(people__sweep_start=sweep_start)) as synced:
        yield synced.sandbox, synced.defs, synced.instance, synced.lake


def _assert_people_equal_all_leads(sandbox, lake) -> None:
    people = lake.read_current("people").select(FIELDS).sort_by("id")
    expected = truth.people_truth(sandbox.control.state, FIELDS)
    assert people["id"].to_pylist() == expected["id"].to_pylist()
    for field in FIELDS:
        assert people[field].to_pylist() == expected[field].to_pylist(), field


def test_fallbacks_keep_people_equal_to_marketo(env) -> None:
    sandbox, defs, instance, lake = env
    report = run_sync(defs, instance)
    assert report.success, report.failures
    population = instance.get_latest_materialization_event(dg.AssetKey("marketo_people_population"))
    assert "createdAt sweeps" in population.asset_materialization.metadata["method"].value
    _assert_people_equal_all_leads(sandbox, lake)
    types = instance.get_latest_materialization_event(dg.AssetKey("marketo_activity_types"))
    assert types.asset_materialization.metadata["missing_types"].value == ["Interesting Moment"]
    assert lake.read_table("marketo_activities").num_rows > 0

    churn = sandbox.control.apply_churn(
        {
            "new_people": 0.05,
            "attribute_updates": 0.1,
            "email_changes": 0.05,
            "merges": 0.02,
            "deletions": 0.02,
        },
        seed=3,
    )
    assert churn.email_changed_ids and churn.new_lead_ids
    report = run_sync(defs, instance)
    assert report.success, report.failures
    updates = instance.get_latest_materialization_event(dg.AssetKey("marketo_people_updates"))
    totals = step_totals(instance.get_run_by_id(updates.run_id))["marketo_people_updates"]
    assert totals["read"] == "rest"  # without the bulk updatedAt filter, changes come through REST
    _assert_people_equal_all_leads(sandbox, lake)
    changed = churn.email_changed_ids[0]
    row = lake.read_current("people").filter(pc.equal(lake.read_current("people")["id"], changed))
    assert row.num_rows == 1
