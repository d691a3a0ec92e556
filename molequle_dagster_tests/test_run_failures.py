"""Runs failed on purpose are marked so the run-retry daemon leaves them; other failures still retry.

(The end-to-end proof with the real daemon is in e2e/test_run_retries.py.)
"""

from __future__ import annotations

import dagster as dg
import pytest

from molequle_dagster.run_failures import RETRY_ON_STEP_FAILURE_TAG, mark_run_not_retried

WILL_RETRY = "dagster/will_retry"  # Dagster's verdict, recorded on the run when it fails


@dg.op
def fails_on_purpose() -> None:
    mark_run_not_retried()
    raise dg.Failure("quota used up", allow_retries=False)


@dg.op
def fails_transiently() -> None:
    raise ConnectionError("connection reset by peer")


@pytest.fixture
def instance():
    with dg.instance_for_test(overrides={"run_retries": {"enabled": True, "max_retries": 1}}) as instance:
        yield instance


def _failed_run(instance: dg.DagsterInstance, op: dg.OpDefinition) -> dg.DagsterRun:
    job = dg.JobDefinition(graph_def=dg.GraphDefinition(name=f"{op.name}_job", node_defs=[op]))
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    return instance.get_run_by_id(result.run_id)


def test_a_run_failed_on_purpose_is_not_retried(instance) -> None:
    run = _failed_run(instance, fails_on_purpose)
    assert run.tags[RETRY_ON_STEP_FAILURE_TAG] == "false"
    assert run.tags[WILL_RETRY] == "false"


def test_a_transient_failure_is_still_retried(instance) -> None:
    run = _failed_run(instance, fails_transiently)
    assert RETRY_ON_STEP_FAILURE_TAG not in run.tags
    assert run.tags[WILL_RETRY] == "true"


def test_outside_a_run_there_is_nothing_to_mark() -> None:
    assert mark_run_not_retried() is False
