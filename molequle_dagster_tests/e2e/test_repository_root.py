"""A fresh clone's root works with nothing set (issue 14 item 7): `dagster dev` serves the UI on the embedded
SQLite instance and `dagster definitions validate` passes; production is one switch away
(DAGSTER_HOME=deploy/production).

"A fresh clone" is the repository's tracked files as they are in the working tree (so uncommitted edits are
tested too) in a new directory: no .venv, no .dagster_home, no lake, no environment variables.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from molequle_dagster_tests.e2e.deployment import BIN, Deployment
from molequle_dagster_tests.e2e.processes import REPO, Server, free_port, scrubbed_environ, wait_until

DEV_STARTUP_TIMEOUT_S = 120.0
DEV_SHUTDOWN_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clone = tmp_path_factory.mktemp("fresh") / "molequle-dagster"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    for name in filter(None, tracked.split("\0")):
        source = REPO / name
        if source.is_file():  # a file deleted in the working tree is not in a clone of it either
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    return clone


@pytest.fixture
def dagster_dev(fresh_clone: Path, tmp_path: Path) -> Iterator[tuple[Server, str]]:
    port = free_port()
    server = Server(
        "dagster-dev",
        [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port)],
        scrubbed_environ(),  # nothing set: no DAGSTER_HOME, no PostgreSQL, no Marketo credentials
        fresh_clone,
        tmp_path,
    )
    try:
        yield server, f"http://127.0.0.1:{port}/graphql"
    finally:
        server.stop()


def _graphql(url: str, query: str) -> dict:
    response = requests.post(url, json={"query": query}, timeout=30)
    response.raise_for_status()
    return response.json()["data"]


def test_dagster_dev_serves_the_ui_on_the_embedded_instance(dagster_dev, fresh_clone: Path) -> None:
    server, url = dagster_dev

    def location_loaded() -> dict | None:
        server.assert_alive()
        try:
            data = _graphql(
                url,
                """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
                     locationOrLoadError { __typename ... on PythonError { message } } } } }
                   instance { info } assetNodes { assetKey { path } } }""",
            )
        except requests.ConnectionError:
            return None
        entry = data["workspaceOrError"]["locationEntries"][0]
        if entry["loadStatus"] != "LOADED":
            return None
        assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
        return data

    data = wait_until(location_loaded, DEV_STARTUP_TIMEOUT_S, "dagster dev to serve the code location")
    info = data["instance"]["info"]
    assert "SqliteRunStorage" in info  # the embedded instance, not PostgreSQL
    assert "default_limit: 2" in info  # the same Marketo pools as production
    assert {"people", "activities"} <= {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]}
    # Ctrl-C, as a developer stops it: it exits cleanly and removes its temporary instance
    server.process.send_signal(signal.SIGINT)
    server.process.wait(DEV_SHUTDOWN_TIMEOUT_S)
    assert "DAGSTER_PG" not in server.log_path.read_text()
    assert not list(fresh_clone.glob(".tmp_dagster_home_*"))


def test_definitions_validate_passes_with_nothing_set(fresh_clone: Path) -> None:
    done = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate"],
        cwd=fresh_clone,
        env=scrubbed_environ(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "All code locations passed validation" in done.stderr + done.stdout


def test_production_instance_is_one_switch_away(fresh_clone: Path, deployment: Deployment) -> None:
    """DAGSTER_HOME=deploy/production plus the DAGSTER_PG_* secrets: the same clone runs on PostgreSQL."""
    pg = {k: v for k, v in deployment.env.items() if k.startswith("DAGSTER_PG_")}
    home = fresh_clone / "deploy" / "production"
    done = subprocess.run(
        [str(BIN / "dagster"), "instance", "info"],
        cwd=fresh_clone,
        env=scrubbed_environ(DAGSTER_HOME=str(home), **pg),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    info = done.stdout
    assert "PostgresRunStorage" in info and "PostgresEventLogStorage" in info, info
    assert "retry_on_asset_or_op_failure: true" in info and "free_slots_after_run_end_seconds" in info, info
