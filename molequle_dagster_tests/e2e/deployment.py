"""The production deployment as real processes, driven the way the UI drives it: through GraphQL.

`open_deployment()` starts a throwaway PostgreSQL, the Marketo sandbox, `dagster-webserver -w workspace.yaml`
and `dagster-daemon run -w workspace.yaml` with DAGSTER_HOME holding a copy of
deploy/production/dagster.yaml, the lake and the settings in a temp dir. It yields a `Deployment`: a
GraphQL client with the calls the tests share, the sandbox (truth and control), the lake and the paths.
Nothing is launched: whatever runs, the automation or the test started it.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import yaml

from molequle_dagster.assets.activities import MARKETO_ACTIVITIES as ACTIVITIES_TABLE
from molequle_dagster.lake import Lake
from molequle_dagster.sandbox.process import SandboxProcess
from molequle_dagster_tests.conftest import fast_settings_dict
from molequle_dagster_tests.e2e.processes import (
    REPO,
    Server,
    ThrowawayPostgres,
    free_port,
    scrubbed_environ,
    wait_until,
)

PRODUCTION_CONFIG = REPO / "deploy" / "production" / "dagster.yaml"
WORKSPACE = REPO / "workspace.yaml"
BIN = Path(sys.executable).parent  # the venv's dagster-webserver / dagster-daemon
STARTUP_TIMEOUT_S = 180.0  # two code servers load the definitions on 2 shared cores
GRAPHQL_TIMEOUT_S = 60.0
TERMINAL_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}
SYNC_INTERVAL_MINUTES = 5  # the shortest allowed: the schedule test waits for one real tick

RUN_FIELDS = "runId status jobName tags { key value } startTime endTime"
# Every run and backfill a test launches carries this tag: runs without it were started by the deployment
# itself (schedules, sensors, automation, run retries of those).
LAUNCHED_BY_TAG = "molequle-e2e/launched_by"


class GraphQLError(AssertionError):
    pass


def post_graphql(
    session: requests.Session, url: str, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """POST {url}/graphql as the UI does; GraphQL errors fail the test with the server's message."""
    response = session.post(
        f"{url}/graphql",
        json={"query": query, "variables": variables or {}},
        timeout=GRAPHQL_TIMEOUT_S,
    )
    if response.status_code == 400:  # a query the schema rejects: the body says why
        raise GraphQLError(f"GraphQL rejected the query: {response.text[:2000]}")
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise GraphQLError(f"GraphQL errors: {body['errors']}")
    return body["data"]


