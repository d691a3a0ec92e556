"""The gateway's body limit over real HTTP: a chunked body (no Content-Length) over `max_body_bytes` gets 413
and is not counted; a small one is replayed to the route."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.sandbox.conftest import fast_config


@pytest.fixture(scope="module")
def sandbox_config() -> SandboxConfig:
    return fast_config(enforce_limits=False, people=150, activities_per_person=3, programs=6)


def _chunked(size: int) -> Iterator[bytes]:
    body = b'{"action":"updateOnly","lookupField":"id","input":[{"id":1,"firstName":"' + b"x" * size + b'"}]}'
    for start in range(0, len(body), 4096):
        yield body[start : start + 4096]  # a generator body: requests sends it chunked, no Content-Length


def test_chunked_body_over_the_limit_gets_413_and_is_not_counted(
    sandbox: SandboxServer, api: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox.config.limits, "max_body_bytes", 20_000)
    sandbox.control.reset_counters()
    url = f"{sandbox.base_url}/rest/v1/leads.json"
    headers = {"Content-Type": "application/json"}
    refused = api.post(url, data=_chunked(50_000), headers=headers, timeout=10)
    assert refused.status_code == 413 and refused.content == b"Request Entity Too Large"
    assert "POST /rest/v1/leads.json" not in sandbox.control.call_counts()  # the gateway refused it
    small = api.post(url, data=_chunked(1_000), headers=headers, timeout=10)
    assert small.status_code == 200 and small.json()["success"] is True  # the replayed body reached the route
    assert small.json()["result"][0]["id"] == 1
    assert sandbox.control.call_counts()["POST /rest/v1/leads.json"] == 1
