"""`run_sync`: an interrupted initial sync resumes where it stopped, newest days first."""

from __future__ import annotations

import dagster as dg

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sync_runner import INITIAL_STATE, missing_ranges, run_sync
from molequle_dagster_tests.conftest import fast_settings_dict, open_sync_env


def test_missing_ranges_are_runs_of_at_most_size_days_newest_first() -> None:
    keys = [f"2026-01-{d:02d}" for d in range(1, 11)]
    missing = [keys[0], keys[1], keys[2], keys[5], keys[6], keys[7], keys[8]]
    assert missing_ranges(missing, keys, 3) == [
        ("2026-01-09", "2026-01-09"),
        ("2026-01-06", "2026-01-08"),
        ("2026-01-01", "2026-01-03"),
    ]
    assert missing_ranges([], keys, 3) == []


def test_an_interrupted_initial_sync_resumes_the_missing_history(tmp_path) -> None:
    config = SandboxConfig.for_profile("fast")
    config.data.people = 80
    config.data.programs = 3
    with open_sync_env(tmp_path, config, fast_settings_dict()) as env:
        defs, lake, instance = env.defs, env.lake, env.instance
        # the second history export dies on Marketo's daily quota
        env.control.inject_fault("POST /bulk/v1/activities/export/create.json", "daily_quota", nth=2)
        first = run_sync(defs, instance)
        assert not first.success and first.kind == "initial"
        assert not lake.read_state(INITIAL_STATE)
        second = run_sync(defs, instance)
        assert second.success, second.failures
        assert second.kind == "initial (resumed)"
        asset = defs.resolve_assets_def("activities")
        with dg.partition_loading_context():
            keys = asset.partitions_def.get_partition_keys()
        assert all(lake.exists(lake.partition_path("activities", k)) for k in keys)
        assert lake.read_state(INITIAL_STATE)["completed_at"]
        third = run_sync(defs, instance)
        assert third.success and third.kind == "tick"
