"""The action job's launchpad, as the UI sees it: a real `dagster-webserver` process loads the project, and
the tests ask it what the launchpad asks it (GraphQL `isPipelineConfigValid` with the editor's YAML, the
config schema, the job's presets). Nothing is launched.

What the launchpad can fill in by itself must be flagged: a new launchpad opens with the schema's expanded
defaults (`rootDefaultYaml`; seen in Chromium, where "Launch Run" stays disabled), "Scaffold missing
config" writes the UI's scaffold, and the job itself has no default or preset. An action with a required
token stays invalid until the token is given.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from molequle_dagster.actions import ACTION_JOB, ACTION_OP
from molequle_dagster_tests.conftest import fast_settings_dict
from molequle_dagster_tests.e2e.deployment import post_graphql
from molequle_dagster_tests.e2e.processes import free_port, scrubbed_environ
from molequle_dagster_tests.test_actions import EXTRA_ACTIONS, TYPED_TOKENS_ACTION

WEBSERVER = Path(sys.executable).parent / "dagster-webserver"
LOCATION = "molequle_dagster.definitions"  # `-m` names the code location after the module
STARTUP_TIMEOUT_S = 120.0  # the webserver and its code server load the definitions on 2 shared cores
CONFIG_TYPES = """
  __typename key description isSelector
  ... on CompositeConfigType { fields { name description isRequired configTypeKey } }
  ... on NullableConfigType { typeParamKeys }
  ... on ArrayConfigType { typeParamKeys }
  ... on EnumConfigType { values { value } }
  ... on ScalarUnionConfigType { scalarTypeKey }
"""
VALIDATE = """query($pipeline: PipelineSelector!, $runConfigData: RunConfigData!, $mode: String!) {
  isPipelineConfigValid(pipeline: $pipeline, runConfigData: $runConfigData, mode: $mode) {
    __typename
    ... on RunConfigValidationInvalid { errors { __typename reason message
      ... on MissingFieldConfigError { field { name } } } }
    ... on PythonError { message }
  } }"""


@dataclass
class Webserver:
    url: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    _session: requests.Session = field(default_factory=requests.Session, repr=False)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return post_graphql(self._session, self.url, query, variables)

    @property
    def job(self) -> dict[str, str]:
        return {
            "repositoryLocationName": LOCATION,
            "repositoryName": "__repository__",
            "pipelineName": ACTION_JOB,
        }

    def validate(self, run_config: str | dict[str, Any]) -> list[dict[str, Any]]:
        """The launchpad's check of its editor: [] if valid, else Dagster's errors."""
        text = run_config if isinstance(run_config, str) else yaml.safe_dump(run_config)
        result = self.graphql(VALIDATE, {"pipeline": self.job, "runConfigData": text, "mode": "default"})[
            "isPipelineConfigValid"
        ]
        if result["__typename"] == "PipelineConfigValidationValid":
            return []
        assert result["__typename"] == "RunConfigValidationInvalid", result
        return result["errors"]

    def config_schema(self) -> tuple[str, dict[str, dict[str, Any]]]:
        """The job's root config type key and every config type by key, as the launchpad loads them."""
        data = self.graphql(
            f"""query($selector: PipelineSelector!) {{ runConfigSchemaOrError(selector: $selector) {{
                  __typename ... on RunConfigSchema {{
                    rootConfigType {{ key }} allConfigTypes {{ {CONFIG_TYPES} }} }} }} }}""",
            {"selector": self.job},
        )["runConfigSchemaOrError"]
        assert data["__typename"] == "RunConfigSchema", data
        return data["rootConfigType"]["key"], {t["key"]: t for t in data["allConfigTypes"]}


