"""The `/_sandbox/` HTTP control surface and the Python handle: clock, faults, counters, request log,
ground truth, churn and status renames; never counted as Marketo calls; bad input named clearly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.sandbox.conftest import access_token, fast_config


@pytest.fixture(scope="module")
def sandbox_config() -> SandboxConfig:
    return fast_config(people=120, activities_per_person=4, programs=6)


def control(sandbox: SandboxServer, method: str, path: str, **kwargs: object) -> requests.Response:
    return requests.request(method, f"{sandbox.base_url}/_sandbox{path}", timeout=10, **kwargs)


def usage_with(sandbox: SandboxServer, token: str) -> dict:
    """GET stats/usage.json with this bearer token (not a session: these tests change tokens)."""
    return requests.get(
        f"{sandbox.base_url}/rest/v1/stats/usage.json",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()


def test_clock_is_frozen_advanced_and_read_over_http(sandbox: SandboxServer) -> None:
    frozen = control(sandbox, "POST", "/clock/freeze", json={"at": "2026-04-01T00:00:00Z"}).json()
    assert frozen == {"now": "2026-04-01T00:00:00Z"}
    advanced = control(sandbox, "POST", "/clock/advance", json={"seconds": 60}).json()
    assert advanced == {"now": "2026-04-01T00:01:00Z"}
    assert control(sandbox, "GET", "/clock").json() == {"now": "2026-04-01T00:01:00Z", "frozen": True}
    assert sandbox.control.clock.now() == datetime(2026, 4, 1, 0, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "path,body,field",
    [
        ("/clock/advance", {"seconds": "soon"}, "seconds"),
        ("/clock/freeze", {"at": "yesterday"}, "at"),
        ("/faults", {"endpoint": "*", "kind": "explode"}, "kind"),
        ("/faults", {"endpoint": "*", "kind": "http_500", "when": 3}, "when"),
        ("/faults", {"kind": "http_500"}, "endpoint"),
        ("/rename-status", {"channel": "Webinar", "old": "Invited"}, "new"),
    ],
)
def test_bad_control_input_names_the_field(sandbox: SandboxServer, path: str, body: dict, field: str) -> None:
    response = control(sandbox, "POST", path, json=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"{field}:")


def test_faults_counters_and_requests_over_http(sandbox: SandboxServer) -> None:
    control(sandbox, "POST", "/counters/reset")
    rule = control(
        sandbox,
        "POST",
        "/faults",
        json={"endpoint": "GET /rest/v1/stats/usage.json", "kind": "http_502", "nth": 2},
    ).json()
    assert rule["kind"] == "http_502" and rule["nth"] == 2
    token = access_token(sandbox)
    headers = {"Authorization": f"Bearer {token}"}
    statuses = [
        requests.get(f"{sandbox.base_url}/rest/v1/stats/usage.json", headers=headers, timeout=10).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 502, 200]
    assert control(sandbox, "GET", "/faults").json()[0]["fired"] == 1
    counters = control(sandbox, "GET", "/counters").json()
    assert counters["calls"] == {"GET /identity/oauth/token": 1, "GET /rest/v1/stats/usage.json": 3}
    assert counters["usage"][0]["total"] == 3  # identity and control calls are not Marketo calls
    log = control(sandbox, "GET", "/requests").json()
    assert [entry["status"] for entry in log[1:]] == [200, 502, 200]
    assert control(sandbox, "DELETE", "/faults").json() == {"ok": True}
    assert control(sandbox, "GET", "/faults").json() == []


def test_truth_people_over_http(sandbox: SandboxServer) -> None:
    people = control(sandbox, "GET", "/truth/people", params={"fields": "email,leadScore"}).json()
    assert len(people) == sandbox.control.state.people.num_rows
    assert set(people[0]) == {"id", "email", "leadScore"}
    assert control(sandbox, "GET", "/truth/people", params={"fields": "shoeSize"}).status_code == 400


def test_churn_and_rename_status_over_http(sandbox: SandboxServer) -> None:
    before = sandbox.control.state.people.num_rows
    report = control(sandbox, "POST", "/churn", json={"rates": {"new_people": 0.1}, "seed": 3})
    assert report.status_code == 200, report.text
    assert sandbox.control.state.people.num_rows > before
    channel = sandbox.control.state.channels[0]
    old = channel["progressionStatuses"][1]["name"]
    renamed = control(
        sandbox,
        "POST",
        "/rename-status",
        json={"channel": channel["name"], "old": old, "new": f"{old} (renamed)"},
    )
    assert renamed.status_code == 200, renamed.text
    assert sandbox.control.state.channels[0]["progressionStatuses"][1]["name"] == f"{old} (renamed)"


def test_quota_and_tokens_controls(sandbox: SandboxServer) -> None:
    token = access_token(sandbox)
    control(sandbox, "POST", "/tokens/expire")
    body = usage_with(sandbox, token)
    assert body["errors"][0]["code"] == "602"
    control(sandbox, "POST", "/quota/exhaust")
    fresh = access_token(sandbox)
    body = usage_with(sandbox, fresh)
    assert body["errors"][0]["code"] == "607"
    sandbox.control.reset_counters()
