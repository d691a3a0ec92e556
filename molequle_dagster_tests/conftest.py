"""Shared fixtures: a Marketo sandbox over real HTTP and a synced project wired to it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from hypothesis import settings as hypothesis_settings

from molequle_dagster.definitions import build_definitions
from molequle_dagster.lake import Lake
from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster.settings import default_settings_path, parse_settings

# CI explores the same examples every run (a found bug is reproducible, never a coin toss); local runs
# stay random so they keep finding new examples.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


def fast_settings_dict(**overrides: Any) -> dict[str, Any]:
    """The packaged settings, tuned for fast tests: no poll wait, a short history."""
    data = yaml.safe_load(default_settings_path().read_text())
    data["marketo"]["bulk"]["poll_interval_s"] = 0
    # Tests need not wait on the real clock for our 50/20 s share, but stay under Marketo's 100: pacing at
    # exactly the limit races the server's own window (a 606, then a retried call the counts include).
    data["marketo"]["pacing"]["calls_per_20s"] = 90
    data["sync"]["history_days"] = 62
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return data


def point_env_at(mp: pytest.MonkeyPatch, sandbox: SandboxServer, config: SandboxConfig, root: Path) -> None:
    """Environment the definitions read: the sandbox's URL and credentials, a lake under root."""
    mp.setenv("MARKETO_BASE_URL", sandbox.base_url)
    mp.setenv("MARKETO_CLIENT_ID", config.clients[0].client_id)
    mp.setenv("MARKETO_CLIENT_SECRET", config.clients[0].client_secret)
    mp.setenv("MOLEQULE_LAKE_URI", str(root / "lake"))


@dataclass
class SyncEnv:
    sandbox: SandboxServer
    defs: dg.Definitions
    instance: dg.DagsterInstance
    lake: Lake
    root: Path

    @property
    def control(self) -> Any:
        return self.sandbox.control


@contextmanager
def open_sync_env(
    root: Path, config: SandboxConfig, settings: dict[str, Any], now: datetime | None = None
) -> Iterator[SyncEnv]:
    """A sandbox on an ephemeral port, definitions built from `settings` and pointed at it, a lake and
    state under `root`, and a throwaway Dagster instance. Nothing is synced yet. With `now`, the sandbox's
    clock starts frozen there."""
    with SandboxServer(config, port=0, now=now) as sandbox, pytest.MonkeyPatch.context() as mp:
        point_env_at(mp, sandbox, config, root)
        defs = build_definitions(parse_settings(settings))
        with dg.instance_for_test() as instance:
            yield SyncEnv(sandbox, defs, instance, Lake(os.environ["MOLEQULE_LAKE_URI"]), root)


@pytest.fixture(scope="module")
def sync_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncEnv]:
    """A 300-person sandbox and definitions pointed at it, with a fresh lake and Dagster instance."""
    config = SandboxConfig.for_profile("fast")
    config.data.people = 300
    config.data.programs = 12
    with open_sync_env(tmp_path_factory.mktemp("sync"), config, fast_settings_dict()) as env:
        yield env
