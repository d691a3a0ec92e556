"""Schedule Campaign's `cloneToProgramName` allowance (20 a day, 1020) on the virtual clock, and Get Programs
by Tag, over real HTTP (docs/marketo.md §13.3, §5.8)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.control import empty_state
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.fixtures import MARKETO_FIXTURES, sandbox_access_token

NOW = datetime(2026, 3, 10, 15, 0, 0, tzinfo=UTC)  # 10:00 in Chicago (CDT): midnight is 14 h away
TO_CHICAGO_MIDNIGHT = timedelta(hours=14)
BATCH_CAMPAIGN = 10


@pytest.fixture()
def sandbox() -> Iterator[SandboxServer]:
    state = empty_state(3, NOW)
    state.campaigns = [{"id": BATCH_CAMPAIGN, "name": "Monthly Send", "type": "batch", "isActive": False}]
    config = SandboxConfig.for_profile("fast")
    config.limits.enforce = False
    with SandboxServer(config, now=NOW, state=state) as server:
        yield server


def session_for(sandbox: SandboxServer) -> requests.Session:
    """A session with a fresh token (moving the virtual clock by hours expires the old one)."""
    token = sandbox_access_token(sandbox.base_url)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


@pytest.fixture()
def api(sandbox: SandboxServer) -> requests.Session:
    return session_for(sandbox)


def schedule(sandbox: SandboxServer, api: requests.Session, payload: dict[str, Any] | None) -> dict[str, Any]:
    body = None if payload is None else {"input": payload}
    url = f"{sandbox.base_url}/rest/v1/campaigns/{BATCH_CAMPAIGN}/schedule.json"
    return api.post(url, json=body, timeout=10).json()


def test_clone_to_program_allows_twenty_a_day(sandbox: SandboxServer, api: requests.Session) -> None:
    for index in range(20):
        answer = schedule(sandbox, api, {"cloneToProgramName": f"Clone {index}"})
        assert answer["success"] is True, answer
    assert schedule(sandbox, api, None)["success"] is True  # a schedule without a clone is not limited
    refused = schedule(sandbox, api, {"cloneToProgramName": "Clone 21"})
    assert refused["errors"][0]["code"] == "1020"
    recorded = [r["cloneToProgramName"] for r in sandbox.control.campaign_requests()]
    assert "Clone 21" not in recorded and len([r for r in recorded if r]) == 20

    sandbox.control.advance(TO_CHICAGO_MIDNIGHT.total_seconds() - 1)  # 23:59:59 in Chicago: same day
    api = session_for(sandbox)
    assert schedule(sandbox, api, {"cloneToProgramName": "Clone 21"})["errors"][0]["code"] == "1020"
    sandbox.control.advance(1)  # midnight America/Chicago: a new allowance
    assert schedule(sandbox, api, {"cloneToProgramName": "Clone 21"})["success"] is True


@pytest.mark.parametrize("name", ["", "   ", 42, ["Clone"]])
def test_clone_to_program_must_name_a_program(
    sandbox: SandboxServer, api: requests.Session, name: Any
) -> None:
    answer = schedule(sandbox, api, {"cloneToProgramName": name})
    assert answer["errors"][0]["code"] == "1003"
    assert "cloneToProgramName" in answer["errors"][0]["message"]
    assert sandbox.control.campaign_requests() == []


def test_programs_by_tag_answer_the_no_assets_warning_and_check_their_params(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    url = f"{sandbox.base_url}/rest/asset/v1/program/byTag.json"
    doc = json.loads((MARKETO_FIXTURES / "programs/doc_programs__by-tag-type__response.json").read_text())
    tag = doc["result"][0]["tags"][0]
    none_found = api.get(url, params=tag, timeout=10).json()
    assert none_found["success"] is True and "result" not in none_found  # sandbox programs carry no tags
    assert none_found["warnings"] == ["No assets found for the given search criteria."]
    assert set(none_found) == set(doc) - {"result"}
    for params, code in (
        ({"tagType": "Presenter"}, "701"),
        ({**tag, "maxReturn": 201}, "1003"),
        ({**tag, "tagvalue": "x"}, "1003"),
    ):
        answer = api.get(url, params=params, timeout=10).json()
        assert answer["success"] is False and answer["errors"][0]["code"] == code
        assert answer["warnings"] == []  # the asset envelope, even for errors
    assert sandbox.control.call_counts()["GET /rest/asset/v1/program/byTag.json"] == 4
