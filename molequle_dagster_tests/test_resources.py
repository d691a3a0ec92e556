"""Resources: secrets come from the environment at run time and never show up in events or errors."""

from __future__ import annotations

import dagster as dg
import pytest

from molequle_dagster.definitions import build_definitions
from molequle_dagster.jobs import SYNC_JOB
from molequle_dagster.settings import parse_settings
from molequle_dagster_tests.conftest import SyncEnv, fast_settings_dict

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
