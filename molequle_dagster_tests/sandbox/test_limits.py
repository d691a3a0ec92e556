"""Instance-wide limits (docs/marketo.md §4.1) over real HTTP on the virtual clock: 606 rate, 615
concurrency, 607 daily quota (midnight America/Chicago), and the stats/usage endpoints that report them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.control import empty_state
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.fixtures import MARKETO_FIXTURES
from molequle_dagster_tests.sandbox.conftest import NOW, authorized_session, call_codes

# NOW is 10:00 CDT; the next Chicago midnight (the daily quota reset) is 05:00 UTC
FIXTURES = MARKETO_FIXTURES / "usage"
USAGE = "/rest/v1/stats/usage.json"


def start(**limits: object) -> SandboxServer:
    config = SandboxConfig.for_profile("fast")
    for name, value in limits.items():
        setattr(config.limits, name, value)
    return SandboxServer(config, now=NOW, state=empty_state(1, NOW)).start()


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    server = start()
    yield server
    server.stop()


def test_rate_limit_606_across_clients_in_a_trailing_window(sandbox: SandboxServer) -> None:
    mine = authorized_session(sandbox)
    other = authorized_session(sandbox, "other-integration", "other-secret")
    assert call_codes(sandbox, mine, 60) == [None] * 60
    assert call_codes(sandbox, other, 40) == [None] * 40
    rejected = other.get(f"{sandbox.base_url}{USAGE}", timeout=10).json()
    assert rejected["errors"] == [
        {"code": "606", "message": "Max rate limit '100' exceeded with in '20' secs"}
    ]
    sandbox.control.advance(19)
    assert call_codes(sandbox, mine, 1) == ["606"]
    sandbox.control.advance(1.5)  # every earlier call is now outside the trailing 20 s
    assert call_codes(sandbox, mine, 1) == [None]


def test_concurrency_limit_615_with_ten_calls_in_flight(sandbox: SandboxServer) -> None:
    api = authorized_session(sandbox)
    sandbox.control.inject_fault(f"GET {USAGE}", "slow", times=10, seconds=30)
    results: list[dict] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                requests.get(f"{sandbox.base_url}{USAGE}", headers=api.headers, timeout=30).json()
            )
        )
        for _ in range(10)
    ]
    for thread in threads:
        thread.start()
    assert sandbox.control.wait_for_in_flight(10, timeout=10)
    blocked = api.get(f"{sandbox.base_url}{USAGE}", timeout=10).json()
    assert blocked["errors"] == [{"code": "615", "message": "Concurrent access limit '10' reached"}]
    sandbox.control.clear_faults()  # releases the held calls
    for thread in threads:
        thread.join(timeout=10)
    assert [r["success"] for r in results] == [True] * 10
    assert call_codes(sandbox, api, 1) == [None]


def test_daily_quota_607_resets_at_midnight_chicago() -> None:
    with start(daily_quota=5) as sandbox:
        api = authorized_session(sandbox)
        assert call_codes(sandbox, api, 6) == [None] * 5 + ["607"]
        sandbox.control.advance((datetime(2026, 3, 11, 4, 59, 59, tzinfo=UTC) - NOW).total_seconds())
        api = authorized_session(sandbox)  # the morning's token has expired by now
        assert call_codes(sandbox, api, 1) == ["607"]  # 23:59:59 in Chicago: still the same quota day
        sandbox.control.advance(1)
        assert call_codes(sandbox, api, 1) == [None]


def test_exhaust_daily_quota_control(sandbox: SandboxServer) -> None:
    api = authorized_session(sandbox)
    sandbox.control.exhaust_daily_quota()
    assert call_codes(sandbox, api, 1) == ["607"]


def test_limits_can_be_switched_off() -> None:
    with start(enforce=False, rate_calls=3) as sandbox:
        assert call_codes(sandbox, authorized_session(sandbox), 5) == [None] * 5


def test_usage_matches_the_documented_shape_and_counts_per_user(sandbox: SandboxServer) -> None:
    mine = authorized_session(sandbox)
    other = authorized_session(sandbox, "other-integration", "other-secret")
    call_codes(sandbox, other, 2)
    body = mine.get(f"{sandbox.base_url}{USAGE}", timeout=10).json()
    doc = json.loads((FIXTURES / "doc_usage__daily-usage__response.json").read_text())
    assert set(body) == set(doc)
    assert set(body["result"][0]) == set(doc["result"][0])
    assert set(body["result"][0]["users"][0]) == set(doc["result"][0]["users"][0])
    assert body["result"][0]["date"] == "2026-03-10"
    assert body["result"][0]["total"] == 3
    assert body["result"][0]["users"] == [
        {"userId": "molequle@sandbox", "count": 1},
        {"userId": "other@sandbox", "count": 2},
    ]
    week = mine.get(f"{sandbox.base_url}/rest/v1/stats/usage/last7days.json", timeout=10).json()["result"]
    assert len(week) == 7 and week[0]["total"] == 4


def test_errors_stats_report_limit_errors_in_the_documented_shape() -> None:
    with start(daily_quota=3) as sandbox:
        api = authorized_session(sandbox)
        call_codes(sandbox, api, 4)
        sandbox.context.limiter.limits.daily_quota = 10  # room for the stats call itself
        body = api.get(f"{sandbox.base_url}/rest/v1/stats/errors.json", timeout=10).json()
    doc = json.loads((FIXTURES / "doc_usage__daily-errors__response.json").read_text())
    assert set(body["result"][0]) == set(doc["result"][0])
    assert body["result"][0]["errors"] == [{"errorCode": "607", "count": 1}]
    assert body["result"][0]["total"] == 1
