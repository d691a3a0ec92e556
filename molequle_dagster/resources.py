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
from typing import Any

import dagster as dg
from pydantic import BaseModel, Field, PrivateAttr, create_model

from molequle_dagster import clock
from molequle_dagster.coordination import CoordinationStore, open_store
from molequle_dagster.lake import Lake
from molequle_dagster.lake.storage import refuse_credentials
from molequle_dagster.marketo.client import DEFAULT_STORE_DIR, MarketoClient
from molequle_dagster.marketo.config import MarketoConfig, MarketoConnection
from molequle_dagster.settings import MolequleSettings, parse_settings


def dagster_config(model: type[BaseModel], name: str) -> type[dg.Config]:
    """A Dagster config class with the fields of one of the client's config models: same types, defaults
    and descriptions (the launchpad shows them). Ranges are checked when a run builds the client."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            nested = dagster_config(annotation, name + field_name.title())
            fields[field_name] = (nested, Field(default_factory=nested, description=info.description))
        elif info.is_required():
            fields[field_name] = (annotation, Field(description=info.description))
        else:
            default = info.get_default(call_default_factory=True)
            fields[field_name] = (annotation, Field(default=default, description=info.description))
    return create_model(name, __base__=dg.Config, __doc__=model.__doc__, **fields)


MarketoClientConfig = dagster_config(MarketoConfig, "MarketoClientConfig")
_CONNECTION = MarketoConnection.model_fields


def coordination_target(instance: dg.DagsterInstance | None, env_name: str) -> str:
    """Where the coordination store lives: `$<env_name>` if set; else the Dagster instance's database when
    its run storage is PostgreSQL (schema `molequle`), so every host of the deployment shares one Marketo
    budget; else a SQLite file under the instance's home ($DAGSTER_HOME/molequle)."""
    explicit = os.environ.get(env_name, "").strip()
    if explicit:
        return explicit
    if instance is not None:
        url = getattr(instance.run_storage, "postgres_url", None)
        if isinstance(url, str) and url:
            return url
        return str(Path(instance.root_directory) / "molequle")
    home = os.environ.get("DAGSTER_HOME")
    return str(Path(home) / "molequle") if home else str(DEFAULT_STORE_DIR)


class MarketoResource(dg.ConfigurableResource):
    """A Marketo REST/Bulk client shared by the sync assets and the action ops of one run, with the
    coordination store every process talking to this Marketo shares."""

    client_id: str = Field(description="Marketo client id; set as an EnvVar, read when a run starts")
    client_secret: str = Field(description="Marketo client secret; set as an EnvVar, read when a run starts")
    connection: MarketoClientConfig = Field(description=MarketoConfig.__doc__)  # type: ignore[valid-type]
    coordination_url_env: str = Field(
        _CONNECTION["coordination_url_env"].default,
        description=_CONNECTION["coordination_url_env"].description,
    )

    _client: MarketoClient | None = PrivateAttr(default=None)
    _store: CoordinationStore | None = PrivateAttr(default=None)
    _instance: dg.DagsterInstance | None = PrivateAttr(default=None)

    @classmethod
    def from_connection(
        cls, connection: MarketoConnection, *, base_url: str | None = None
    ) -> MarketoResource:
        """The resource for the settings' `marketo:` section: credentials as EnvVars (resolved at run time,
        never shown in the launchpad), every other knob as config."""
        knobs = connection.model_dump(include=set(MarketoConfig.model_fields))
        if base_url is not None:
            knobs["base_url"] = base_url
        return cls(
            client_id=dg.EnvVar(connection.client_id_env),
            client_secret=dg.EnvVar(connection.client_secret_env),
            connection=MarketoClientConfig.model_validate(knobs),
            coordination_url_env=connection.coordination_url_env,
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._client = None
        self._instance = context.instance
        self.client_config()  # a knob out of range fails here, once, not in every step's retries

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def client_config(self) -> MarketoConfig:
        """The client's config, range-checked (a ConfigError names the field path and what is allowed)."""
        return MarketoConfig.build(self.connection.model_dump(), "marketo")  # type: ignore[return-value]

    @property
    def coordination(self) -> CoordinationStore:
        """The coordination store (also for named locks, e.g. `lock("lake:people", timeout_s=…)`)."""
        if self._store is None:
            self._store = open_store(coordination_target(self._instance, self.coordination_url_env))
        return self._store

    def store_for(self, instance: dg.DagsterInstance | None) -> CoordinationStore:
        """The coordination store as seen from `instance` (a schedule's or sensor's, outside any run)."""
        if instance is None or instance is self._instance:
            return self.coordination
        return _open_store_cached(coordination_target(instance, self.coordination_url_env))

    @property
    def client(self) -> MarketoClient:
        if self._client is None:
            # Waits between bulk status polls follow the one clock (virtual in benchmarks).
            self._client = MarketoClient(
                self.client_config(),
                self.client_id,
                self.client_secret,
                store=self.coordination,
                sleep=clock.sleep,
                clock=lambda: clock.current().monotonic(),
            )
        return self._client


LAKE_LOCK_TIMEOUT_S = 600.0  # a commit holds its table's lock for seconds; waiting longer means trouble


class LakeResource(dg.ConfigurableResource):
    """The Parquet lake the sync writes and Molequle reads (local directory or pyarrow URI). Commits of a
    table are serialised by a named lock of the coordination store, so writers on any host agree."""

    uri: str = Field(description="local directory or pyarrow filesystem URI such as s3://bucket/prefix")
    coordination_url_env: str = Field(
        _CONNECTION["coordination_url_env"].default,
        description="environment variable naming the coordination store (default: the instance's)",
    )

    _lake: Lake | None = PrivateAttr(default=None)
    _instance: dg.DagsterInstance | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._instance = context.instance
        self._lake = None

    @property
    def lake(self) -> Lake:
        if self._lake is None:
            if self._instance is None:  # outside a run (a schedule reading cursors): no commits to guard
                self._lake = Lake(self.uri)
            else:
                store = _open_store_cached(coordination_target(self._instance, self.coordination_url_env))
                self._lake = Lake(
                    self.uri, locks=lambda name: store.lock(name, timeout_s=LAKE_LOCK_TIMEOUT_S)
                )
        return self._lake


@lru_cache(maxsize=4)
def _open_store_cached(target: str) -> CoordinationStore:
    return open_store(target)


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
    """$MOLEQULE_LAKE_URI, else the settings' storage.lake_uri; never one carrying credentials (it is shown
    in the launchpad and in metadata)."""
    uri = os.environ.get("MOLEQULE_LAKE_URI", settings.storage.lake_uri)
    refuse_credentials(uri)
    return uri


def build_resources(settings: MolequleSettings) -> dict[str, dg.ConfigurableResource]:
    connection = settings.marketo
    return {
        "marketo": MarketoResource.from_connection(
            connection, base_url=os.environ.get("MARKETO_BASE_URL", connection.base_url)
        ),
        "lake": LakeResource(uri=lake_uri(settings)),
        "settings": SettingsResource.of(settings),
    }
