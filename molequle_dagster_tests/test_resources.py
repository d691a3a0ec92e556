"""Resources: secrets come from the environment at run time and never show up in events or errors; the
client's knobs are shown in the launchpad as the client declares them; the coordination store follows the
Dagster instance."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from molequle_dagster.coordination import PostgresStore, SqliteStore, open_store
from molequle_dagster.definitions import build_definitions
from molequle_dagster.jobs import DAILY_JOB, SYNC_JOB
from molequle_dagster.marketo.config import BulkConfig, MarketoConfig, PacingConfig, RetryConfig
from molequle_dagster.resources import coordination_target
from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.settings import parse_settings
from molequle_dagster_tests.conftest import SyncEnv, fast_settings_dict, open_sync_env
from molequle_dagster_tests.coordination.backends import pg_url

REPO = Path(__file__).resolve().parents[1]

WRONG_SECRET = "wrong-s3cret-Zq81"


def test_a_bad_secret_fails_the_run_without_revealing_it(sync_env: SyncEnv, monkeypatch) -> None:
    monkeypatch.setenv("MARKETO_CLIENT_SECRET", WRONG_SECRET)
    defs = build_definitions(parse_settings(fast_settings_dict()))
    config_shown = str(defs.resolve_job_def(SYNC_JOB).resource_defs["marketo"])
    assert WRONG_SECRET not in config_shown
    result = defs.resolve_job_def(SYNC_JOB).execute_in_process(
        instance=sync_env.instance, raise_on_error=False,
        asset_selection=[dg.AssetKey("marketo_activity_types")])
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures and "credentials" in str(failures[0].event_specific_data.error).lower()
    everything = "\n".join(str(e) for e in result.all_events)
    everything += "\n".join(str(r) for r in sync_env.instance.all_logs(result.run_id))
    assert WRONG_SECRET not in everything


def test_the_resource_reads_credentials_only_when_a_run_starts(monkeypatch) -> None:
    monkeypatch.delenv("MARKETO_CLIENT_SECRET", raising=False)
    defs = build_definitions(parse_settings(fast_settings_dict()))  # loads fine without the secret
    with pytest.raises(dg.DagsterInvalidConfigError, match="MARKETO_CLIENT_SECRET"), \
            dg.instance_for_test() as instance:
        defs.resolve_job_def(SYNC_JOB).execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("marketo_activity_types")])


# --- the coordination store follows the Dagster instance ----------------------------------------------

def _usage_today(store) -> int:
    from molequle_dagster.marketo.client import scope_key
    from molequle_dagster.marketo.timeutil import quota_day

    instance = scope_key(os.environ["MARKETO_BASE_URL"])
    return store.usage(instance, quota_day(ZoneInfo("America/Chicago"))).calls


def _sync_types(env: SyncEnv, instance: dg.DagsterInstance) -> None:
    # The daily job re-reads the activity types (a tick uses the copy of the last day).
    result = env.defs.resolve_job_def(DAILY_JOB).execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("marketo_activity_types")])
    assert result.success


def test_an_embedded_instance_gets_a_sqlite_store_in_its_home(sync_env: SyncEnv, monkeypatch) -> None:
    monkeypatch.delenv("MOLEQULE_COORDINATION_URL", raising=False)
    with dg.instance_for_test() as instance:
        assert coordination_target(instance, "MOLEQULE_COORDINATION_URL") == \
            str(Path(instance.root_directory) / "molequle")
        _sync_types(sync_env, instance)
        store = open_store(Path(instance.root_directory) / "molequle")
        assert isinstance(store, SqliteStore) and _usage_today(store) > 0


def test_a_postgres_instance_shares_its_database_with_every_host(sync_env: SyncEnv, tmp_path: Path,
                                                                 monkeypatch) -> None:
    url = pg_url()
    monkeypatch.delenv("MOLEQULE_COORDINATION_URL", raising=False)
    shutil.copy(REPO / "deploy" / "production" / "dagster.yaml", tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        target = coordination_target(instance, "MOLEQULE_COORDINATION_URL")
        assert target.startswith("postgresql") and target.split("@")[-1] == url.split("@")[-1]
        store = open_store(target)
        before = _usage_today(store)
        _sync_types(sync_env, instance)
        assert isinstance(store, PostgresStore) and _usage_today(store) > before
        assert not (tmp_path / "molequle").exists()  # nothing Marketo-specific on this host's disk
    finally:
        instance.dispose()


def test_an_explicit_coordination_url_wins(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MOLEQULE_COORDINATION_URL", str(tmp_path / "shared"))
    with dg.instance_for_test() as instance:
        assert coordination_target(instance, "MOLEQULE_COORDINATION_URL") == str(tmp_path / "shared")
    monkeypatch.delenv("MOLEQULE_COORDINATION_URL")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    assert coordination_target(None, "MOLEQULE_COORDINATION_URL") == str(tmp_path / "home" / "molequle")


# --- one declaration: the launchpad shows the client's own knobs and descriptions -----------------------

def _fields(config_type) -> dict:
    return dict(config_type.fields)


def test_the_launchpad_shows_every_client_knob_with_its_description(monkeypatch) -> None:
    defs = build_definitions(parse_settings(fast_settings_dict()))
    schema = defs.resolve_job_def(SYNC_JOB).resource_defs["marketo"].config_schema.as_field().config_type
    top = _fields(schema)
    assert set(top) == {"client_id", "client_secret", "connection", "coordination_url_env"}
    connection = _fields(top["connection"].config_type)
    assert set(connection) == set(MarketoConfig.model_fields)
    for name, model in (("pacing", PacingConfig), ("bulk", BulkConfig), ("retry", RetryConfig)):
        shown = _fields(connection[name].config_type)
        assert set(shown) == set(model.model_fields)
        for field_name, info in model.model_fields.items():
            assert shown[field_name].description == info.description and info.description
    assert connection["timeout_s"].description == MarketoConfig.model_fields["timeout_s"].description
    # The secrets are configured as environment variable names, resolved only when a run starts.
    resource = defs.resources["marketo"]
    assert (resource.client_id, resource.client_secret) == ("MARKETO_CLIENT_ID", "MARKETO_CLIENT_SECRET")


def test_a_knob_out_of_range_in_the_launchpad_fails_the_run_naming_it(sync_env: SyncEnv) -> None:
    result = sync_env.defs.resolve_job_def(SYNC_JOB).execute_in_process(
        instance=sync_env.instance, raise_on_error=False,
        asset_selection=[dg.AssetKey("marketo_activity_types")],
        run_config={"resources": {"marketo": {"config": {
            "client_id": {"env": "MARKETO_CLIENT_ID"}, "client_secret": {"env": "MARKETO_CLIENT_SECRET"},
            "connection": {"base_url": sync_env.sandbox.base_url, "bulk": {"max_queued_jobs": 11}}}}}})
    assert not result.success
    # The resource refuses it when it starts: one clear failure, no step retries spent on it.
    failure = next(e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "marketo.bulk.max_queued_jobs: Input should be less than or equal to 10 (got 11)" in message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def test_two_auth_errors_in_a_row_no_longer_fail_the_run(sync_env: SyncEnv) -> None:
    """Issue 16 item 1, as reported: 601 twice on activity types, then sync."""
    sync_env.control.inject_fault("GET /rest/v1/activities/types.json", "token_invalid", nth=1, times=2)
    try:
        _sync_types(sync_env, sync_env.instance)
        assert sync_env.control.faults()[0]["fired"] == 2
    finally:
        sync_env.control.clear_faults()


def test_a_timed_out_enqueue_no_longer_fails_the_run(tmp_path: Path) -> None:
    """Issue 16 item 2, as reported: `marketo.timeout_s: 3` and an enqueue held 3.3 s once."""
    config = SandboxConfig.for_profile("fast")
    config.data.people = 100
    with open_sync_env(tmp_path, config, fast_settings_dict(marketo__timeout_s=3)) as env:
        env.control.inject_fault("POST /bulk/v1/leads/export/*/enqueue.json", "slow", nth=1, seconds=3.3)
        job = env.defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(instance=env.instance,
                                        asset_selection=[dg.AssetKey("marketo_people_population")])
        assert result.success
        assert env.control.faults()[0]["fired"] == 1
        exports = [j for j in env.sandbox.context.bulk.jobs_truth() if j["entity"] == "leads"]
        assert [j["status"] for j in exports] == ["Completed"]  # one export, paid once
