"""Fixtures of the end-to-end tests: one production deployment (real processes) shared by every e2e test.

Scoped to this package: the processes stop once the last e2e test is done.

* `deployment`: PostgreSQL, the sandbox, `dagster-webserver` and `dagster-daemon`; nothing launched yet.
* `synced`: the same deployment after its first sync, with the tick schedule turned on (what
  docs/production.md has the on-call do). The first sync is the automation's when it starts one by itself,
  else the test launches it through GraphQL as an operator would from the UI.
* `backfill`: a 62-day backfill of the activities, launched with `launchPartitionBackfill` and finished.

Every test here is marked `e2e` (`pytest -m "not e2e"` leaves them out). Tests marked `wall_clock` wait
for a real cron tick: they run after every other e2e test, so the rest overlaps the wait.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from molequle_dagster.assets.activities import MARKETO_ACTIVITIES as ACTIVITIES_TABLE
from molequle_dagster.jobs import INITIAL_JOB
from molequle_dagster_tests.e2e.deployment import (
    LAUNCHED_BY_TAG,
    Deployment,
    open_deployment,
    partition_keys,
    tick_schedule_name,
)
from molequle_dagster_tests.e2e.processes import ThrowawayPostgres, wait_until

E2E_DIR = Path(__file__).resolve().parent
FIRST_SYNC_TIMEOUT_S = 300.0
BACKFILL_DAYS = 62
BACKFILL_TIMEOUT_S = 300.0
E2E_TEST_TIMEOUT_S = 900


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: runs against the production deployment as real processes")
    config.addinivalue_line(
        "markers", "wall_clock: waits on a real cron boundary; runs after the other end-to-end tests"
    )


def _in_e2e(item: pytest.Item) -> bool:
    return E2E_DIR in item.path.parents


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the e2e tests; move the `wall_clock` ones just after the last other e2e test."""
    for item in items:
        if _in_e2e(item):
            item.add_marker(pytest.mark.e2e)
            # a test's timer includes the fixtures it builds: the first sync, a backfill, a cron tick
            item.add_marker(pytest.mark.timeout(E2E_TEST_TIMEOUT_S))
    late = [item for item in items if item.get_closest_marker("wall_clock") is not None]
    rest = [item for item in items if item.get_closest_marker("wall_clock") is None]
    last_e2e = max((i for i, item in enumerate(rest) if _in_e2e(item)), default=len(rest) - 1)
    items[:] = rest[: last_e2e + 1] + late + rest[last_e2e + 1 :]


_OPEN: list[Deployment] = []  # the deployment while it is up, for the failure reports below


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed e2e test's report carries the tail of every server log (CI keeps no temp dirs); the call's
    report is kept on the item for fixtures that act on failure (the browser's screenshot)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    if report.failed and _OPEN and _in_e2e(item):
        for server in _OPEN[0].servers.values():
            report.sections.append((f"{server.name} log (last 60 lines)", server.tail(60)))


@pytest.fixture(scope="package")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    why_not = ThrowawayPostgres.available()
    if why_not:
        if os.environ.get("MOLEQULE_REQUIRE_PG"):  # CI: the production path must be tested, never skipped
            pytest.fail(f"the end-to-end tests need PostgreSQL: {why_not}")
        pytest.skip(f"end-to-end tests need PostgreSQL: {why_not}")
    # The processes' logs stay in this temp dir (pytest keeps the last few) for a failure's post-mortem.
    with open_deployment(tmp_path_factory.mktemp("deployment")) as opened:
        _OPEN.append(opened)
        try:
            yield opened
        finally:
            _OPEN.clear()


@dataclass
class Synced:
    deployment: Deployment
    started_at: datetime  # before the first sync: people Marketo changed since then are in the lake too
    first_sync_runs: list[str]
    schedule: str  # the tick schedule, turned on
    schedule_started_at: float


@pytest.fixture(scope="package")
def synced(deployment: Deployment) -> Synced:
    started_at = datetime.now(UTC).replace(microsecond=0)
    automatic = [r["runId"] for r in deployment.runs() if LAUNCHED_BY_TAG not in r["tags"]]
    if automatic:  # the automation started the first sync by itself: let it finish
        wait_until(lambda: not deployment.runs_in_progress(), FIRST_SYNC_TIMEOUT_S, "the first sync")
        runs = automatic
    else:  # today: the operator materializes the unpartitioned sync assets from the UI
        keys = [
            "/".join(node["assetKey"]["path"])
            for node in deployment.asset_nodes()
            if not node["isPartitioned"] and INITIAL_JOB in node["jobNames"]
        ]
        runs = [deployment.launch_run(INITIAL_JOB, keys)]
    for run_id in runs:
        run = deployment.wait_for_run(run_id, FIRST_SYNC_TIMEOUT_S)
        assert run["status"] == "SUCCESS", f"first sync run {run_id} ended {run['status']}"
    assert deployment.lake.read_current("people") is not None, "the first sync left no people table"
    schedule = tick_schedule_name(deployment)
    state = deployment.start_schedule(schedule)
    assert state["status"] == "RUNNING", state
    return Synced(deployment, started_at, runs, schedule, datetime.now(UTC).timestamp())


@dataclass
class Backfill:
    id: str
    days: list[str]
    status: dict[str, Any]  # partitionBackfillOrError
    runs: list[dict[str, Any]]
    export_jobs: list[dict[str, Any]]  # the sandbox's bulk jobs created while the backfill ran


@pytest.fixture(scope="package")
def backfill(synced: Synced) -> Backfill:
    """The UI's "Materialize → backfill" of the activities over the 62 days before today."""
    deployment = synced.deployment
    days = partition_keys(deployment)[-BACKFILL_DAYS - 1 : -1]
    jobs_before = len(deployment.sandbox.bulk_jobs())
    backfill_id = deployment.launch_partition_backfill([ACTIVITIES_TABLE], days)
    status = deployment.wait_for_backfill(backfill_id, BACKFILL_TIMEOUT_S)
    runs = deployment.runs({"dagster/backfill": backfill_id})
    return Backfill(backfill_id, days, status, runs, deployment.sandbox.bulk_jobs()[jobs_before:])