def _wait_for_line(lines: queue.Queue[str | None], marker: str, timeout: float, webserver: Webserver) -> None:
    """Block on the webserver's output until `marker` appears; fail if it exits or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(remaining, 0.0))
        except queue.Empty:
            raise AssertionError(
                f"dagster-webserver did not print {marker!r} within {timeout:.0f} s:\n"
                + "".join(webserver.output[-40:])
            ) from None
        if line is None:
            raise AssertionError(
                f"dagster-webserver exited with {webserver.process.wait()} before serving:\n"
                + "".join(webserver.output[-40:])
            )
        if marker in line:
            return


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webserver]:
    root = tmp_path_factory.mktemp("launchpad")
    data = fast_settings_dict()
    form_fill = next(a for a in EXTRA_ACTIONS if a["name"] == "form_fill")
    # A trigger without tokens comes first: "expand defaults" must find nothing runnable in it either.
    data["actions"] = [form_fill, *data["actions"], TYPED_TOKENS_ACTION]
    settings = root / "settings.yaml"
    settings.write_text(yaml.safe_dump(data))
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # Nothing from the caller's shell configures Dagster, Marketo or Molequle: no secrets are needed to
    # validate a run config, exactly as on a webserver host without them.
    env = scrubbed_environ(
        DAGSTER_HOME=str(home), MOLEQULE_SETTINGS=str(settings), MOLEQULE_LAKE_URI=str(root / "lake")
    )
    port = free_port()
    process = subprocess.Popen(
        # uvicorn at info level says when its socket listens ("Serving dagster-webserver" comes before)
        [str(WEBSERVER), "-m", LOCATION, "-h", "127.0.0.1", "-p", str(port), "--uvicorn-log-level", "info"],
        cwd=root,  # nothing of the repository root's (its dagster.yaml) applies: DAGSTER_HOME is set
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the code server it starts stops with it
    )
    server = Webserver(url=f"http://127.0.0.1:{port}", process=process)
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:  # keeps the pipe from filling up and hands each line to the waiting test
        assert process.stdout is not None
        for line in process.stdout:
            server.output.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    try:
        _wait_for_line(lines, f"Uvicorn running on http://127.0.0.1:{port}", STARTUP_TIMEOUT_S, server)
        entries = server.graphql(
            """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
                 locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
        )["workspaceOrError"]["locationEntries"]
        assert [(e["name"], e["loadStatus"]) for e in entries] == [(LOCATION, "LOADED")], entries
        assert entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation", entries
        yield server
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _scaffold(type_key: str, types: dict[str, dict[str, Any]]) -> Any:
    """What the launchpad's "Scaffold missing config" writes: dagster-ui's scaffoldType
    (js_modules/dagster-ui/packages/ui-core/src/launchpad/scaffoldType.tsx), line for line."""
    config_type = types[type_key]
    kind = config_type["__typename"]
    if kind == "CompositeConfigType":
        if config_type["isSelector"]:
            return "<selector>"
        return {
            f["name"]: _scaffold(f["configTypeKey"], types) for f in config_type["fields"] if f["isRequired"]
        }
    if kind == "ArrayConfigType":
        return []
    if kind == "MapConfigType":
        return {}
    if kind == "NullableConfigType":
        return _scaffold(config_type["typeParamKeys"][0], types)
    if kind == "EnumConfigType":
        return "|".join(v["value"] for v in config_type["values"])
    if kind == "ScalarUnionConfigType":
        return _scaffold(config_type["scalarTypeKey"], types)
    return {"String": "", "Int": 0, "Float": 0.0, "Bool": True, "Any": "AnyType"}[config_type["key"]]


def _op_config_type(root: str, types: dict[str, dict[str, Any]]) -> dict[str, Any]:
    node = types[root]
    for name in ("ops", ACTION_OP, "config"):
        (child,) = [f for f in node["fields"] if f["name"] == name]
        node = types[child["configTypeKey"]]
    return node