@dataclass
class Deployment:
    root: Path
    home: Path  # DAGSTER_HOME: the copy of deploy/production/dagster.yaml, compute logs, Molequle state
    logs: Path
    settings_path: Path
    settings: dict[str, Any]
    lake: Lake
    sandbox: SandboxProcess
    url: str  # the webserver, e.g. http://127.0.0.1:PORT
    env: dict[str, str]  # what the Dagster processes got
    servers: dict[str, Server]
    location: str = ""
    repository: str = ""
    came_up: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    _session: requests.Session = field(default_factory=requests.Session, repr=False)

    # --- GraphQL ----------------------------------------------------------------------------------------
    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return post_graphql(self._session, self.url, query, variables)

    def repo_selector(self) -> dict[str, str]:
        return {"repositoryLocationName": self.location, "repositoryName": self.repository}

    def assert_healthy(self) -> None:
        for server in self.servers.values():
            server.assert_alive()

    # --- runs -------------------------------------------------------------------------------------------
    def runs(self, tags: dict[str, str] | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Runs, newest first, with their tags as a dict."""
        run_filter = {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
        data = self.graphql(
            f"""query($filter: RunsFilter, $limit: Int) {{
                  runsOrError(filter: $filter, limit: $limit) {{
                    __typename ... on Runs {{ results {{ {RUN_FIELDS} }} }} ... on PythonError {{ message }}
                  }} }}""",
            {"filter": run_filter, "limit": limit},
        )["runsOrError"]
        assert data["__typename"] == "Runs", data
        return [_with_tag_dict(run) for run in data["results"]]

    def runs_in_progress(self) -> list[dict[str, Any]]:
        return [run for run in self.runs() if run["status"] not in TERMINAL_RUN_STATUSES]

    def run(self, run_id: str) -> dict[str, Any]:
        data = self.graphql(
            f"""query($runId: ID!) {{ runOrError(runId: $runId) {{
                  __typename ... on Run {{ {RUN_FIELDS} }} ... on RunNotFoundError {{ message }} }} }}""",
            {"runId": run_id},
        )["runOrError"]
        assert data["__typename"] == "Run", data
        return _with_tag_dict(data)

    def wait_for_run(self, run_id: str, timeout: float = 180.0) -> dict[str, Any]:
        """The run once it is finished (any terminal status)."""

        def finished() -> dict[str, Any] | None:
            self.assert_healthy()
            run = self.run(run_id)
            return run if run["status"] in TERMINAL_RUN_STATUSES else None

        return wait_until(finished, timeout, f"run {run_id} to finish")

    def run_events(self, run_id: str) -> list[dict[str, Any]]:
        """The run's event log: type name, message, step key, and metadata as {label: value}."""
        events: list[dict[str, Any]] = []
        cursor = None
        while True:
            data = self.graphql(
                """query($runId: ID!, $cursor: String) { logsForRun(runId: $runId, afterCursor: $cursor) {
                     __typename
                     ... on EventConnection { cursor hasMore events {
                         __typename ... on MessageEvent { message stepKey }
                         ... on EngineEvent { metadataEntries { label
                             ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } } }
                     } } } }""",
                {"runId": run_id, "cursor": cursor},
            )["logsForRun"]
            assert data["__typename"] == "EventConnection", data
            for event in data["events"]:
                entries = event.pop("metadataEntries", None) or []
                event["metadata"] = {e["label"]: e.get("intValue", e.get("text")) for e in entries}
                events.append(event)
            cursor = data["cursor"]
            if not data["hasMore"]:
                return events

    def launch_run(
        self,
        job_name: str,
        asset_keys: list[str] | None = None,
        run_config: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
    ) -> str:
        """launchRun, as the launchpad / "Materialize" does; returns the run id (the run is QUEUED)."""
        tags = {LAUNCHED_BY_TAG: "test", **(tags or {})}
        selector: dict[str, Any] = {**self.repo_selector(), "jobName": job_name}
        if asset_keys is not None:
            selector["assetSelection"] = [{"path": key.split("/")} for key in asset_keys]
        params = {
            "selector": selector,
            "runConfigData": run_config or {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
            "mode": "default",
        }
        data = self.graphql(
            """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
                 __typename ... on LaunchRunSuccess { run { runId } }
                 ... on PythonError { message } ... on RunConfigValidationInvalid { errors { message } }
                 ... on InvalidSubsetError { message } ... on InvalidStepError { invalidStepKey }
                 ... on InvalidOutputError { invalidOutputName } } }""",
            {"params": params},
        )["launchRun"]
        assert data["__typename"] == "LaunchRunSuccess", f"launchRun of {job_name}: {data}"
        return data["run"]["runId"]

    # --- backfills --------------------------------------------------------------------------------------
    def launch_partition_backfill(self, asset_keys: list[str], partition_names: list[str]) -> str:
        """launchPartitionBackfill with an asset selection: the UI's "Materialize selected" over partitions,
        split into runs by the assets' BackfillPolicy."""
        data = self.graphql(
            """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
                 __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
                 ... on InvalidSubsetError { message } ... on UnauthorizedError { message } } }""",
            {
                "params": {
                    "partitionNames": partition_names,
                    "assetSelection": [{"path": key.split("/")} for key in asset_keys],
                    "tags": [{"key": LAUNCHED_BY_TAG, "value": "test"}],
                }
            },
        )["launchPartitionBackfill"]
        assert data["__typename"] == "LaunchBackfillSuccess", data
        return data["backfillId"]

    def backfill(self, backfill_id: str) -> dict[str, Any]:
        data = self.graphql(
            """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                 __typename ... on PartitionBackfill { id status numPartitions error { message } }
                 ... on PythonError { message } ... on BackfillNotFoundError { message } } }""",
            {"id": backfill_id},
        )["partitionBackfillOrError"]
        assert data["__typename"] == "PartitionBackfill", data
        return data

    def wait_for_backfill(self, backfill_id: str, timeout: float = 240.0) -> dict[str, Any]:
        """The backfill once the daemon has finished it (every requested run terminal)."""

        def done() -> dict[str, Any] | None:
            self.assert_healthy()
            backfill = self.backfill(backfill_id)
            return backfill if backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING") else None

        return wait_until(done, timeout, f"backfill {backfill_id} to finish")

    # --- assets -----------------------------------------------------------------------------------------
    def asset_nodes(self) -> list[dict[str, Any]]:
        data = self.graphql(
            """{ assetNodes { assetKey { path } groupName isPartitioned isMaterializable jobNames
                 backfillPolicy { maxPartitionsPerRun } } }"""
        )
        return data["assetNodes"]

    def asset_node(self, asset_key: str) -> dict[str, Any]:
        return next(n for n in self.asset_nodes() if "/".join(n["assetKey"]["path"]) == asset_key)

    def partition_materializations(self, asset_key: str, partitions: list[str]) -> dict[str, dict[str, Any]]:
        """Latest materialization per partition: {partition: {"runId", "metadata": {label: value}}}."""
        data = self.graphql(
            """query($key: AssetKeyInput!, $partitions: [String!]) { assetNodeOrError(assetKey: $key) {
                 __typename ... on AssetNode { assetMaterializations(partitions: $partitions) {
                   partition runId timestamp metadataEntries { label
                     ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue }
                     ... on TextMetadataEntry { text } } } } } }""",
            {"key": {"path": asset_key.split("/")}, "partitions": partitions},
        )["assetNodeOrError"]
        assert data["__typename"] == "AssetNode", data
        latest: dict[str, dict[str, Any]] = {}
        for event in sorted(data["assetMaterializations"], key=lambda e: float(e["timestamp"])):
            metadata = {
                e["label"]: e.get("intValue", e.get("floatValue", e.get("text")))
                for e in event["metadataEntries"]
            }
            latest[event["partition"]] = {"runId": event["runId"], "metadata": metadata}
        return latest

    def materializations(self, asset_key: str, limit: int = 100) -> list[dict[str, Any]]:
        """The asset's materializations, newest first: {runId, timestamp (ms since the epoch, a string)}."""
        data = self.graphql(
            """query($key: AssetKeyInput!, $limit: Int) { assetNodeOrError(assetKey: $key) {
                 __typename ... on AssetNode {
                   assetMaterializations(limit: $limit) { runId timestamp } } } }""",
            {"key": {"path": asset_key.split("/")}, "limit": limit},
        )["assetNodeOrError"]
        assert data["__typename"] == "AssetNode", data
        return data["assetMaterializations"]

    def check_executions(self, asset_key: str, check_name: str, limit: int = 100) -> list[dict[str, Any]]:
        """The check's executions, newest first: {runId ("" when a sensor reported it), status,
        timestamp, evaluation: {timestamp, success, description} or None}."""
        data = self.graphql(
            """query($key: AssetKeyInput!, $name: String!, $limit: Int!) {
                 assetCheckExecutions(assetKey: $key, checkName: $name, limit: $limit) {
                   runId status timestamp evaluation { timestamp success description } } }""",
            {"key": {"path": asset_key.split("/")}, "name": check_name, "limit": limit},
        )
        return data["assetCheckExecutions"]

    # --- schedules and sensors --------------------------------------------------------------------------
    def schedules(self) -> list[dict[str, Any]]:
        data = self.graphql(
            """query($repo: RepositorySelector!) { schedulesOrError(repositorySelector: $repo) {
                 __typename ... on Schedules { results { name cronSchedule
                   scheduleState { status } } } } }""",
            {"repo": self.repo_selector()},
        )["schedulesOrError"]
        assert data["__typename"] == "Schedules", data
        return data["results"]

    def sensors(self) -> list[dict[str, Any]]:
        data = self.graphql(
            """query($repo: RepositorySelector!) { sensorsOrError(repositorySelector: $repo) {
                 __typename ... on Sensors { results { name sensorType sensorState { status } } } } }""",
            {"repo": self.repo_selector()},
        )["sensorsOrError"]
        assert data["__typename"] == "Sensors", data
        return data["results"]

    def start_schedule(self, name: str) -> dict[str, Any]:
        data = self.graphql(
            """mutation($selector: ScheduleSelector!) { startSchedule(scheduleSelector: $selector) {
                 __typename ... on ScheduleStateResult { scheduleState { status } }
                 ... on PythonError { message } ... on UnauthorizedError { message } } }""",
            {"selector": {**self.repo_selector(), "scheduleName": name}},
        )["startSchedule"]
        assert data["__typename"] == "ScheduleStateResult", data
        return data["scheduleState"]

    def stop_schedule(self, name: str) -> None:
        schedule = self.graphql(
            """query($selector: ScheduleSelector!) { scheduleOrError(scheduleSelector: $selector) {
                 __typename ... on Schedule { id } } }""",
            {"selector": {**self.repo_selector(), "scheduleName": name}},
        )["scheduleOrError"]
        assert schedule["__typename"] == "Schedule", schedule
        data = self.graphql(
            """mutation($id: String!) { stopRunningSchedule(id: $id) {
                 __typename ... on ScheduleStateResult { scheduleState { status } }
                 ... on PythonError { message } ... on UnauthorizedError { message } } }""",
            {"id": schedule["id"]},
        )["stopRunningSchedule"]
        assert data["__typename"] == "ScheduleStateResult", data
        assert data["scheduleState"]["status"] == "STOPPED", data

    def schedule_ticks(self, name: str, limit: int = 10) -> list[dict[str, Any]]:
        data = self.graphql(
            """query($selector: ScheduleSelector!, $limit: Int) {
               scheduleOrError(scheduleSelector: $selector) {
                 __typename ... on Schedule { scheduleState { ticks(limit: $limit) {
                   tickId status timestamp runIds skipReason error { message } } } } } }""",
            {"selector": {**self.repo_selector(), "scheduleName": name}, "limit": limit},
        )["scheduleOrError"]
        assert data["__typename"] == "Schedule", data
        return data["scheduleState"]["ticks"]

    def sensor_ticks(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        """The sensor's ticks, newest first."""
        data = self.graphql(
            """query($selector: SensorSelector!, $limit: Int) { sensorOrError(sensorSelector: $selector) {
                 __typename ... on Sensor { sensorState { ticks(limit: $limit) {
                   tickId status timestamp runIds skipReason error { message } } } } } }""",
            {"selector": {**self.repo_selector(), "sensorName": name}, "limit": limit},
        )["sensorOrError"]
        assert data["__typename"] == "Sensor", data
        return data["sensorState"]["ticks"]

    def schedule_dry_run(self, name: str) -> dict[str, Any]:
        """The UI's "Test schedule": the schedule evaluated now by the code server against the instance,
        launching nothing. Returns {skipReason, runRequests: [{runKey, tags}], error}."""
        data = self.graphql(
            """mutation($selector: ScheduleSelector!, $timestamp: Float) {
                 scheduleDryRun(selectorData: $selector, timestamp: $timestamp) {
                   __typename ... on DryRunInstigationTick { evaluationResult {
                     skipReason error { message } runRequests { runKey tags { key value } } } }
                   ... on PythonError { message } } }""",
            {"selector": {**self.repo_selector(), "scheduleName": name}, "timestamp": time.time()},
        )["scheduleDryRun"]
        assert data["__typename"] == "DryRunInstigationTick", data
        return data["evaluationResult"]

    def claimed_pool_slots(self) -> dict[str, list[dict[str, str]]]:
        """Pool → the slots held right now, each {runId, stepKey}."""
        data = self.graphql(
            "{ instance { concurrencyLimits { concurrencyKey claimedSlots { runId stepKey } } } }"
        )
        return {c["concurrencyKey"]: c["claimedSlots"] for c in data["instance"]["concurrencyLimits"]}

    def daemon_health(self) -> dict[str, bool]:
        data = self.graphql(
            "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"
        )
        statuses = data["instance"]["daemonHealth"]["allDaemonStatuses"]
        return {s["daemonType"]: bool(s["healthy"]) for s in statuses if s["required"]}


def partition_keys(deployment: Deployment, asset_key: str = ACTIVITIES_TABLE) -> list[str]:
    """The asset's partition keys as the deployment sees them (oldest first; the last one is today)."""
    data = deployment.graphql(
        """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) {
             __typename ... on AssetNode { partitionKeys } } }""",
        {"key": {"path": asset_key.split("/")}},
    )["assetNodeOrError"]
    assert data["__typename"] == "AssetNode", data
    return data["partitionKeys"]


def tick_schedule_name(deployment: Deployment) -> str:
    """The schedule that runs the tick: the one on the settings' interval (sync.interval_minutes)."""
    minutes = deployment.settings["sync"]["interval_minutes"]
    cron = f"*/{minutes} * * * *"
    matching = [s["name"] for s in deployment.schedules() if s["cronSchedule"] == cron]
    assert len(matching) == 1, f"expected one schedule on {cron!r} (sync.interval_minutes), got {matching}"
    return matching[0]


def _with_tag_dict(run: dict[str, Any]) -> dict[str, Any]:
    return {**run, "tags": {t["key"]: t["value"] for t in run["tags"]}}


def _code_location_loaded(deployment: Deployment) -> bool:
    data = deployment.graphql(
        """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
             locationOrLoadError { __typename ... on PythonError { message }
               ... on RepositoryLocation { repositories { name } } } } } } }"""
    )["workspaceOrError"]
    entries = data.get("locationEntries") or []
    assert entries, data
    entry = entries[0]
    if entry["loadStatus"] != "LOADED":
        return False
    location = entry["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", f"the code location failed to load: {location}"
    deployment.location = entry["name"]
    deployment.repository = location["repositories"][0]["name"]
    return True


def _webserver_answers(deployment: Deployment) -> bool:
    deployment.assert_healthy()
    try:
        return bool(deployment.graphql("{ version }")["version"])
    except requests.ConnectionError:
        return False


def _daemons_healthy(deployment: Deployment) -> bool:
    deployment.assert_healthy()
    health = deployment.daemon_health()
    assert health, "the instance reports no required daemons"
    unhealthy = sorted(name for name, ok in health.items() if not ok)
    assert not unhealthy, f"daemons not (yet) healthy: {unhealthy}"
    return True


@contextmanager
def open_deployment(root: Path, people: int = 300, programs: int = 12) -> Iterator[Deployment]:
    """Start everything under `root`; stop everything (processes, PostgreSQL) on exit."""
    started = time.monotonic()
    home, logs, lake_dir = root / "dagster_home", root / "logs", root / "lake"
    for path in (home, logs, lake_dir):
        path.mkdir(parents=True)
    shutil.copy(PRODUCTION_CONFIG, home / "dagster.yaml")  # the production config, unchanged
    with ExitStack() as stack:
        postgres = ThrowawayPostgres().start()
        stack.callback(postgres.stop)
        sandbox = stack.enter_context(SandboxProcess(people=people, programs=programs))
        # automation on, as in production: the daemon alone runs the first sync, its history and the ticks
        settings = fast_settings_dict(
            marketo__base_url=sandbox.base_url,
            sync__interval_minutes=SYNC_INTERVAL_MINUTES,
            sync__automation=True,
        )
        settings_path = root / "settings.yaml"
        settings_path.write_text(yaml.safe_dump(settings, sort_keys=False))
        env = scrubbed_environ(
            DAGSTER_HOME=str(home),
            MOLEQULE_SETTINGS=str(settings_path),
            MOLEQULE_LAKE_URI=str(lake_dir),
            MARKETO_CLIENT_ID=sandbox.client_id,
            MARKETO_CLIENT_SECRET=sandbox.client_secret,
            **postgres.env,
        )
        port = free_port()
        servers: dict[str, Server] = {}
        deployment = Deployment(
            root=root,
            home=home,
            logs=logs,
            settings_path=settings_path,
            settings=settings,
            lake=Lake(str(lake_dir)),
            sandbox=sandbox,
            url=f"http://127.0.0.1:{port}",
            env=env,
            servers=servers,
        )
        stack.callback(lambda: [server.stop() for server in reversed(list(servers.values()))])
        # The production commands (docs/production.md), from the repository root.
        servers["webserver"] = Server(
            "dagster-webserver",
            [str(BIN / "dagster-webserver"), "-w", str(WORKSPACE), "-h", "127.0.0.1", "-p", str(port)],
            env,
            REPO,
            logs,
        )
        servers["daemon"] = Server(
            "dagster-daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(WORKSPACE)], env, REPO, logs
        )

        def remaining() -> float:  # one startup budget for the three waits
            return max(1.0, STARTUP_TIMEOUT_S - (time.monotonic() - started))

        wait_until(lambda: _webserver_answers(deployment), remaining(), "the webserver to answer GraphQL")
        wait_until(lambda: _code_location_loaded(deployment), remaining(), "the code location to load")
        wait_until(lambda: _daemons_healthy(deployment), remaining(), "every daemon to report healthy")
        yield deployment
