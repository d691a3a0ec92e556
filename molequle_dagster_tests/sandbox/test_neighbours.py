"""Other integrations on the instance take their share of every limit, as a pure function of the virtual
clock: the rate window (606), the calls in flight (615), the daily quota (607), the export queue (1029)
and the processing slots; they show in the usage statistics; and they are off until turned on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests

from molequle_dagster.sandbox.config import NeighbourSettings, SandboxConfig
from molequle_dagster.sandbox.model import InstanceState
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.sandbox.bulk_fixtures import small_state
from molequle_dagster_tests.sandbox.conftest import NOW, authorized_session, call_codes, fast_config

USAGE = "/rest/v1/stats/usage.json"
LEADS = "/bulk/v1/leads/export"
BODY = {
    "fields": ["id", "email"],
    "filter": {"createdAt": {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-31T00:00:00Z"}},
}
CYCLE = 600  # NOW is the start of one of their call cycles (an epoch multiple of 600 s)


@pytest.fixture(scope="module")
def sandbox_config() -> SandboxConfig:
    return fast_config()  # limits enforced


@pytest.fixture(scope="module")
def sandbox_state() -> InstanceState:
    return small_state()


@pytest.fixture
def busy(sandbox: SandboxServer) -> Iterator[SandboxServer]:
    """Neighbours at full load, from the start of one of their bursts; off and back at NOW afterwards."""
    sandbox.control.freeze(NOW)
    sandbox.control.reset_counters()
    sandbox.control.set_neighbours(1.0)
    yield sandbox
    sandbox.config.neighbours = NeighbourSettings()  # off, with the default shares
    sandbox.control.freeze(NOW)
    sandbox.control.reset_counters()


def test_they_are_off_by_default(sandbox: SandboxServer) -> None:
    assert SandboxConfig().neighbours.level == 0
    load = sandbox.control.neighbours()["load"]
    assert load["calls_in_window"] == load["in_flight"] == load["exports_processing"] == 0
    assert load["calls_today"] == {}


def test_their_load_is_a_function_of_the_virtual_clock(busy: SandboxServer) -> None:
    busy.control.advance(20)  # 20 s into their burst: a full window of their calls
    first = busy.control.neighbours()["load"]
    assert first == busy.control.neighbours()["load"]  # asking again changes nothing
    assert first["calls_in_window"] == 40 and first["in_flight"] == 3  # 40% of 100 per 20 s, 30% of 10
    busy.control.advance(200)  # their burst is over
    quiet = busy.control.neighbours()["load"]
    assert quiet["calls_in_window"] == 0 and quiet["in_flight"] == 0
    assert sum(quiet["calls_today"].values()) > sum(first["calls_today"].values())


def test_they_take_part_of_the_rate_window(busy: SandboxServer) -> None:
    busy.control.advance(20)
    api = authorized_session(busy)
    answers = call_codes(busy, api, 61)
    assert answers[:60] == [None] * 60 and answers[60] == "606"  # 100 - their 40
    busy.control.advance(CYCLE - 40)  # a quiet moment before their next burst: the window is ours
    busy.control.reset_counters()
    assert call_codes(busy, authorized_session(busy), 100) == [None] * 100


def test_they_hold_calls_in_flight(busy: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    busy.control.advance(20)
    monkeypatch.setattr(busy.config.limits, "max_in_flight", 4)  # theirs round(0.3 * 4) = 1
    api = authorized_session(busy)
    busy.control.inject_fault(f"GET {USAGE}", "slow", times=3, seconds=5)
    held = [threading.Thread(target=call_codes, args=(busy, authorized_session(busy), 1)) for _ in range(3)]
    for thread in held:
        thread.start()
    assert busy.control.wait_for_in_flight(3)
    assert call_codes(busy, api, 1) == ["615"]  # our 3 + their 1 = 4
    busy.control.clear_faults()
    for thread in held:
        thread.join()


def test_they_use_the_daily_quota_and_show_in_usage(
    busy: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(busy.config.limits, "daily_quota", 100)
    busy.control.set_neighbours(1.0, daily_share=1.0)  # over a whole day they would use all of it
    busy.control.advance(12 * 3600)
    api = authorized_session(busy)
    (today,) = api.get(f"{busy.base_url}{USAGE}", timeout=10).json()["result"]
    theirs = {u["userId"]: u["count"] for u in today["users"] if u["userId"].endswith("@customer")}
    assert set(theirs) == set(busy.config.neighbours.users)
    assert 80 < sum(theirs.values()) < 100  # 22 of the quota day's 24 hours have passed in Chicago
    assert today["total"] == sum(u["count"] for u in today["users"])
    assert busy.control.calls_by_user() == {u["userId"]: u["count"] for u in today["users"]}
    left = 100 - sum(theirs.values()) - 1  # the usage call above was ours
    assert call_codes(busy, api, left + 1) == [None] * left + ["607"]


def test_they_hold_export_slots_and_our_job_starts_when_theirs_finish(
    busy: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(busy.config.bulk, "processing_slots", 2)
    busy.control.set_neighbours(1.0, processing_slots=2, export_cycle_s=3600, export_busy_share=0.25)
    api = authorized_session(busy)
    export_id = api.post(f"{busy.base_url}{LEADS}/create.json", json=BODY, timeout=10).json()["result"][0][
        "exportId"
    ]
    api.post(f"{busy.base_url}{LEADS}/{export_id}/enqueue.json", timeout=10)
    status = api.get(f"{busy.base_url}{LEADS}/{export_id}/status.json", timeout=10).json()["result"][0]
    assert status["status"] == "Queued"  # both processing slots are theirs for 15 minutes
    busy.control.advance(15 * 60 + 1)
    assert busy.control.wait_for_exports()
    api = authorized_session(busy)
    done = api.get(f"{busy.base_url}{LEADS}/{export_id}/status.json", timeout=10).json()["result"][0]
    assert done["status"] == "Completed"
    started = (NOW + timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert done["startedAt"] == started  # exactly when their busy phase ended: deterministic


def test_they_fill_part_of_the_export_queue(busy: SandboxServer) -> None:
    busy.control.set_neighbours(1.0, queue_share=1.0)  # every place in the queue holds one of theirs
    api = authorized_session(busy)
    export_id = api.post(f"{busy.base_url}{LEADS}/create.json", json=BODY, timeout=10).json()["result"][0][
        "exportId"
    ]
    refused = api.post(f"{busy.base_url}{LEADS}/{export_id}/enqueue.json", timeout=10).json()
    assert refused["errors"] == [{"code": "1029", "message": "Too many jobs in queue"}]


def test_the_control_surface_turns_them_on_over_http(sandbox: SandboxServer) -> None:
    url = f"{sandbox.base_url}/_sandbox/neighbours"
    bad = requests.post(url, json={"level": 2}, timeout=10)
    assert bad.status_code == 400 and "level" in bad.json()["error"]
    on = requests.post(url, json={"level": 0.5, "rate_share": 0.2}, timeout=10).json()
    assert on["settings"]["level"] == 0.5 and on["settings"]["rate_share"] == 0.2
    assert requests.get(url, timeout=10).json()["settings"] == on["settings"]
    requests.post(url, json={"level": 0}, timeout=10)
    assert sandbox.config.neighbours.level == 0
    sandbox.control.set_neighbours(0.0, rate_share=0.4)
