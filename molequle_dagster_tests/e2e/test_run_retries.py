"""Run retries in production (issue 14 item 4), with the real daemon and deploy/production/dagster.yaml:
runs that failed on purpose (invalid action input, credentials Marketo rejects, a used-up daily quota) are
never relaunched; a run whose worker died is, and its retry succeeds.

The faults are on endpoints these runs call (the smart-campaign lookup; the activity types, which ticks and
the other steps of a tick take from the day's copy in the lake). The activity types refuse every token until
the auth run has ended: the client refreshes the token `retry.auth_attempts` times in a row before it gives
up (issue 16: a second 601 after a refresh is not yet proof of bad credentials), and a daily close that
re-reads the types meanwhile must not use up a counted fault this run needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from molequle_dagster.actions.config import ACTION_JOB, ACTION_OP
from molequle_dagster.assets.activities import ACTIVITY_TYPES_TABLE
from molequle_dagster.coordination import open_store
from molequle_dagster.marketo.client import scope_key
from molequle_dagster.run_failures import RETRY_ON_STEP_FAILURE_TAG
from molequle_dagster_tests.e2e.conftest import Synced
from molequle_dagster_tests.e2e.deployment import Deployment
from molequle_dagster_tests.e2e.processes import kill_tree, wait_until

WELCOME = "welcome_sequence"  # a trigger action of the packaged settings
WELCOME_CAMPAIGN = "Molequle Welcome Trigger"
CAMPAIGN_LOOKUP = "GET /rest/asset/v1/smartCampaign/byName.json"
ACTIVITY_TYPES = "GET /rest/v1/activities/types.json"  # read only by a run of marketo_activity_types
RETRY_TIMEOUT_S = 180.0
# run_monitoring: poll_interval_seconds + free_slots_after_run_end_seconds, and a margin for the loop
SLOT_FREED_TIMEOUT_S = 30 + 30 + 60


@dataclass
class Scenarios:
    invalid_input: str  # an action run whose tokens fail validation
    auth_failure: str  # a run of marketo_activity_types whose token Marketo rejects twice
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


def _materialize(deployment: Deployment, asset_key: str) -> str:
    """The UI's "Materialize" on one asset: launchRun of the implicit asset job with that asset selected."""
    job = next(j for j in deployment.asset_node(asset_key)["jobNames"] if j.startswith("__ASSET_JOB"))
    return deployment.launch_run(job, [asset_key])


def _fired(deployment: Deployment, endpoint: str) -> int:
    return next(f for f in deployment.sandbox.control.faults() if f["endpoint"] == endpoint)["fired"]


@pytest.fixture(scope="module")
def scenarios(synced: Synced) -> Scenarios:
    deployment = synced.deployment
    control = deployment.sandbox.control
    lead_id = int(deployment.lake.read_current("people")["id"][0].as_py())
    control.inject_fault(CAMPAIGN_LOOKUP, "slow", times=1, seconds=120)  # holds the lookup until we kill
    # Every call answers 601, however many fresh tokens the client tries: Marketo rejects these credentials.
    control.inject_fault(ACTIVITY_TYPES, "token_invalid", times=None)
    try:
        # A blank required token: valid for the config schema (which would refuse a missing one at launch),
        # refused by the run's own validation.
        invalid = deployment.launch_run(
            ACTION_JOB, run_config=_action_config({"welcome_message": " "}, lead_id)
        )
        auth = _materialize(deployment, ACTIVITY_TYPES_TABLE)
        doomed = deployment.launch_run(
            ACTION_JOB, run_config=_action_config({"welcome_message": "Hi"}, lead_id)
        )
        # Kill the worker while its step waits on Marketo: the held lookup has arrived at the sandbox.
        wait_until(
            lambda: _fired(deployment, CAMPAIGN_LOOKUP) == 1,
            RETRY_TIMEOUT_S,
            "the doomed run's campaign lookup to reach the sandbox",
        )
        worker = wait_until(lambda: _run_worker_pid(deployment, doomed), 30, "the run worker's pid")
        killed = kill_tree(worker)
        # The auth run must meet the 601s itself, for as long as it runs (no count another run can use up).
        deployment.wait_for_run(auth, RETRY_TIMEOUT_S)
    finally:
        control.clear_faults()  # the retry must find a healthy Marketo
    for run_id in (invalid, auth, doomed):
        deployment.wait_for_run(run_id, RETRY_TIMEOUT_S)
    return Scenarios(invalid, auth, doomed, killed, lead_id)


