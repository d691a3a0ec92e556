"""The executor every job runs with: its run config picks the engine, $MOLEQULE_EXECUTOR the default; steps
really run where the choice says (one process per step, or the run's own process)."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest
import yaml

from molequle_dagster.definitions import build_definitions
from molequle_dagster.execution import (
    BROKER_ENV,
    CELERY_SOURCE,
    EXECUTOR_ENV,
    ExecutorSettingError,
    build_executor,
    default_engine,
)
from molequle_dagster.settings import load_settings
from molequle_dagster_tests.e2e.processes import REPO
from molequle_dagster_tests.scaleout.pid_job import pid_job


def test_the_default_engine_is_dagsters_and_the_environment_may_choose_another() -> None:
    assert default_engine({}) == "multiprocess"
    assert default_engine({EXECUTOR_ENV: " in_process "}) == "in_process"
    assert default_engine({EXECUTOR_ENV: "celery"}) == "celery"
    with pytest.raises(ExecutorSettingError, match=r"MOLEQULE_EXECUTOR: expected one of multiprocess, in_"):
        default_engine({EXECUTOR_ENV: "k8s"})


def test_celerys_broker_is_read_at_run_time_never_written_into_a_run_config() -> None:
    """A broker URL can carry a password: the default config names the variable, not its value."""
    default = build_executor({EXECUTOR_ENV: "celery"}).config_schema.default_value
    assert default == {
        "celery": {
            "broker": {"env": BROKER_ENV},
            "backend": {"env": BROKER_ENV},
            "config_source": CELERY_SOURCE,
        }
    }


def test_the_shipped_worker_config_matches_what_runs_send() -> None:
    """deploy/celery/worker.yaml and the executor must agree, or workers never pick up the steps."""
    worker = yaml.safe_load((REPO / "deploy" / "celery" / "worker.yaml").read_text())["execution"]["config"]
    assert worker == {
        "broker": {"env": BROKER_ENV},
        "backend": {"env": BROKER_ENV},
        "config_source": CELERY_SOURCE,
    }


def test_every_job_of_the_definitions_runs_with_the_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(EXECUTOR_ENV, raising=False)
    defs = build_definitions(load_settings())
    for job in defs.resolve_all_job_defs():
        assert job.executor_def.name == "molequle_executor", job.name
        assert job.executor_def.config_schema.default_value == {"multiprocess": {}}, job.name


@pytest.mark.parametrize("engine", ["multiprocess", "in_process"])
def test_steps_run_where_the_run_config_says(engine: str, tmp_path: Path) -> None:
    run_config = {"execution": {"config": {engine: {}}}}
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        job = dg.reconstructable(pid_job)
        with dg.execute_job(job, instance=instance, run_config=run_config) as result:
            assert result.success
            first, second = result.output_for_node("and_me")  # read while the result is open
    if engine == "in_process":
        assert first == second == os.getpid()
    else:  # one process per step, none of them this one
        assert len({first, second, os.getpid()}) == 3
