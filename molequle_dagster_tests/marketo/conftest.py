"""Fixtures for the Marketo client tests: a small sandbox over real HTTP and clients on virtual time."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from molequle_dagster.coordination import CoordinationStore
from molequle_dagster.marketo import BulkConfig, MarketoClient, MarketoConfig, PacingConfig, RetryConfig
from molequle_dagster.sandbox.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.coordination.backends import BACKENDS, StoreFactory, store_factory
from molequle_dagster_tests.fixtures import MARKETO_FIXTURES

FIXTURES = MARKETO_FIXTURES


class VirtualTime:
    """Injected `sleep`/`clock`: waits are recorded and advance virtual time instantly. `on_sleep`, if set,
    runs at each wait (e.g. to move the sandbox's clock along, or to let a held response arrive)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[float], None] | None = None

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        if self.on_sleep is not None:
            self.on_sleep(seconds)

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
    config = small_config()
    # The module's tests run on both backends without waiting on the real clock: the instance-wide rate
    # limit would throttle them together (tests of the limits start sandboxes of their own).
    config.limits.rate_calls = 1_000_000
    with SandboxServer(config, port=0) as server:
        yield server


@pytest.fixture
def sb(sandbox: SandboxServer) -> Iterator[SandboxServer]:
    """The module's sandbox with no faults left over from another test."""
    sandbox.control.clear_faults()
    yield sandbox
    sandbox.control.clear_faults()


# Tests need not wait on the real clock: 100 calls per 10 ms is no limit at all.
FAST_PACING = PacingConfig(calls_per_20s=100, window_s=0.01, max_in_flight=5)
FAST_BULK = BulkConfig(poll_interval_s=0.0, job_timeout_s=600.0)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every client test runs on both coordination backends."""
    return str(request.param)


@pytest.fixture
def make_store(backend: str, tmp_path: Path) -> Iterator[StoreFactory]:
    """`make_store(name)`: a coordination store; the same name is the same store (as for two processes)."""
    with store_factory(backend, tmp_path) as make:
        yield make


def client_config(server: SandboxServer, *, bulk: BulkConfig = FAST_BULK, pacing: PacingConfig = FAST_PACING,
                  retry: RetryConfig | None = None, quota_timezone: str = "America/Chicago",
                  timeout_s: float = 10.0, base_url: str | None = None) -> MarketoConfig:
    """`base_url` reaches the sandbox another way (e.g. through a proxy that loses answers)."""
    return MarketoConfig(base_url=base_url or server.base_url, timeout_s=timeout_s, pacing=pacing, bulk=bulk,
                         retry=retry or RetryConfig(), quota_timezone=quota_timezone)


@pytest.fixture
def make_client(make_store: StoreFactory) -> Iterator[Callable[..., tuple[MarketoClient, VirtualTime]]]:
    made: list[MarketoClient] = []

    def make(server: SandboxServer, *, store: CoordinationStore | str = "state",
             secret: str = DEFAULT_CLIENT_SECRET, client_id: str = DEFAULT_CLIENT_ID,
             **config: object) -> tuple[MarketoClient, VirtualTime]:
        """A client on virtual time; `store` names a store (the same name is shared) or is one."""
        vt = VirtualTime()
        client = MarketoClient(client_config(server, **config), client_id, secret,  # type: ignore[arg-type]
                               store=make_store(store) if isinstance(store, str) else store,
                               sleep=vt.sleep, clock=vt.monotonic)
        made.append(client)
        return client, vt

    yield make
    for client in made:
        client.close()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for something the sandbox does on its own (a held response being answered), with a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the sandbox never got there"
        time.sleep(0.01)


def answered(sb: SandboxServer, fragment: str, after: int) -> Callable[[], bool]:
    """True once a request whose path holds `fragment` was answered after the first `after` log entries."""
    return lambda: any(fragment in r["path"] for r in sb.control.request_log()[after:])


def window(days: int = 30, end: datetime | None = None) -> dict[str, str]:
    end = (end or datetime.now(UTC)).replace(microsecond=0)
    start = end - timedelta(days=days)
    return {"startAt": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "endAt": end.strftime("%Y-%m-%dT%H:%M:%SZ")}
