"""`run_sync`: the first sync, then history newest first; a quota stop pauses it until the reset, after
which it resumes where it stopped; what the plan picks next."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml

from molequle_dagster.definitions import build_definitions
from molequle_dagster.lake import Lake
from molequle_dagster.marketo.client import scope_key
from molequle_dagster.quota import quota_paused_until
from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster.settings import parse_settings
from molequle_dagster.sync.plan import missing_history, newest_run
from molequle_dagster.sync_runner import run_sync
from molequle_dagster_tests.conftest import fast_settings_dict, open_sync_env, point_env_at
from molequle_dagster_tests.reliability.matrix import REPO


def test_history_runs_are_the_newest_missing_days_at_most_n_long() -> None:
    keys = [f"2026-01-{d:02d}" for d in range(1, 11)]  # the 10th is today
    done = {keys[3], keys[4], keys[8]}
    missing = missing_history(keys, done)
    assert missing == [keys[7], keys[6], keys[5], keys[2], keys[1], keys[0]]
    assert newest_run(missing, keys, 2) == (keys[6], keys[7])
    assert newest_run(missing, keys, 10) == (keys[5], keys[7])
    assert newest_run(missing[3:], keys, 10) == (keys[0], keys[2])


def test_a_quota_stop_pauses_the_first_sync_until_the_reset_then_it_resumes(tmp_path) -> None:
    config = SandboxConfig.for_profile("fast")
    config.data.people = 80
    config.data.programs = 3
    with open_sync_env(tmp_path, config, fast_settings_dict()) as env:
        defs, lake, instance = env.defs, env.lake, env.instance
        # the first history export dies on Marketo's daily export quota
        env.control.inject_fault("POST /bulk/v1/activities/export/create.json", "daily_quota", nth=2)
        first = run_sync(defs, instance)
        assert not first.success and first.kind == "initial"
        marketo = defs.resources["marketo"]
        paused = quota_paused_until(marketo, instance)
        assert paused is not None
        env.control.reset_counters()
        second = run_sync(defs, instance)  # before the reset: refused without a single call
        assert not second.success and "paused until" in second.failures[0]
        assert sum(env.control.call_counts().values()) == 0
        # Midnight in the quota zone passes: the stop is over.
        store = marketo.store_for(instance)
        key = scope_key(marketo.client_config().base_url)
        for kind in ("calls", "exports"):
            if (stop := store.quota_stop(key, kind)) is not None:
                store.set_quota_stop(
                    key, kind, reason=stop.reason, resets_at=datetime.now(UTC).timestamp() - 1
                )
        third = run_sync(defs, instance)
        assert third.success, third.failures
        asset = defs.resolve_assets_def("marketo_activities")
        with dg.partition_loading_context():
            keys = asset.partitions_def.get_partition_keys()
        assert set(keys) <= set(instance.get_materialized_partitions(dg.AssetKey("marketo_activities")))
        assert all(lake.days("marketo_activities").read(k) is not None for k in keys)
        fourth = run_sync(defs, instance)
        assert fourth.success and fourth.kind == "tick" and len(fourth.runs) == 1


def _killed_at(sandbox: SandboxServer, endpoint: str, *, cut_first: bool = False) -> None:
    """Run `molequle sync`'s work in a process of its own and kill -9 it while the sandbox holds its call
    to `endpoint` (with `cut_first`, a download is cut halfway first and its Range resume is held)."""
    control = sandbox.control
    if cut_first:
        control.inject_fault(endpoint, "truncated_body", nth=1)
    control.inject_fault(endpoint, "slow", nth=2 if cut_first else 1, seconds=600)
    sync = subprocess.Popen(
        [sys.executable, "-m", "molequle_dagster_tests.reliability.matrix", "--phase"], cwd=REPO
    )
    try:
        assert sandbox.context.faults.wait_fired(len(control.faults()) - 1, 1, timeout=240)
    finally:
        sync.kill()
        sync.wait(60)
    control.clear_faults()


def test_a_first_sync_killed_twice_pays_once_and_finishes_every_table(tmp_path: Path) -> None:
    """Found by the reliability matrix. A first sync killed (kill -9) while downloading its population:
    the next `molequle sync` was a new run, so it exported the population again (reuse is per run). One
    killed once the population was in: the plan counted the first sync as done and went on to history
    and ticks, so its other tables (here the program members) stayed empty for days."""
    config = SandboxConfig.for_profile("fast")
    config.data.people = 60
    config.data.programs = 3
    settings = fast_settings_dict()
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump(settings))
    (tmp_path / "home").mkdir()
    with SandboxServer(config, port=0) as sandbox, pytest.MonkeyPatch.context() as mp:
        point_env_at(mp, sandbox, config, tmp_path)
        mp.setenv("MOLEQULE_SETTINGS", str(tmp_path / "settings.yaml"))
        mp.setenv("DAGSTER_HOME", str(tmp_path / "home"))
        mp.setenv("PYTHONPATH", str(REPO))
        _killed_at(sandbox, "GET /bulk/v1/leads/export/{id}/file.json", cut_first=True)
        _killed_at(sandbox, "POST /bulk/v1/program/members/export/create.json")
        lake = Lake(str(tmp_path / "lake"))
        assert lake.read_current("marketo_people_population") is not None
        assert lake.read_current("marketo_program_members") is None
        defs = build_definitions(parse_settings(settings))
        with dg.DagsterInstance.get() as instance:
            second = run_sync(defs, instance)
            assert second.success, second.failures
            got = lake.read_current("marketo_program_members")
            assert got is not None and got.num_rows == sandbox.control.state.memberships.num_rows > 0
            third = run_sync(defs, instance)  # finished: nothing of the first sync runs again
            assert third.success and third.kind == "tick" and len(third.runs) == 1
        population = [j for j in sandbox.control.export_jobs() if "smartList" in j["filter"]]
        assert [j["status"] for j in population] == ["Completed"]  # paid once
