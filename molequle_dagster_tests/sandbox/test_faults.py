"""Scripted and random faults over real HTTP: every generic kind, Nth-call and rate triggering, and the
bulk-only kinds handed through to the routes."""

from __future__ import annotations

import json

import pytest
import requests

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.control import empty_state
from molequle_dagster.sandbox.model import InstanceState
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.sandbox.conftest import NOW, fast_config

USAGE = "/rest/v1/stats/usage.json"
USAGE_KEY = f"GET {USAGE}"


@pytest.fixture(scope="module")
def sandbox_config() -> SandboxConfig:
    return fast_config(enforce_limits=False)  # these tests make many calls; limits have their own tests


@pytest.fixture(scope="module")
def sandbox_state() -> InstanceState:
    return empty_state(1, NOW)


@pytest.fixture
def api(fresh_api: requests.Session) -> requests.Session:
    return fresh_api  # every test starts with no faults and zeroed counters


def usage(sandbox: SandboxServer, api: requests.Session, **kwargs: object) -> requests.Response:
    return api.get(f"{sandbox.base_url}{USAGE}", timeout=kwargs.pop("timeout", 10), **kwargs)


@pytest.mark.parametrize(
    "kind,status", [("http_500", 500), ("http_502", 502), ("http_503", 503), ("http_504", 504)]
)
def test_http_status_fault_answers_that_status_once(
    sandbox: SandboxServer, api: requests.Session, kind: str, status: int
) -> None:
    sandbox.control.inject_fault(USAGE_KEY, kind)
    assert usage(sandbox, api).status_code == status
    assert usage(sandbox, api).status_code == 200  # times=1: only the next call


@pytest.mark.parametrize(
    "kind,code",
    [
        ("token_invalid", "601"),
        ("token_expired", "602"),
        ("timeout_604", "604"),
        ("rate_limit", "606"),
        ("daily_quota", "607"),
        ("unavailable_608", "608"),
        ("system_error_611", "611"),
        ("concurrency_limit", "615"),
        ("error_502", "502"),
    ],
)
def test_envelope_fault_answers_its_code_in_an_http_200_envelope(
    sandbox: SandboxServer, api: requests.Session, kind: str, code: str
) -> None:
    sandbox.control.inject_fault(USAGE_KEY, kind)
    response = usage(sandbox, api)
    assert response.status_code == 200
    assert response.json()["success"] is False
    assert response.json()["errors"][0]["code"] == code


def test_asterisked_fault_codes_are_not_counted(sandbox: SandboxServer, api: requests.Session) -> None:
    sandbox.control.inject_fault(USAGE_KEY, "602")
    usage(sandbox, api)
    sandbox.control.inject_fault(USAGE_KEY, "606")
    usage(sandbox, api)
    assert usage(sandbox, api).json()["result"][0]["total"] == 2  # the 606 and this call; not the 602


def test_connection_reset_closes_without_a_response(sandbox: SandboxServer, api: requests.Session) -> None:
    sandbox.control.inject_fault(USAGE_KEY, "connection_reset")
    with pytest.raises(requests.ConnectionError):
        usage(sandbox, api)
    assert usage(sandbox, api).status_code == 200


def test_slow_response_outlasts_the_client_timeout(sandbox: SandboxServer, api: requests.Session) -> None:
    sandbox.control.inject_fault(USAGE_KEY, "slow", seconds=30)
    with pytest.raises(requests.Timeout):
        usage(sandbox, api, timeout=0.3)
    sandbox.control.clear_faults()  # lets the held response go so the server is idle again
    assert usage(sandbox, api).status_code == 200


def test_html_error_page_from_a_proxy(sandbox: SandboxServer, api: requests.Session) -> None:
    sandbox.control.inject_fault(USAGE_KEY, "html_502")
    response = usage(sandbox, api)
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "<html>" in response.text


def test_malformed_json_fault_sends_a_json_content_type_that_does_not_parse(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    sandbox.control.inject_fault(USAGE_KEY, "malformed_json")
    response = usage(sandbox, api)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_nth_call_and_times_make_a_burst(sandbox: SandboxServer, api: requests.Session) -> None:
    sandbox.control.inject_fault(USAGE_KEY, "606", nth=3, times=2)
    outcomes = [usage(sandbox, api).json()["success"] for _ in range(6)]
    assert outcomes == [True, True, False, False, True, True]


def test_rate_faults_are_deterministic_per_seed(sandbox: SandboxServer, api: requests.Session) -> None:
    def run(seed: int) -> list[int]:
        sandbox.control.clear_faults()
        sandbox.control.inject_fault(USAGE_KEY, "http_503", rate=0.5, times=None, seed=seed)
        return [usage(sandbox, api).status_code for _ in range(20)]

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert first != other
    assert 0 < first.count(503) < 20


def test_glob_endpoints_and_other_endpoints_untouched(sandbox: SandboxServer, api: requests.Session) -> None:
    sandbox.control.inject_fault("GET /rest/v1/stats/*", "http_500", times=None)
    assert usage(sandbox, api).status_code == 500
    assert api.get(f"{sandbox.base_url}/rest/v1/stats/errors.json", timeout=10).status_code == 500
    assert api.get(f"{sandbox.base_url}/rest/v1/activities/types.json", timeout=10).status_code == 200


def test_placeholder_names_in_rules_do_not_matter(sandbox: SandboxServer, api: requests.Session) -> None:
    sandbox.control.inject_fault("GET /rest/v1/lead/{leadId}.json", "http_500")
    assert api.get(f"{sandbox.base_url}/rest/v1/lead/1.json", timeout=10).status_code == 500
    assert sandbox.control.request_log()[-1]["endpoint"] == "GET /rest/v1/lead/{id}.json"


def test_bulk_only_kinds_refuse_an_endpoint_they_cannot_act_on(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    with pytest.raises(ValueError, match="endpoint: 'queue_full' acts only on POST /bulk/v1/"):
        sandbox.control.inject_fault(USAGE_KEY, "queue_full")
    sandbox.control.inject_fault("*", "queue_full", times=None)  # a glob: only create/enqueue calls count
    assert usage(sandbox, api).json()["success"] is True
    (rule,) = sandbox.control.faults()
    assert (rule["seen"], rule["fired"]) == (0, 0) and sandbox.control.request_log()[-1]["fault"] is None


def test_unknown_kind_is_a_clear_error(sandbox: SandboxServer) -> None:
    with pytest.raises(ValueError, match="kind: unknown fault kind 'explode'"):
        sandbox.control.inject_fault(USAGE_KEY, "explode")
    with pytest.raises(ValueError, match="nth/rate"):
        sandbox.control.inject_fault(USAGE_KEY, "http_500", nth=1, rate=0.5)
