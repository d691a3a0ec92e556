"""Dagster resources: the Marketo client (secrets from the environment at run time) and the lake.

Credentials are `dg.EnvVar`s, resolved when a run starts, never at load time: the UI, CI and
`dagster definitions validate` load the code without any Marketo secret present, and the values never
appear in the run config shown in the UI.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from molequle_dagster.lake import Lake
from molequle_dagster.marketo.client import BulkConfig, MarketoClient, PacingConfig
from molequle_dagster.marketo.config import RetryConfig
from molequle_dagster.settings import MolequleSettings, parse_settings


def default_state_dir() -> str:
    """Where the cross-process pacing log and the bulk job ledger live: beside the Dagster instance."""
    if configured := os.environ.get("MOLEQULE_STATE_DIR"):
        return configured
    if dagster_home := os.environ.get("DAGSTER_HOME"):
        return str(Path(dagster_home) / "molequle")
    return str(Path(".molequle/state").resolve())


class MarketoResource(dg.ConfigurableResource):
    """A Marketo REST/Bulk client shared by the sync assets and the action ops of one run."""

    base_url: str
    client_id: str
    client_secret: str
    timeout_s: float = 30.0
    calls_per_20s: int = 50
    max_in_flight: int = 5
    poll_interval_s: float = 60.0
    job_timeout_s: float = 7200.0
    max_processing_jobs: int = 2
    window_days: int = 31
    quota_timezone: str = "America/Chicago"
    state_dir: str = ""

    _client: MarketoClient | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._client = None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def client(self) -> MarketoClient:
        if self._client is None:
            state_dir = Path(self.state_dir or default_state_dir())
            state_dir.mkdir(parents=True, exist_ok=True)
            self._client = MarketoClient(
                self.base_url,
                self.client_id,
                self.client_secret,
                timeout_s=self.timeout_s,
                pacing=PacingConfig(calls_per_window=self.calls_per_20s, max_in_flight=self.max_in_flight),
                bulk=BulkConfig(
                    poll_interval_s=self.poll_interval_s,
                    job_timeout_s=self.job_timeout_s,
                    max_processing_jobs=self.max_processing_jobs,
                    window_days=self.window_days,
                ),
                retry=RetryConfig(quota_timezone=self.quota_timezone),
                state_dir=state_dir,
            )
        return self._client


class LakeResource(dg.ConfigurableResource):
    """The Parquet lake the sync writes and Molequle reads (local directory or pyarrow URI)."""

    uri: str = Field(description="local directory or pyarrow filesystem URI such as s3://bucket/prefix")

    _lake: Lake | None = PrivateAttr(default=None)

    @property
    def lake(self) -> Lake:
        if self._lake is None:
            self._lake = Lake(self.uri)
        return self._lake


class SettingsResource(dg.ConfigurableResource):
    """The Marketo extension settings, as validated when the definitions loaded (JSON of the YAML)."""

    values: str = Field(description="the validated settings (MOLEQULE_SETTINGS), as JSON")

    @classmethod
    def of(cls, settings: MolequleSettings) -> SettingsResource:
        return cls(values=settings.model_dump_json())

    @property
    def settings(self) -> MolequleSettings:
        return _parsed_settings(self.values)


@lru_cache(maxsize=8)
def _parsed_settings(values: str) -> MolequleSettings:
    return parse_settings(json.loads(values), "settings resource")


def lake_uri(settings: MolequleSettings) -> str:
    """$MOLEQULE_LAKE_URI, else the settings' storage.lake_uri."""
    return os.environ.get("MOLEQULE_LAKE_URI", settings.storage.lake_uri)


def build_resources(settings: MolequleSettings) -> dict[str, dg.ConfigurableResource]:
    connection = settings.marketo
    return {
        "marketo": MarketoResource(
            base_url=os.environ.get("MARKETO_BASE_URL", connection.base_url),
            client_id=dg.EnvVar(connection.client_id_env),
            client_secret=dg.EnvVar(connection.client_secret_env),
            timeout_s=connection.timeout_s,
            calls_per_20s=connection.pacing.calls_per_20s,
            max_in_flight=connection.pacing.max_in_flight,
            poll_interval_s=connection.bulk.poll_interval_s,
            job_timeout_s=connection.bulk.job_timeout_s,
            max_processing_jobs=connection.bulk.max_processing_jobs,
            window_days=connection.bulk.window_days,
            quota_timezone=connection.quota_timezone,
        ),
        "lake": LakeResource(uri=lake_uri(settings)),
        "settings": SettingsResource.of(settings),
    }
