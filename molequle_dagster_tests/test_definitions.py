"""Definitions load without secrets, every job and schedule resolves, and storage works on PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from molequle_dagster.definitions import build_definitions
from molequle_dagster.jobs import DAILY_JOB, INITIAL_JOB, SYNC_JOB
from molequle_dagster.partitions import history_start
from molequle_dagster.settings import parse_settings
from molequle_dagster.sync.plan import RANGE_END, RANGE_START, mark_first_sync_done
from molequle_dagster_tests.conftest import fast_settings_dict

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def defs(monkeypatch: pytest.MonkeyPatch, tmp_path) -> dg.Definitions:
    monkeypatch.delenv("MARKETO_CLIENT_ID", raising=False)
    monkeypatch.delenv("MARKETO_CLIENT_SECRET", raising=False)
    monkeypatch.setenv("MOLEQULE_LAKE_URI", str(tmp_path / "lake"))
    return build_definitions(parse_settings(fast_settings_dict()))


def test_definitions_load_and_validate_without_marketo_credentials(defs: dg.Definitions) -> None:
    dg.Definitions.validate_loadable(defs)


def test_dagster_cli_validates_the_module_without_credentials(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKETO_")}
    env["DAGSTER_HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "molequle_dagster.definitions"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_every_job_and_schedule_resolves(defs: dg.Definitions) -> None:
    names = [job.name for job in defs.jobs]
    assert {
        "marketo_sync_job",
        "marketo_daily_job",
        "marketo_initial_sync_job",
        "run_marketo_action_job",
        "marketo_write_back_job",
    } <= set(names)
    for name in names:
        assert defs.resolve_job_def(name).name == name
    for schedule in defs.schedules:
        assert defs.resolve_schedule_def(schedule.name).job_name in names


def test_sync_jobs_cover_the_sync_assets(defs: dg.Definitions) -> None:
    for name in (SYNC_JOB, DAILY_JOB, INITIAL_JOB):
        job = defs.resolve_job_def(name)
        keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
        assert {"people", "activities", "accounts", "memberships", "unified_people"} <= keys
    tick = {k.to_user_string() for k in defs.resolve_job_def(SYNC_JOB).asset_layer.executable_asset_keys}
    assert "marketo_people_population" not in tick  # the full smart-list export is daily, not per tick


def test_assets_carry_lineage_metadata(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.owners == ["team:data-engineering"], key
        assert node.kinds, key
        assert node.group_name in {"marketo", "molequle", "unification", "actions"}, key
    people_deps = {k.to_user_string() for k in graph.get(dg.AssetKey("people")).parent_keys}
    assert {"marketo_people_population", "marketo_people_updates", "person_tombstones"} <= people_deps
    memberships_deps = {k.to_user_string() for k in graph.get(dg.AssetKey("memberships")).parent_keys}
    assert {
        "marketo_programs",
        "marketo_channels",
        "marketo_activities",
        "marketo_program_members",
    } <= memberships_deps


def test_bulk_assets_share_the_two_slot_pool(defs: dg.Definitions) -> None:
    """dagster.yaml sizes every pool to 2: Marketo processes two bulk exports at a time per instance."""
    for name in (
        "marketo_activities",
        "marketo_people_updates",
        "marketo_people_population",
        "marketo_program_members",
    ):
        assert defs.resolve_assets_def(name).op.pool == "marketo_bulk", name
    assert defs.resolve_assets_def("marketo_channels").op.pool == "marketo_api"
    assert defs.resolve_assets_def("memberships").op.pool is None  # computed from the lake: no Marketo call


def test_partitions_are_daily_month_anchored_and_include_today(defs: dg.Definitions) -> None:
    partitions = defs.resolve_assets_def("marketo_activities").partitions_def
    now = datetime.now(UTC)
    with dg.partition_loading_context(effective_dt=now):
        keys = partitions.get_partition_keys()
    assert keys[-1] == now.date().isoformat()  # today is a partition (the open day)
    assert keys[0] == history_start(62, now.date()).isoformat()
    assert history_start(62, date(2026, 11, 28)) == date(2026, 8, 1)  # 62 days before 11-01, month floor
    assert history_start(730, date(2026, 11, 28)) == date(2024, 11, 1)
    policy = defs.resolve_assets_def("marketo_activities").backfill_policy
    assert policy.max_partitions_per_run == 93  # three 31-day export windows keep both export slots busy


def test_ticks_wait_for_the_first_sync_then_target_today_and_the_close_targets_yesterday(defs) -> None:
    lake = defs.resources["lake"].lake
    tick = defs.resolve_schedule_def("marketo_sync_schedule")
    assert tick.cron_schedule == "*/10 * * * *"
    when = datetime.now(UTC).replace(hour=10, minute=30, second=0, microsecond=0)
    with dg.instance_for_test() as instance:
        skipped = tick(dg.build_schedule_context(scheduled_execution_time=when, instance=instance))
        assert isinstance(skipped, dg.SkipReason) and "waiting for the first sync" in skipped.skip_message
        mark_first_sync_done(lake, "initial-run", when)
        request = tick(dg.build_schedule_context(scheduled_execution_time=when, instance=instance))
        today = when.date().isoformat()
        assert request.tags[RANGE_END] == today  # yesterday too, while its last minutes are unread
        assert request.tags[RANGE_START] in (today, (when - timedelta(days=1)).date().isoformat())
        daily = defs.resolve_schedule_def("marketo_daily_schedule")
        when = datetime.now(UTC).replace(hour=0, minute=15, second=0, microsecond=0)
        request = daily(dg.build_schedule_context(scheduled_execution_time=when, instance=instance))
        assert request.partition_key == (when - timedelta(days=1)).date().isoformat()


def test_a_run_without_the_secret_fails_naming_the_variable(defs: dg.Definitions) -> None:
    with dg.instance_for_test() as instance, pytest.raises(dg.DagsterInvalidConfigError) as caught:
        defs.resolve_job_def(SYNC_JOB).execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("marketo_activity_types")]
        )
    assert "MARKETO_CLIENT_ID" in str(caught.value)


@pytest.mark.skipif(
    not os.environ.get("DAGSTER_PG_URL") and not os.environ.get("MOLEQULE_REQUIRE_PG"),
    reason="needs a PostgreSQL server (DAGSTER_PG_*); scripts/test.sh starts one",
)
def test_materialization_through_the_production_instance(sync_env, tmp_path) -> None:
    """Production storage: deploy/production/dagster.yaml (PostgreSQL from DAGSTER_PG_*) records a run."""
    # artifacts go to tmp, not the repo
    shutil.copy(REPO / "deploy" / "production" / "dagster.yaml", tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        result = sync_env.defs.resolve_job_def(SYNC_JOB).execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("marketo_activity_types")]
        )
        assert result.success
        event = instance.get_latest_materialization_event(dg.AssetKey("marketo_activity_types"))
        assert event is not None and event.run_id == result.run_id
        assert event.asset_materialization.metadata["dagster/row_count"].value > 0
        assert instance.get_run_by_id(result.run_id) is not None
    finally:
        instance.dispose()