def _assert_not_relaunched(deployment: Deployment, run_id: str) -> None:
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


def _step_failure_codes(deployment: Deployment, run_id: str) -> list[str | None]:
    """The `marketo_code` each failed step of the run recorded (`fail_on_purpose` metadata)."""
    data = deployment.graphql(
        """query($runId: ID!) { logsForRun(runId: $runId) { __typename ... on EventConnection { events {
             __typename ... on ExecutionStepFailureEvent { failureMetadata { metadataEntries {
               label ... on TextMetadataEntry { text } } } } } } } }""",
        {"runId": run_id},
    )["logsForRun"]
    assert data["__typename"] == "EventConnection", data
    failures = [e for e in data["events"] if e["__typename"] == "ExecutionStepFailureEvent"]
    entries = [
        {m["label"]: m.get("text") for m in (e["failureMetadata"] or {}).get("metadataEntries", [])}
        for e in failures
    ]
    return [found.get("marketo_code") for found in entries]


@pytest.mark.parametrize("scenario", ["invalid_input", "auth_failure"])
def test_a_run_failed_on_purpose_is_not_relaunched(
    deployment: Deployment, scenarios: Scenarios, scenario: str
):
    _assert_not_relaunched(deployment, getattr(scenarios, scenario))
    if scenario == "auth_failure":  # failed by the 601s themselves, not by anything else on the way
        assert _step_failure_codes(deployment, scenarios.auth_failure) == ["601"]


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


@dataclass
class QuotaStopped:
    run_id: str  # a run that met Marketo's 607 "Daily quota reached"
    tick_while_stopped: dict[str, Any]  # the tick schedule's dry run while the stop was in force
    tick_after_lifting: dict[str, Any]


def _lift_quota_stop(deployment: Deployment) -> None:
    """What the on-call does once Marketo's quota is raised before the reset (docs/production.md): clear the
    stop the client recorded in the coordination store (the production database, schema molequle)."""
    pg = {k.removeprefix("DAGSTER_PG_").lower(): v for k, v in deployment.env.items() if "_PG_" in k}
    store = open_store(f"postgresql://{pg['user']}:{pg['password']}@{pg['host']}:{pg['port']}/{pg['db']}")
    try:
        key = scope_key(deployment.settings["marketo"]["base_url"].rstrip("/"))
        for kind in ("calls", "exports"):
            store.clear_quota_stop(key, kind)
    finally:
        store.close()


@pytest.fixture(scope="module")
def quota_stopped(synced: Synced, scenarios: Scenarios) -> QuotaStopped:
    deployment = synced.deployment
    control = deployment.sandbox.control
    # After the killed worker's relaunch: the stop pauses the automation; it would not stop that run.
    retry = wait_until(lambda: _retries_of(deployment, scenarios.worker_died), RETRY_TIMEOUT_S, "the retry")
    deployment.wait_for_run(retry[0]["runId"], RETRY_TIMEOUT_S)
    control.inject_fault(ACTIVITY_TYPES, "daily_quota", times=1)
    try:
        run_id = _materialize(deployment, ACTIVITY_TYPES_TABLE)
        deployment.wait_for_run(run_id, RETRY_TIMEOUT_S)
        stopped = deployment.schedule_dry_run(synced.schedule)
    finally:
        control.clear_faults()
        _lift_quota_stop(deployment)  # the other tests need the automation back
    return QuotaStopped(run_id, stopped, deployment.schedule_dry_run(synced.schedule))


def test_a_quota_stopped_run_is_not_relaunched_and_the_ticks_pause(
    deployment: Deployment, quota_stopped: QuotaStopped
) -> None:
    _assert_not_relaunched(deployment, quota_stopped.run_id)
    skipped = quota_stopped.tick_while_stopped["skipReason"] or ""
    assert "quota used up" in skipped, quota_stopped.tick_while_stopped  # the UI says why, and until when
    assert "quota" not in (quota_stopped.tick_after_lifting["skipReason"] or ""), quota_stopped