def _field(config_type: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [f for f in config_type["fields"] if f["name"] == name]
    return found


def _action_config(action: str, **fields: Any) -> dict[str, Any]:
    return {"ops": {ACTION_OP: {"config": {"run": {action: fields}}}}}


def test_the_job_offers_no_default_or_preset_and_an_empty_editor_is_flagged(webserver: Webserver) -> None:
    presets = webserver.graphql(
        """query($params: PipelineSelector!) { pipelineOrError(params: $params) {
             __typename ... on Pipeline { presets { name runConfigYaml } } } }""",
        {"params": webserver.job},
    )["pipelineOrError"]
    assert presets == {"__typename": "Pipeline", "presets": []}

    (error,) = webserver.validate("")
    assert error["reason"] == "MISSING_REQUIRED_FIELD" and error["field"]["name"] == "ops"


def test_scaffold_missing_config_is_flagged(webserver: Webserver) -> None:
    root, types = webserver.config_schema()
    scaffold = _scaffold(root, types)
    assert scaffold["ops"][ACTION_OP]["config"] == {"run": "<selector>"}  # one action must be chosen

    (error,) = webserver.validate(scaffold)
    assert error["reason"] == "RUNTIME_TYPE_MISMATCH"
    assert f"selector type at path root:ops:{ACTION_OP}:config:run must be a dict" in error["message"]


def test_the_launchpad_opens_with_the_expanded_defaults_and_they_are_flagged(webserver: Webserver) -> None:
    expanded = webserver.graphql(
        """query($selector: PipelineSelector!) { runConfigSchemaOrError(selector: $selector) {
             ... on RunConfigSchema { rootDefaultYaml } } }""",
        {"selector": webserver.job},
    )["runConfigSchemaOrError"]["rootDefaultYaml"]
    assert "run" not in yaml.safe_load(expanded)["ops"][ACTION_OP]["config"]  # no trigger for nobody

    errors = webserver.validate(expanded)
    assert [(e["reason"], e["field"]["name"]) for e in errors] == [("MISSING_REQUIRED_FIELD", "run")]


def test_an_action_with_a_required_token_is_flagged_until_the_token_is_filled(webserver: Webserver) -> None:
    path = f"root:ops:{ACTION_OP}:config:run:welcome_sequence"
    (error,) = webserver.validate(_action_config("welcome_sequence", lead_ids=[1001]))
    assert error["reason"] == "MISSING_REQUIRED_FIELD" and error["field"]["name"] == "tokens"
    assert path in error["message"] and "welcome_message" in error["message"]

    (error,) = webserver.validate(_action_config("welcome_sequence", lead_ids=[1001], tokens={}))
    assert error["field"]["name"] == "welcome_message" and f"{path}:tokens" in error["message"]

    (error,) = webserver.validate(
        _action_config("welcome_sequence", lead_ids=[1001], tokens={"offer_url": "https://example.com"})
    )
    assert error["field"]["name"] == "welcome_message"  # the optional one alone is not enough

    filled = _action_config("welcome_sequence", lead_ids=[1001], tokens={"welcome_message": "Hello"})
    assert webserver.validate(filled) == []


def test_token_types_and_unknown_names_are_flagged(webserver: Webserver) -> None:
    (error,) = webserver.validate(_action_config("typed_tokens", lead_ids=[1], tokens={"seats_left": "12"}))
    assert error["reason"] == "RUNTIME_TYPE_MISMATCH" and 'expected type "Int"' in error["message"]
    (error,) = webserver.validate(
        _action_config("typed_tokens", lead_ids=[1], tokens={"seats_left": 12, "Price (EUR)": 9.5})
    )
    assert error["reason"] == "FIELD_NOT_DEFINED" and "Price (EUR)" in error["message"]
    valid = _action_config("typed_tokens", lead_ids=[1], tokens={"seats_left": 12, "price_eur": 9.5})
    assert webserver.validate(valid) == []
    (error,) = webserver.validate(
        _action_config("quarterly_newsletter", lead_ids=[1], tokens={"edition": "Q3"})
    )
    assert error["reason"] == "FIELD_NOT_DEFINED" and '"lead_ids"' in error["message"]


def test_the_launchpad_describes_every_field_and_gives_each_token_its_own_name(webserver: Webserver) -> None:
    root, types = webserver.config_schema()
    config = _op_config_type(root, types)
    undescribed: list[str] = []

    def walk(config_type: dict[str, Any], path: str) -> None:
        for f in config_type.get("fields") or []:
            if not (f["description"] or "").strip():
                undescribed.append(f"{path}.{f['name']}")
            child = types[f["configTypeKey"]]
            while child["__typename"] in ("NullableConfigType", "ArrayConfigType"):
                child = types[child["typeParamKeys"][0]]
            walk(child, f"{path}.{f['name']}")

    walk(config, "config")
    assert undescribed == []

    run = types[_field(config, "run")["configTypeKey"]]
    assert run["isSelector"]
    assert [f["name"] for f in run["fields"]] == sorted(
        ["form_fill", "welcome_sequence", "quarterly_newsletter", "typed_tokens"]
    )
    welcome = types[_field(run, "welcome_sequence")["configTypeKey"]]
    assert sorted(f["name"] for f in welcome["fields"]) == ["lead_ids", "tokens", "unified_ids"]
    tokens = types[_field(welcome, "tokens")["configTypeKey"]]
    message, offer = _field(tokens, "welcome_message"), _field(tokens, "offer_url")
    assert message["isRequired"] and not offer["isRequired"]
    assert "{{my.Welcome Message}}" in message["description"] and "required" in message["description"]
    assert "{{my.Offer URL}}" in offer["description"] and "an http(s) URL" in offer["description"]
    newsletter = types[_field(run, "quarterly_newsletter")["configTypeKey"]]
    assert sorted(f["name"] for f in newsletter["fields"]) == ["run_at", "tokens"]
