"""Envelope and HTTP conventions (docs/marketo.md §1, §3) through the gate: sizes, _method=GET, list params,
gzip, 605/610/612/609, the request log and call counters."""

from __future__ import annotations

import gzip
import socket
import time

import pytest
import requests

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.sandbox.conftest import fast_config


@pytest.fixture(scope="module")
def sandbox_config() -> SandboxConfig:
    return fast_config(people=150, activities_per_person=5, programs=6)


@pytest.fixture
def api(fresh_api: requests.Session) -> requests.Session:
    return fresh_api  # the call counts asserted below start from zero in every test


def test_uri_over_8kb_is_414_and_post_method_get_carries_it(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    ids = ",".join(str(i) for i in range(1, 41))
    long_values = ",".join(f"person{i:05d}@example.com" for i in range(300))
    url = f"{sandbox.base_url}/rest/v1/leads.json"
    too_long = api.get(url, params={"filterType": "email", "filterValues": long_values}, timeout=10)
    assert too_long.status_code == 414
    via_post = api.post(
        f"{url}?_method=GET", data={"filterType": "email", "filterValues": long_values}, timeout=10
    )
    assert via_post.status_code == 200
    assert via_post.json() == {**via_post.json(), "success": True, "result": []}
    by_id = api.post(f"{url}?_method=GET", data={"filterType": "id", "filterValues": ids}, timeout=10).json()
    assert by_id["success"] is True and by_id["result"]
    # The 414 never reached Marketo's API; both POST …?_method=GET calls count under the GET key.
    assert sandbox.control.call_counts() == {"GET /identity/oauth/token": 1, "GET /rest/v1/leads.json": 2}


def test_body_over_1mb_is_413(sandbox: SandboxServer, api: requests.Session) -> None:
    response = api.post(
        f"{sandbox.base_url}/rest/v1/leads.json",
        data=b"x" * (1024 * 1024 + 1),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 413


def test_list_params_accept_commas_and_repeats(sandbox: SandboxServer, api: requests.Session) -> None:
    url = f"{sandbox.base_url}/rest/v1/leads.json"
    comma = api.get(url, params={"filterType": "id", "filterValues": "1,2,3"}, timeout=10).json()
    repeated = api.get(
        url,
        params=[("filterType", "id"), ("filterValues", "1"), ("filterValues", "2"), ("filterValues", "3")],
        timeout=10,
    ).json()
    assert [r["id"] for r in comma["result"]] == [r["id"] for r in repeated["result"]] == [1, 2, 3]


def test_gzip_only_when_accepted_and_large(sandbox: SandboxServer, api: requests.Session) -> None:
    url = f"{sandbox.base_url}/rest/v1/activities/types.json"
    big = requests.get(url, headers={**api.headers, "Accept-Encoding": "gzip"}, stream=True, timeout=10)
    assert big.headers["Content-Encoding"] == "gzip"
    raw = big.raw.read(decode_content=False)
    assert gzip.decompress(raw).startswith(b'{"requestId"')
    plain = requests.get(url, headers={**api.headers, "Accept-Encoding": "identity"}, timeout=10)
    assert "Content-Encoding" not in plain.headers
    small = api.get(
        f"{sandbox.base_url}/rest/v1/stats/usage.json", headers={"Accept-Encoding": "gzip"}, timeout=10
    )
    assert len(small.content) < 1024
    assert "Content-Encoding" not in small.headers


def test_wrong_method_is_605_and_not_counted(sandbox: SandboxServer, api: requests.Session) -> None:
    body = api.delete(f"{sandbox.base_url}/rest/v1/activities/types.json", timeout=10).json()
    assert body["success"] is False and body["errors"][0]["code"] == "605"
    assert (
        api.get(f"{sandbox.base_url}/rest/v1/stats/usage.json", timeout=10).json()["result"][0]["total"] == 1
    )


def test_unknown_rest_path_is_610(sandbox: SandboxServer, api: requests.Session) -> None:
    body = api.get(f"{sandbox.base_url}/rest/v1/nothing/here.json", timeout=10).json()
    assert body == {
        **body,
        "success": False,
        "errors": [{"code": "610", "message": "Requested resource not found"}],
    }
    asset = api.get(f"{sandbox.base_url}/rest/asset/v1/nothing.json", timeout=10).json()
    assert asset["errors"][0]["code"] == "610" and asset["warnings"] == []


def test_json_writes_need_json_content_type_and_valid_json(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    url = f"{sandbox.base_url}/rest/v1/leads.json"
    wrong_type = api.post(url, data="input=1", headers={"Content-Type": "text/plain"}, timeout=10).json()
    assert wrong_type["errors"][0]["code"] == "612"
    broken = api.post(url, data="{not json", headers={"Content-Type": "application/json"}, timeout=10).json()
    assert broken["errors"][0]["code"] == "609"


def test_request_log_and_counters_never_hold_secrets(sandbox: SandboxServer, api: requests.Session) -> None:
    api.get(f"{sandbox.base_url}/rest/v1/lead/1.json", timeout=10)
    log = sandbox.control.request_log()
    entry = log[-1]
    assert entry["endpoint"] == "GET /rest/v1/lead/{id}.json"
    assert entry["api_user"] == "molequle@sandbox" and entry["status"] == 200 and entry["error_code"] is None
    text = str(log)
    assert "sandbox-secret" not in text
    assert api.headers["Authorization"].split()[1] not in text
    assert sandbox.control.call_counts()["GET /rest/v1/lead/{id}.json"] == 1


def test_control_surface_is_not_a_marketo_call(sandbox: SandboxServer, api: requests.Session) -> None:
    counters = requests.get(f"{sandbox.base_url}/_sandbox/counters", timeout=10).json()
    assert counters["calls"] == {"GET /identity/oauth/token": 1}
    assert requests.get(f"{sandbox.base_url}/elsewhere", timeout=10).status_code == 404


def test_a_sandbox_bug_is_answered_611_system_error_not_a_bare_500(
    sandbox: SandboxServer, api: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from molequle_dagster.sandbox import routes_leads

    def broken() -> list:
        raise RuntimeError("simulated sandbox bug")

    monkeypatch.setattr(routes_leads, "describe_lead", broken)
    before = len(sandbox.control.internal_errors())
    response = api.get(f"{sandbox.base_url}/rest/v1/leads/describe.json", timeout=10)
    assert response.status_code == 200
    assert response.json()["errors"] == [{"code": "611", "message": "System error"}]
    (recorded,) = sandbox.control.internal_errors()[before:]
    assert recorded["path"] == "/rest/v1/leads/describe.json" and "simulated sandbox bug" in recorded["error"]


def _wait_for_call(sandbox: SandboxServer, suffix: str, after: int) -> None:
    deadline = time.monotonic() + 10
    while not any(r["path"].endswith(suffix) for r in sandbox.control.request_log()[after:]):
        assert time.monotonic() < deadline, f"no call to {suffix} finished"
        time.sleep(0.02)


CREATE_BODY = {"fields": ["id"], "format": "CSV",
               "filter": {"createdAt": {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-10T00:00:00Z"}}}


def test_a_slow_answer_is_late_but_its_request_was_received(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    """A `slow` fault models a lost answer: the create whose client timed out had made its job already
    (before the answer was due: a client that looks for it then finds it)."""
    sandbox.control.inject_fault("POST /bulk/v1/leads/export/create.json", "slow", nth=1, seconds=3.0)
    errors, calls = len(sandbox.control.internal_errors()), len(sandbox.control.request_log())
    jobs = len(sandbox.control.export_jobs())
    with pytest.raises(requests.exceptions.Timeout):
        api.post(f"{sandbox.base_url}/bulk/v1/leads/export/create.json", json=CREATE_BODY, timeout=0.5)
    deadline = time.monotonic() + 10
    while len(sandbox.control.export_jobs()) == jobs:
        assert time.monotonic() < deadline, "the create never made its job"
        time.sleep(0.02)
    # ... while its answer was still held: the call ends (and is logged) only after the hold
    assert not any(r["path"].endswith("/create.json") for r in sandbox.control.request_log()[calls:])
    _wait_for_call(sandbox, "/create.json", calls)
    assert sandbox.control.internal_errors()[errors:] == []


def test_a_client_that_hangs_up_before_sending_its_body_is_not_a_sandbox_bug(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    token = api.headers["Authorization"]
    errors, calls = len(sandbox.control.internal_errors()), len(sandbox.control.request_log())
    jobs = len(sandbox.control.export_jobs())
    host, port = sandbox.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(
            f"POST /bulk/v1/leads/export/create.json HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"fields\"".encode()
        )
    _wait_for_call(sandbox, "/create.json", calls)
    assert sandbox.control.internal_errors()[errors:] == []
    assert len(sandbox.control.export_jobs()) == jobs
