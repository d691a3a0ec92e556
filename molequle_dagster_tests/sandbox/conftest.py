"""Shared pieces of the sandbox's HTTP tests: a sandbox per module, sessions that hold a token, and small
request and fixture helpers.

A module picks its instance by overriding `sandbox_config` (use `fast_config`) and/or `sandbox_state`; a
module whose tests must each see zeroed counters and no faults asks for `fresh_api` instead of `api`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from molequle_dagster.sandbox.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SandboxConfig
from molequle_dagster.sandbox.model import InstanceState
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.fixtures import MARKETO_FIXTURES, sandbox_access_token

# 10:00 CDT in Chicago; the next Chicago midnight (the daily quota reset) is 05:00 UTC
NOW = datetime(2026, 3, 10, 15, 0, 0, tzinfo=UTC)
CREDENTIALS = {
    "grant_type": "client_credentials",
    "client_id": DEFAULT_CLIENT_ID,
    "client_secret": DEFAULT_CLIENT_SECRET,
}


def fast_config(*, enforce_limits: bool | None = None, **data: int) -> SandboxConfig:
    """The "fast" profile with instance sizes overridden, e.g. `fast_config(people=100, programs=6)`;
    `enforce_limits=False` for modules that make many calls (limits have their own tests)."""
    config = SandboxConfig.for_profile("fast")
    if enforce_limits is not None:
        config.limits.enforce = enforce_limits
    for name, value in data.items():
        if not hasattr(config.data, name):
            raise AttributeError(f"fast_config: SandboxConfig.data has no field {name!r}")
        setattr(config.data, name, value)
    return config


def access_token(
    sandbox: SandboxServer, client_id: str = DEFAULT_CLIENT_ID, secret: str = DEFAULT_CLIENT_SECRET
) -> str:
    return sandbox_access_token(sandbox.base_url, client_id, secret)


def authorized_session(
    sandbox: SandboxServer, client_id: str = DEFAULT_CLIENT_ID, secret: str = DEFAULT_CLIENT_SECRET
) -> requests.Session:
    """A session whose calls carry a fresh bearer token for the given API client."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {access_token(sandbox, client_id, secret)}"
    return session


def rest_get(sandbox: SandboxServer, api: requests.Session, path: str, **params: object) -> dict:
    """GET /rest/v1/{path}; the parsed envelope."""
    return api.get(f"{sandbox.base_url}/rest/v1/{path}", params=params, timeout=10).json()


def rest_post(sandbox: SandboxServer, api: requests.Session, path: str, body: dict | None) -> dict:
    """POST a JSON body to /rest/v1/{path}; the parsed envelope."""
    return api.post(f"{sandbox.base_url}/rest/v1/{path}", json=body, timeout=10).json()


def bulk_create(sandbox: SandboxServer, api: requests.Session, entity: str, body: dict) -> dict:
    """POST /bulk/v1/{entity}/export/create.json; the parsed envelope."""
    return api.post(f"{sandbox.base_url}/bulk/v1/{entity}/export/create.json", json=body, timeout=10).json()


def export_csv(sandbox: SandboxServer, api: requests.Session, entity: str, body: dict) -> tuple[dict, str]:
    """Create, enqueue and download one export on a "fast" sandbox: (the Completed job, the file's text)."""
    base = f"{sandbox.base_url}/bulk/v1/{entity}/export"
    created = bulk_create(sandbox, api, entity, body)
    assert created["success"] is True, created
    export_id = created["result"][0]["exportId"]
    assert api.post(f"{base}/{export_id}/enqueue.json", timeout=10).json()["success"] is True
    assert sandbox.control.wait_for_exports()  # the file is written off the request path
    job = api.get(f"{base}/{export_id}/status.json", timeout=10).json()["result"][0]
    assert job["status"] == "Completed", job
    return job, api.get(f"{base}/{export_id}/file.json", timeout=30).text


def call_codes(
    sandbox: SandboxServer, api: requests.Session, n: int, path: str = "/rest/v1/stats/usage.json"
) -> list[str | None]:
    """Make `n` GET calls; the error code of each (None for a success)."""
    out = []
    for _ in range(n):
        body = api.get(f"{sandbox.base_url}{path}", timeout=10).json()
        out.append(None if body["success"] else body["errors"][0]["code"])
    return out


def error_code(envelope: dict) -> str | None:
    """The first error code of a failed envelope, None on success."""
    return None if envelope["success"] else envelope["errors"][0]["code"]


def load_fixture(path: str) -> Any:
    """A captured response or doc example, by its path under the Marketo fixtures folder."""
    return json.loads((MARKETO_FIXTURES / path).read_text())


@pytest.fixture(scope="module")
def sandbox_config() -> SandboxConfig:
    return fast_config()


@pytest.fixture(scope="module")
def sandbox_state() -> InstanceState | None:
    """None: the sandbox generates an instance from `sandbox_config`."""
    return None


@pytest.fixture(scope="module")
def sandbox(sandbox_config: SandboxConfig, sandbox_state: InstanceState | None) -> Iterator[SandboxServer]:
    with SandboxServer(sandbox_config, now=NOW, state=sandbox_state) as server:
        yield server


@pytest.fixture(scope="module")
def api(sandbox: SandboxServer) -> requests.Session:
    """One session for the whole module (the sandbox keeps one live token per client anyway)."""
    return authorized_session(sandbox)


@pytest.fixture
def fresh_api(sandbox: SandboxServer) -> Iterator[requests.Session]:
    """A session per test, taken after faults are cleared and counters zeroed; faults cleared after too."""
    sandbox.control.clear_faults()
    sandbox.control.reset_counters()
    yield authorized_session(sandbox)
    sandbox.control.clear_faults()
