"""SandboxServer as a context manager: ephemeral ports, independent instances, clean stop."""

from __future__ import annotations

import socket

import pytest
import requests

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.control import empty_state
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.sandbox.conftest import NOW


def test_two_servers_are_independent_and_stop_cleanly() -> None:
    first = SandboxServer(SandboxConfig.for_profile("fast"), now=NOW, state=empty_state(1, NOW)).start()
    with SandboxServer(SandboxConfig.for_profile("fast"), now=NOW, state=empty_state(2, NOW)) as second:
        assert first.base_url != second.base_url
        assert first.base_url.startswith("http://127.0.0.1:")
        first.control.advance(3600)
        assert (
            requests.get(f"{first.base_url}/_sandbox/clock", timeout=5).json()["now"]
            == "2026-03-10T16:00:00Z"
        )
        assert (
            requests.get(f"{second.base_url}/_sandbox/clock", timeout=5).json()["now"]
            == "2026-03-10T15:00:00Z"
        )
    port = int(first.base_url.rsplit(":", 1)[1])
    first.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{first.base_url}/_sandbox/clock", timeout=5)
    with socket.create_server(("127.0.0.1", port)):  # the port was released
        pass


def test_default_config_and_generated_instance() -> None:
    config = SandboxConfig.for_profile("fast")
    config.data.people = 50
    config.data.activities_per_person = 2
    config.data.programs = 3
    with SandboxServer(config, now=NOW) as sandbox:
        assert sandbox.context.state.people.num_rows == 50
        assert sandbox.control.state is sandbox.context.state
        assert sandbox.context.bulk is not None  # the bulk engine is wired in when present
