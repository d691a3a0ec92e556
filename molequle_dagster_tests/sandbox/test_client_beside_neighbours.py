"""Our Marketo client on a busy instance: beside the simulated other integrations, it keeps to its own
share of the rate window (counted per API user by the sandbox), and still completes a bulk export and its
REST reads; when it asks for more than is left, Marketo's 606 holds it back and it still completes.

The sandbox clock runs in real time here because the client paces on wall-clock time (as Marketo's window
is); the window is shortened to 2 s so that a test of pacing takes seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from molequle_dagster.marketo import BulkConfig, MarketoClient, MarketoConfig, PacingConfig, RetryConfig
from molequle_dagster.sandbox.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster.sandbox.truth import people_truth
from molequle_dagster_tests.sandbox.conftest import fast_config

OUR_USER = "molequle@sandbox"
WINDOW_S, RATE_CALLS = 2.0, 20
OUR_SHARE = 10  # calls per window our client allows itself; the neighbours take 8 during their bursts
ISO = "%Y-%m-%dT%H:%M:%SZ"


@pytest.fixture(scope="module")
def sandbox_config() -> SandboxConfig:
    config = fast_config(people=300, activities_per_person=3, programs=6)
    config.limits.rate_window_s, config.limits.rate_calls = WINDOW_S, RATE_CALLS
    config.limits.daily_quota = 1_000_000
    return config


@pytest.fixture(scope="module")
def sandbox(sandbox_config: SandboxConfig) -> Iterator[SandboxServer]:
    with SandboxServer(sandbox_config) as server:  # a running clock: the client paces in real time
        server.control.set_neighbours(
            1.0,
            rate_share=0.4,  # 8 of the 20 calls of a window while their burst is on
            daily_share=0.5,  # enough for a burst that never stops: the window is always shared
            call_cycle_s=10.0,
            in_flight_share=0.3,
            processing_slots=1,  # one of the two export slots, half of the time
            export_cycle_s=6.0,
            export_busy_share=0.5,
            queue_share=0.3,
        )
        yield server


def _client(sandbox: SandboxServer, tmp_path: Path, calls_per_window: int) -> MarketoClient:
    config = MarketoConfig(
        base_url=sandbox.base_url,
        pacing=PacingConfig(calls_per_20s=calls_per_window, window_s=WINDOW_S, max_in_flight=5),
        bulk=BulkConfig(poll_interval_s=0.2, job_timeout_s=120.0),
        retry=RetryConfig(rate_limit_wait_s=0.5),
        timeout_s=30.0,
    )
    return MarketoClient(config, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, store=tmp_path / "state")


def _work(sandbox: SandboxServer, client: MarketoClient) -> int:
    """REST reads and one bulk lead export; the number of exported rows (checked against the truth)."""
    assert len(client.describe_leads()) == 100
    assert client.activity_types()
    assert list(client.programs())
    assert list(client.smart_campaigns())
    for _ in range(12):  # enough calls to fill several windows
        assert client.usage()
    now = sandbox.control.clock.now().replace(microsecond=0)
    window = {"startAt": (now - timedelta(days=30)).strftime(ISO), "endAt": now.strftime(ISO)}
    table = client.bulk_export(
        "leads", fields=["id", "email", "leadStatus"], filter={"createdAt": window}
    ).read_all()
    start = now - timedelta(days=30)
    truth = people_truth(sandbox.control.state, ["id", "createdAt"]).to_pylist()
    assert sorted(table["id"].to_pylist()) == sorted(r["id"] for r in truth if start <= r["createdAt"] <= now)
    return table.num_rows


def _our_errors(sandbox: SandboxServer) -> list[str]:
    return [
        r["error_code"]
        for r in sandbox.control.request_log()
        if r["api_user"] == OUR_USER and r["error_code"]
    ]


def test_our_client_keeps_to_its_share_and_completes_beside_the_neighbours(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.control.reset_counters()
    with _client(sandbox, tmp_path, OUR_SHARE) as client:
        _work(sandbox, client)
    peaks = sandbox.control.peak_calls_in_window()
    assert 0 < peaks[OUR_USER] <= OUR_SHARE  # the sandbox counted our calls per window: we kept our share
    assert _our_errors(sandbox) == []  # our share plus theirs fits the window: no 606, 615 or 607
    calls = sandbox.control.calls_by_user()
    assert set(sandbox.config.neighbours.users) <= set(calls)  # they were there all along
    assert sum(calls[u] for u in sandbox.config.neighbours.users) > calls[OUR_USER]


def test_asking_for_more_than_is_left_meets_606_and_still_completes(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    sandbox.control.reset_counters()
    with _client(sandbox, tmp_path, RATE_CALLS) as client:  # as if alone: the whole window
        _work(sandbox, client)
    assert "606" in _our_errors(sandbox)  # Marketo's limit held us back during their bursts
    assert set(_our_errors(sandbox)) <= {"606", "615"}
