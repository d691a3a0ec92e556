"""Run retries in production (issue 14 item 4), with the real daemon and deploy/production/dagster.yaml:
runs that failed on purpose are never relaunched; a run whose worker died is, and its retry succeeds.

The faults are on endpoints only these runs call (smart-campaign lookup, Sync Leads), so a tick that runs
meanwhile is not affected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from molequle_dagster.actions.config import ACTION_JOB, ACTION_OP
from molequle_dagster.assets.write_back import WRITE_BACK_JOB
from molequle_dagster.run_failures import RETRY_ON_STEP_FAILURE_TAG
from molequle_dagster_tests.e2e.conftest import Synced
from molequle_dagster_tests.e2e.deployment import Deployment
from molequle_dagster_tests.e2e.processes import kill_tree, wait_until

WELCOME = "welcome_sequence"  # a trigger action of the packaged settings
WELCOME_CAMPAIGN = "Molequle Welcome Trigger"
CAMPAIGN_LOOKUP = "GET /rest/asset/v1/smartCampaign/byName.json"
SYNC_LEADS = "POST /rest/v1/leads.json"  # the write-back's only Marketo write
RETRY_TIMEOUT_S = 180.0
# run_monitoring: poll_interval_seconds + free_slots_after_run_end_seconds, and a margin for the loop
SLOT_FREED_TIMEOUT_S = 30 + 30 + 60


@dataclass
class Scenarios:
    invalid_input: str  # an action run whose tokens fail validation
    auth_failure: str  # a write-back run whose token Marketo rejects twice
    worker_died: str  # an action run whose run worker was killed mid-step
    killed_pids: list[int]
    lead_id: int


def _action_config(tokens: dict[str, str], lead_id: int) -> dict[str, Any]:
    return {"ops": {ACTION_OP: {"config": {"run": {WELCOME: {"lead_ids": [lead_id], "tokens": tokens}}}}}}


def _run_worker_pid(deployment: Deployment, run_id: str) -> int | None:
    """The run worker's pid, from its "Started process for run (pid: N)" engine event."""
    for event in deployment.run_events(run_id):
        if event["__typename"] == "EngineEvent" and (
            found := re.match(r"Started process for run \(pid: (\d+)\)", event["message"] or "")
        ):
            return int(found.group(1))
    return None


def _retries_of(deployment: Deployment, run_id: str) -> list[dict[str, Any]]:
    return [r for r in deployment.runs() if r["tags"].get("dagster/parent_run_id") == run_id]


@pytest.fixture(scope="module")
def scenarios(synced: Synced) -> Scenarios:
    deployment = synced.deployment
    control = deployment.sandbox.control
    lead_id = int(deployment.lake.read_current("people")["id"][0].as_py())
    control.inject_fault(CAMPAIGN_LOOKUP, "slow", times=1, seconds=120)  # holds the lookup until we kill
    control.inject_fault(SYNC_LEADS, "token_invalid", times=2)  # 601, a token refresh, 601 again
    try:
        # A blank required token: valid for the config schema (which would refuse a missing one at launch),
        # refused by the run's own validation.
        invalid = deployment.launch_run(
            ACTION_JOB, run_config=_action_config({"welcome_message": " "}, lead_id)
        )
        auth = deployment.launch_run(WRITE_BACK_JOB)
        doomed = deployment.launch_run(
            ACTION_JOB, run_config=_action_config({"welcome_message": "Hi"}, lead_id)
        )
        # Kill the worker while its step waits on Marketo: the held lookup has arrived at the sandbox.
        wait_until(
            lambda: next(f for f in control.faults() if f["endpoint"] == CAMPAIGN_LOOKUP)["fired"] == 1,
            RETRY_TIMEOUT_S,
            "the doomed run's campaign lookup to reach the sandbox",
        )
        worker = wait_until(lambda: _run_worker_pid(deployment, doomed), 30, "the run worker's pid")
        killed = kill_tree(worker)
    finally:
        control.clear_faults()  # the retry must find a healthy Marketo
    for run_id in (invalid, auth, doomed):
        deployment.wait_for_run(run_id, RETRY_TIMEOUT_S)
    return Scenarios(invalid, auth, doomed, killed, lead_id)


@pytest.mark.parametrize("scenario", ["invalid_input", "auth_failure"])
def test_a_run_failed_on_purpose_is_not_relaunched(
    deployment: Deployment, scenarios: Scenarios, scenario: str
):
    run_id = getattr(scenarios, scenario)
    run = deployment.run(run_id)
    assert run["status"] == "FAILURE", run
    assert run["tags"].get(RETRY_ON_STEP_FAILURE_TAG) == "false", run["tags"]
    # The retry daemon says so in the run's log once it has considered the failure: a decision, not a wait.
    wait_until(
        lambda: any(
            (e["message"] or "").startswith("Not retrying run") for e in deployment.run_events(run_id)
        ),
        RETRY_TIMEOUT_S,
        f"the retry daemon to decide on run {run_id}",
    )
    assert deployment.run(run_id)["tags"].get("dagster/will_retry") == "false"
    assert _retries_of(deployment, run_id) == []


def test_a_run_whose_worker_died_is_relaunched_and_succeeds(deployment: Deployment, scenarios: Scenarios):
    run = deployment.run(scenarios.worker_died)
    assert run["status"] == "FAILURE", run
    assert RETRY_ON_STEP_FAILURE_TAG not in run["tags"]
    retry = wait_until(lambda: _retries_of(deployment, scenarios.worker_died), RETRY_TIMEOUT_S, "the retry")[
        0
    ]
    assert retry["tags"].get("dagster/retry_number") == "1"
    assert deployment.wait_for_run(retry["runId"], RETRY_TIMEOUT_S)["status"] == "SUCCESS"
    # The killed worker never got to send; its retry sent the trigger once.
    sent = [
        r for r in deployment.sandbox.control.campaign_requests() if scenarios.lead_id in r.get("leadIds", [])
    ]
    assert len(sent) == 1, sent


def test_the_pool_slots_of_a_dead_worker_are_freed(deployment: Deployment, scenarios: Scenarios) -> None:
    """A crashed worker cannot release its steps' pool slots; run monitoring frees them, or two crashes
    would block marketo_api for good."""

    def released() -> bool:
        held = {
            pool: [s for s in slots if s["runId"] == scenarios.worker_died]
            for pool, slots in deployment.claimed_pool_slots().items()
        }
        assert not any(held.values()), f"slots still held by the dead run: {held}"
        return True

    wait_until(released, SLOT_FREED_TIMEOUT_S, "run monitoring to free the dead run's pool slots")
