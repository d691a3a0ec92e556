"""Fixtures of the end-to-end tests: one production deployment (real processes) shared by every e2e test.

Scoped to this package: the processes stop once the last e2e test is done.

* `deployment`: PostgreSQL, the sandbox, `dagster-webserver` and `dagster-daemon`; nothing launched yet.
* `synced`: the same deployment once its automation (`sync.automation: true`, as in production) has run
  the first sync and the activity history by itself: the onboarding sensor says it is done.
* `backfill`: a 62-day backfill of the activities, launched with `launchPartitionBackfill` and finished.

Every test here is marked `e2e` (`pytest -m "not e2e"` leaves them out). Tests marked `wall_clock` wait
for a real cron tick: they run after every other e2e test, so the rest overlaps the wait.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from molequle_dagster.assets.activities import MARKETO_ACTIVITIES as ACTIVITIES_TABLE
from molequle_dagster.sync.run_kind import HISTORY, INITIAL, KIND_TAG
from molequle_dagster_tests.e2e.deployment import (
    LAUNCHED_BY_TAG,
    Deployment,
    open_deployment,
    partition_keys,
    tick_schedule_name,
)
from molequle_dagster_tests.e2e.processes import ThrowawayPostgres, wait_until

E2E_DIR = Path(__file__).resolve().parent
FIRST_SYNC_TIMEOUT_S = 600.0  # the first sync and the history; minutes on a busy 2-core machine
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


ONBOARDING_SENSOR = "marketo_onboarding_sensor"
ONBOARDED = "the first sync and its history are complete"  # the sensor's skip reason once it is done


@dataclass
class Synced:
    deployment: Deployment
    initial_run: dict[str, Any]  # the first sync's run, launched by the onboarding sensor
    history_runs: list[dict[str, Any]]  # the activity history that followed, oldest first
    done_at: float  # the onboarding sensor's first tick that found nothing left to do
    schedule: str  # the tick schedule, on by default (sync.automation)
    export_jobs: list[dict[str, Any]]  # the sandbox's bulk jobs by then: the onboarding's


@pytest.fixture(scope="package")
def synced(deployment: Deployment) -> Synced:
    """The deployment once its automation alone ran the first sync and the history (nothing launched by a
    test or the CLI), every one of those runs successful."""

    def onboarded() -> dict[str, Any] | None:
        deployment.assert_healthy()
        done = [t for t in deployment.sensor_ticks(ONBOARDING_SENSOR) if t["skipReason"] == ONBOARDED]
        return min(done, key=lambda t: float(t["timestamp"])) if done else None

    done = wait_until(onboarded, FIRST_SYNC_TIMEOUT_S, f"{ONBOARDING_SENSOR} to say {ONBOARDED!r}")
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for run in deployment.runs():
        if LAUNCHED_BY_TAG not in run["tags"] and run["tags"].get(KIND_TAG) in (INITIAL, HISTORY):
            by_kind.setdefault(run["tags"][KIND_TAG], []).append(run)
    for run in [*by_kind.get(INITIAL, []), *by_kind.get(HISTORY, [])]:
        assert run["status"] == "SUCCESS", f"onboarding run {run['runId']} {run['jobName']}: {run['status']}"
    initial = by_kind.get(INITIAL, [])
    assert len(initial) == 1, f"expected one first-sync run, got {initial}"
    history = sorted(by_kind.get(HISTORY, []), key=lambda r: float(r["startTime"]))
    schedule = tick_schedule_name(deployment)
    jobs = deployment.sandbox.control.export_jobs()
    return Synced(deployment, initial[0], history, float(done["timestamp"]), schedule, jobs)


@dataclass
class Backfill:
    id: str
    days: list[str]
    status: dict[str, Any]  # partitionBackfillOrError
    runs: list[dict[str, Any]]
    export_jobs: list[dict[str, Any]]  # the sandbox's bulk jobs created while the backfill ran


@pytest.fixture(scope="package")
def backfill(synced: Synced) -> Backfill:
    """The UI's "Materialize → backfill" of the activities over the 62 days before today, launched once the
    onboarding is done (so the exports the sandbox counts meanwhile are the backfill's)."""
    deployment = synced.deployment
    days = partition_keys(deployment)[-BACKFILL_DAYS - 1 : -1]
    jobs_before = len(deployment.sandbox.control.export_jobs())
    backfill_id = deployment.launch_partition_backfill([ACTIVITIES_TABLE], days)
    status = deployment.wait_for_backfill(backfill_id, BACKFILL_TIMEOUT_S)
    runs = deployment.runs({"dagster/backfill": backfill_id})
    return Backfill(backfill_id, days, status, runs, deployment.sandbox.control.export_jobs()[jobs_before:])
