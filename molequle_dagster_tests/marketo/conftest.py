"""Fixtures for the Marketo client tests: a small sandbox over real HTTP and clients on virtual time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from molequle_dagster.marketo import BulkConfig, MarketoClient, PacingConfig, RetryConfig
from molequle_dagster.sandbox.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.fixtures import MARKETO_FIXTURES

FIXTURES = MARKETO_FIXTURES


class VirtualTime:
    """Injected `sleep`/`clock`: waits are recorded and advance virtual time instantly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)

    def monotonic(self) -> float:
        return self.now


def small_config(**bulk_overrides: object) -> SandboxConfig:
    config = SandboxConfig.for_profile("fast")
    config.data.people = 300
    config.data.activities_per_person = 5
    config.data.programs = 6
    for key, value in bulk_overrides.items():
        setattr(config.bulk, key, value)
    return config


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(small_config(), port=0) as server:
        yield server


@pytest.fixture
def sb(sandbox: SandboxServer) -> Iterator[SandboxServer]:
    """The module's sandbox with no faults left over from another test."""
    sandbox.control.clear_faults()
    yield sandbox
    sandbox.control.clear_faults()


FAST_PACING = PacingConfig(calls_per_window=10_000, window_s=1.0, max_in_flight=5)
FAST_BULK = BulkConfig(poll_interval_s=0.0, job_timeout_s=600.0)


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., tuple[MarketoClient, VirtualTime]]]:
    made: list[MarketoClient] = []

    def make(server: SandboxServer, *, bulk: BulkConfig = FAST_BULK, pacing: PacingConfig = FAST_PACING,
             retry: RetryConfig | None = None, state_dir: Path | None = None,
             secret: str = DEFAULT_CLIENT_SECRET, client_id: str = DEFAULT_CLIENT_ID,
             ) -> tuple[MarketoClient, VirtualTime]:
        vt = VirtualTime()
        client = MarketoClient(server.base_url, client_id, secret, state_dir=state_dir or tmp_path / "state",
                               bulk=bulk, pacing=pacing, sleep=vt.sleep, clock=vt.monotonic,
                               retry=retry or RetryConfig(), timeout_s=10.0)
        made.append(client)
        return client, vt

    yield make
    for client in made:
        client.close()


def window(days: int = 30, end: datetime | None = None) -> dict[str, str]:
    end = (end or datetime.now(UTC)).replace(microsecond=0)
    start = end - timedelta(days=days)
    return {"startAt": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "endAt": end.strftime("%Y-%m-%dT%H:%M:%SZ")}
