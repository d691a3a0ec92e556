"""Actions against the sandbox over real HTTP: what Marketo received (control.campaign_requests()), what the
action log holds, and that bad input or an unusable campaign stops a run before anything is sent: either
Dagster's config validation refuses the run config (names, types, required keys, who takes people), or
the run-time checks fail the run (formats, lengths, empty values, people, the campaign).

Contract tests check the campaign eligibility rules and the token wire form against Adobe's doc examples.
"""

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
import yaml

from molequle_dagster.actions import (
    ACTION_JOB,
    ACTION_LOG_TABLE,
    ACTION_OP,
    ActionInputError,
    check_campaign,
    token_field_names,
    validate_tokens,
)
from molequle_dagster.definitions import build_definitions
from molequle_dagster.lake import Lake
from molequle_dagster.marketo.writes import token_list
from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster.settings import ActionSettings, load_settings, parse_settings
from molequle_dagster_tests.conftest import fast_settings_dict, point_env_at
from molequle_dagster_tests.fixtures import MARKETO_FIXTURES

FIXTURES = MARKETO_FIXTURES / "campaigns"
TRIGGER_ENDPOINT = "POST /rest/v1/campaigns/{campaign_id}/trigger.json"
EXTRA_ACTIONS = [
    {"name": "paused_trigger", "kind": "trigger", "campaign": {"name": "Molequle Inactive Trigger"}},
    {"name": "form_fill", "kind": "trigger", "campaign": {"name": "Molequle Form Fill Trigger"}},
    {
        "name": "newsletter_as_trigger",
        "kind": "trigger",
        "campaign": {"name": "Molequle Quarterly Newsletter"},
    },
]
# For the schema: typed tokens whose names are no identifiers (validated, never sent).
TYPED_TOKENS_ACTION = {
    "name": "typed_tokens",
    "kind": "trigger",
    "campaign": {"id": 1},
    "tokens": [
        {"name": "Seats left", "type": "integer", "required": True},
        {"name": "Price (EUR)", "type": "number"},
        {"name": "Start day", "type": "date"},
    ],
}
WELCOME = {"welcome_message": "Hello from Molequle"}  # the required token of welcome_sequence


def action_run_config(
    action: str,
    idempotency_key: str | None = None,
    resend_uncertain: bool | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The run config the launchpad takes: `run` selects the action and holds its people and tokens."""
    config: dict[str, Any] = {"run": {action: fields}}
    if idempotency_key is not None:
        config["idempotency_key"] = idempotency_key
    if resend_uncertain is not None:
        config["resend_uncertain"] = resend_uncertain
    return {"ops": {ACTION_OP: {"config": config}}}


def action_job() -> dg.JobDefinition:
    """Reconstructable entry point for re-execution (settings from $MOLEQULE_SETTINGS, like a deployment)."""
    return build_definitions(load_settings()).resolve_job_def(ACTION_JOB)


class Env:
    def __init__(
        self, sandbox: SandboxServer, defs: dg.Definitions, instance: dg.DagsterInstance, lake: Lake
    ) -> None:
        self.sandbox, self.defs, self.instance, self.lake = sandbox, defs, instance, lake
        self.control = sandbox.control
        self.lead_ids = sorted(self.control.state.people["id"].to_pylist())

    def campaign_id(self, name: str) -> int:
        return next(c["id"] for c in self.control.state.campaigns if c["name"] == name)

    def run(self, action: str, **config: Any) -> dg.ExecuteInProcessResult:
        job = self.defs.resolve_job_def(ACTION_JOB)
        return job.execute_in_process(
            run_config=action_run_config(action, **config), instance=self.instance, raise_on_error=False
        )

    def config_errors(self, run_config: dict[str, Any]) -> list[str]:
        """What Dagster's config validation (the launchpad's) says about a run config; [] if valid."""
        try:
            dg.validate_run_config(self.defs.resolve_job_def(ACTION_JOB), run_config)
        except dg.DagsterInvalidConfigError as error:
            return [e.message for e in error.errors]
        return []

    def requests_since(self, count: int) -> list[dict]:
        return self.control.campaign_requests()[count:]

    def log_rows(self, run_id: str) -> list[dict]:
        log = self.lake.read_table(ACTION_LOG_TABLE)
        return [r for r in log.to_pylist() if r["run_id"] == run_id]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("actions")
    config = SandboxConfig.for_profile("fast")
    config.data.people = 250
    config.data.programs = 2
    data = fast_settings_dict()
    data["actions"] = [*data["actions"], *EXTRA_ACTIONS, TYPED_TOKENS_ACTION]
    settings_file = root / "settings.yaml"
    settings_file.write_text(yaml.safe_dump(data))
    with SandboxServer(config, port=0) as sandbox, pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOLEQULE_SETTINGS", str(settings_file))
        point_env_at(mp, sandbox, config, root)
        defs = build_definitions(parse_settings(data))
        lake = Lake(os.environ["MOLEQULE_LAKE_URI"])
        with dg.instance_for_test() as instance:
            env = Env(sandbox, defs, instance, lake)
            # what unification left in the lake: u-1 has two leads; u-old was retired into u-1
            ids = env.lead_ids
            lake.keyed("person_unified_links", "source_id").commit(
                pa.table(
                    {
                        "source_id": pa.array([ids[10], ids[11], ids[12]], pa.int64()),
                        "unified_id": ["u-1", "u-1", "u-2"],
                        "matched_rule": ["same_email", "same_email", None],
                    }
                ),
            )
            lake.keyed("person_id_lineage", "retired_id").commit(
                pa.table(
                    {
                        "retired_id": ["u-old"],
                        "survivor_id": ["u-1"],
                        "reason": ["merged"],
                        "retired_at": pa.array(
                            [datetime(2025, 1, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC")
                        ),
                    }
                ),
            )
            yield env


def _failure(result: dg.ExecuteInProcessResult) -> tuple[str, dict[str, Any]]:
    assert not result.success
    (event,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    data = event.step_failure_data
    metadata = {
        k: v.value for k, v in (data.user_failure_data.metadata if data.user_failure_data else {}).items()
    }
    return data.error.message, metadata


def _output_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (event,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    return {k: v.value for k, v in event.step_output_data.metadata.items()}


# --- launchpad: Dagster's config validation ---------------------------------------------------------------
def test_the_job_carries_no_default_so_the_empty_launchpad_is_flagged(env: Env) -> None:
    assert env.defs.resolve_job_def(ACTION_JOB).run_config is None
    (error,) = env.config_errors({})
    assert 'Missing required config entry "ops"' in error


def test_required_tokens_are_flagged_until_filled(env: Env) -> None:
    path = f"root:ops:{ACTION_OP}:config:run:welcome_sequence"
    (error,) = env.config_errors(action_run_config("welcome_sequence", lead_ids=[1]))
    assert f'Missing required config entry "tokens" at path {path}' in error
    (error,) = env.config_errors(action_run_config("welcome_sequence", lead_ids=[1], tokens={}))
    assert f'Missing required config entry "welcome_message" at path {path}:tokens' in error
    assert env.config_errors(action_run_config("welcome_sequence", lead_ids=[1], tokens=WELCOME)) == []


def test_unknown_actions_and_tokens_are_flagged(env: Env) -> None:
    (error,) = env.config_errors(action_run_config("welcome_sequense", lead_ids=[1]))
    assert 'unexpected config entry "welcome_sequense"' in error
    assert "welcome_sequence" in error and "quarterly_newsletter" in error  # what it could be
    tokens = {**WELCOME, "welcom_message": "typo"}
    (error,) = env.config_errors(action_run_config("welcome_sequence", lead_ids=[1], tokens=tokens))
    assert 'Received unexpected config entry "welcom_message"' in error


def test_token_types_are_flagged(env: Env) -> None:
    def errors(**tokens: Any) -> list[str]:
        return env.config_errors(action_run_config("typed_tokens", lead_ids=[1], tokens=tokens))

    assert errors(seats_left=12, price_eur=9.5, start_day="2030-02-28") == []
    assert errors(seats_left=12, price_eur=3) == []  # an integer is a number
    (error,) = errors(seats_left="12")
    assert "tokens:seats_left" in error and 'expected type "Int"' in error
    (error,) = errors(seats_left=1.5)
    assert 'expected type "Int"' in error
    (error,) = errors(seats_left=1, price_eur="cheap")
    assert "tokens:price_eur" in error and 'expected type "Float"' in error


def test_people_go_to_triggers_and_run_at_to_schedules(env: Env) -> None:
    path = f"root:ops:{ACTION_OP}:config:run"
    newsletter = {"tokens": {"edition": "Q3"}}
    (error,) = env.config_errors(action_run_config("quarterly_newsletter", lead_ids=[1], **newsletter))
    assert f'unexpected config entry "lead_ids" at path {path}:quarterly_newsletter' in error
    run_at = "2030-01-01T00:00:00+00:00"
    (error,) = env.config_errors(action_run_config("welcome_sequence", run_at=run_at, tokens=WELCOME))
    assert f'unexpected config entry "run_at" at path {path}:welcome_sequence' in error
    two = {"ops": {ACTION_OP: {"config": {"run": {"welcome_sequence": {}, "quarterly_newsletter": {}}}}}}
    (error,) = env.config_errors(two)
    assert "welcome_sequence" in error and "quarterly_newsletter" in error


def test_token_config_names_are_identifiers_that_map_back() -> None:
    action = ActionSettings.model_validate(
        {
            "name": "names",
            "campaign": {"id": 1},
            "tokens": [
                {"name": "Welcome Message"},
                {"name": "Offer URL"},
                {"name": "offer_url"},
                {"name": "2nd Line"},
                {"name": "class"},
                {"name": "Größe"},
                {"name": "!!!"},
            ],
        }
    )
    fields = token_field_names(action)
    assert {key: spec.name for key, spec in fields.items()} == {
        "welcome_message": "Welcome Message",
        "offer_url": "Offer URL",
        "offer_url_2": "offer_url",
        "token_2nd_line": "2nd Line",
        "token_class": "class",
        "groe": "Größe",
        "token": "!!!",
    }
    assert all(key.isidentifier() for key in fields)


def test_with_one_action_the_selector_still_holds_it(env: Env) -> None:
    data = fast_settings_dict()
    data["actions"] = data["actions"][:1]
    job = build_definitions(parse_settings(data)).resolve_job_def(ACTION_JOB)
    run_config = action_run_config("welcome_sequence", lead_ids=[1], tokens=WELCOME)
    assert dg.validate_run_config(job, run_config)["ops"][ACTION_OP]["config"]["run"] == {
        "welcome_sequence": {"lead_ids": [1], "tokens": WELCOME}
    }


def test_with_no_actions_no_config_is_valid(env: Env) -> None:
    data = fast_settings_dict()
    data["actions"] = []
    job = build_definitions(parse_settings(data)).resolve_job_def(ACTION_JOB)
    for run in ("", "welcome_sequence", {"welcome_sequence": {}}):
        with pytest.raises(dg.DagsterInvalidConfigError, match="NoActionConfigured"):
            dg.validate_run_config(job, {"ops": {ACTION_OP: {"config": {"run": run}}}})


# --- triggers --------------------------------------------------------------------------------------------
def test_trigger_sends_tokens_for_lead_and_unified_ids(env: Env) -> None:
    before = len(env.control.campaign_requests())
    ids = env.lead_ids

    result = env.run(
        "welcome_sequence",
        lead_ids=[ids[0], ids[10]],
        unified_ids=["u-old", "u-2"],
        tokens={**WELCOME, "offer_url": "https://example.com/o"},
    )

    assert result.success
    (request,) = env.requests_since(before)
    assert request["kind"] == "trigger"
    assert request["campaignId"] == env.campaign_id("Molequle Welcome Trigger")
    # lead ids as given, then each unified id's leads (u-old follows the lineage to u-1); no duplicates
    assert request["leadIds"] == [ids[0], ids[10], ids[11], ids[12]]
    assert request["tokens"] == {
        "{{my.Welcome Message}}": "Hello from Molequle",
        "{{my.Offer URL}}": "https://example.com/o",
    }
    metadata = _output_metadata(result)
    assert metadata["people_sent"] == 4 and metadata["batches_sent"] == 1
    rows = env.log_rows(result.run_id)
    assert [(r["batch_index"], r["status"]) for r in rows] == [(0, "sending"), (0, "succeeded")]
    assert rows[-1]["lead_ids"] == request["leadIds"] and rows[-1]["idempotency_key"] == result.run_id


def test_missing_and_unknown_tokens_are_refused_before_anything_is_sent(env: Env) -> None:
    before = len(env.control.campaign_requests())
    run_config = action_run_config(
        "welcome_sequence", lead_ids=[env.lead_ids[0]], tokens={"welcom_message": "typo"}
    )

    with pytest.raises(dg.DagsterInvalidConfigError) as raised:
        env.defs.resolve_job_def(ACTION_JOB).execute_in_process(run_config=run_config, instance=env.instance)

    errors = [e.message for e in raised.value.errors]
    assert any('unexpected config entry "welcom_message"' in e for e in errors)
    assert any('Missing required config entry "welcome_message"' in e for e in errors)
    assert env.requests_since(before) == []


def test_values_a_schema_cannot_check_fail_the_run_naming_the_token(env: Env) -> None:
    before = len(env.control.campaign_requests())

    result = env.run(
        "welcome_sequence",
        lead_ids=[env.lead_ids[0]],
        tokens={"welcome_message": "  ", "offer_url": "example.com/offer"},
    )

    message, metadata = _failure(result)
    assert "tokens.welcome_message ({{my.Welcome Message}}): required by action 'welcome_sequence'" in message
    assert "tokens.offer_url ({{my.Offer URL}}): expected an http(s) URL" in message
    assert len(metadata["errors"]) == 2  # all reported at once
    assert env.requests_since(before) == []


def test_a_trigger_for_nobody_fails_before_sending(env: Env) -> None:
    before = len(env.control.campaign_requests())
    message, _ = _failure(env.run("welcome_sequence", tokens=WELCOME))
    assert "lead_ids/unified_ids: give at least one person" in message
    message, _ = _failure(env.run("welcome_sequence", lead_ids=[0, -3], tokens=WELCOME))
    assert "lead_ids: expected positive Marketo lead ids, got [0, -3]" in message
    assert env.requests_since(before) == []


def test_unknown_unified_id_is_named(env: Env) -> None:
    result = env.run("welcome_sequence", unified_ids=["u-1", "u-nobody"], tokens=WELCOME)
    message, _ = _failure(result)
    assert "unified_ids: no Marketo lead has unified id(s) ['u-nobody']" in message


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("paused_trigger", "it is not active (status 'Inactive')"),
        ("form_fill", "it has no 'Campaign is Requested' (Web Service API) trigger"),
        ("newsletter_as_trigger", "it is a batch campaign, not a trigger campaign"),
    ],
)
def test_unusable_campaigns_are_refused_before_sending(env: Env, action: str, reason: str) -> None:
    before = len(env.control.campaign_requests())
    result = env.run(action, lead_ids=[env.lead_ids[0]])
    message, _ = _failure(result)
    assert f"of action {action!r} cannot be requested through the API" in message
    assert reason in message
    assert env.requests_since(before) == []


def test_more_than_100_people_go_in_batches_of_at_most_100(env: Env) -> None:
    before = len(env.control.campaign_requests())
    people = env.lead_ids[:250]

    result = env.run("welcome_sequence", lead_ids=people, tokens=WELCOME)

    assert result.success
    requests = env.requests_since(before)
    assert [len(r["leadIds"]) for r in requests] == [100, 100, 50]
    assert [i for r in requests for i in r["leadIds"]] == people


def test_partial_failure_then_reexecution_sends_only_the_rest(env: Env) -> None:
    before = len(env.control.campaign_requests())
    people = env.lead_ids[:250]
    env.control.inject_fault(TRIGGER_ENDPOINT, "system_error_611", nth=2)
    run_config = {
        **action_run_config("welcome_sequence", lead_ids=people, tokens=WELCOME),
        "execution": {"config": {"in_process": {}}},
    }

    with dg.execute_job(dg.reconstructable(action_job), env.instance, run_config=run_config) as first:
        assert not first.success
        (failure,) = [e for e in first.all_events if e.event_type_value == "STEP_FAILURE"]
        message = failure.step_failure_data.error.message
        first_run_id = first.run_id
    assert (
        f"batch 1 (100 people, first lead {people[100]}): failed, Marketo code 611: System error" in message
    )
    sent_first = env.requests_since(before)
    assert [r["leadIds"] for r in sent_first] == [people[:100], people[200:]]  # batch 1 failed, batch 2 went

    options = dg.ReexecutionOptions.from_failure(first_run_id, env.instance)
    with dg.execute_job(
        dg.reconstructable(action_job), env.instance, run_config=run_config, reexecution_options=options
    ) as second:
        assert second.success
    resent = env.requests_since(before + len(sent_first))
    assert [r["leadIds"] for r in resent] == [people[100:200]]
    statuses = [(r["batch_index"], r["status"]) for r in env.log_rows(second.run_id)]
    assert statuses == [(0, "sending"), (0, "succeeded")]
    assert {r["idempotency_key"] for r in env.log_rows(second.run_id)} == {first_run_id}


def test_relaunch_with_the_same_idempotency_key_sends_nothing_again(env: Env) -> None:
    config = {"lead_ids": env.lead_ids[:3], "tokens": WELCOME, "idempotency_key": "campaign-2025-06"}
    before = len(env.control.campaign_requests())
    assert env.run("welcome_sequence", **config).success
    again = env.run("welcome_sequence", **config)
    assert again.success
    assert len(env.requests_since(before)) == 1
    assert _output_metadata(again)["people_already_sent"] == 3

    changed = env.run("welcome_sequence", **{**config, "tokens": {"welcome_message": "Different"}})
    message, _ = _failure(changed)
    assert "idempotency_key 'campaign-2025-06' was already used" in message


def test_uncertain_batches_are_held_back_until_resend_is_asked_for(env: Env) -> None:
    config = {"lead_ids": env.lead_ids[:2], "tokens": WELCOME, "idempotency_key": "uncertain-1"}
    env.control.inject_fault(TRIGGER_ENDPOINT, "connection_reset", nth=1)
    before = len(env.control.campaign_requests())

    message, _ = _failure(env.run("welcome_sequence", **config))
    assert "batch 0 (2 people" in message and "uncertain" in message
    message, metadata = _failure(env.run("welcome_sequence", **config))  # retried: held back, nothing sent
    assert "resend_uncertain" in message and metadata["people_held_uncertain"] == 2
    assert env.requests_since(before) == []

    assert env.run("welcome_sequence", **config, resend_uncertain=True).success
    assert [r["leadIds"] for r in env.requests_since(before)] == [env.lead_ids[:2]]


# --- schedules -------------------------------------------------------------------------------------------
def test_schedule_sends_run_at_and_tokens_once(env: Env) -> None:
    before = len(env.control.campaign_requests())
    run_at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    config = {
        "run_at": run_at.isoformat(),
        "tokens": {"edition": "Q3 2025"},
        "idempotency_key": "newsletter-q3",
    }

    assert env.run("quarterly_newsletter", **config).success
    assert env.run("quarterly_newsletter", **config).success  # relaunch: already scheduled

    (request,) = env.requests_since(before)
    assert request["kind"] == "schedule"
    assert request["campaignId"] == env.campaign_id("Molequle Quarterly Newsletter")
    assert request["runAt"] == run_at
    assert request["tokens"] == {"{{my.Edition}}": "Q3 2025"}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"run_at": "2020-01-01T00:00:00+00:00"}, "run_at: must be at least 5 minutes from now"),
        ({"run_at": "2030-01-01T00:00:00"}, "run_at: needs a timezone"),
        ({"run_at": "next monday"}, "run_at: expected an ISO 8601 date-time"),
        ({"tokens": {"edition": "Q3 " * 20}}, "tokens.edition ({{my.Edition}}): at most 40 characters"),
    ],
)
def test_schedule_input_errors_name_the_field(env: Env, extra: dict, expected: str) -> None:
    before = len(env.control.campaign_requests())
    message, _ = _failure(env.run("quarterly_newsletter", **{"tokens": {"edition": "Q3"}, **extra}))
    assert expected in message
    assert env.requests_since(before) == []


# --- token validation (pure) -----------------------------------------------------------------------------
TYPED = ActionSettings.model_validate(
    {
        "name": "typed",
        "campaign": {"id": 1},
        "tokens": [
            {"name": "Count", "type": "integer"},
            {"name": "Price", "type": "number"},
            {"name": "Day", "type": "date"},
            {"name": "Link", "type": "url"},
            {"name": "Short", "type": "string", "max_length": 5},
        ],
    }
)


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ({"Count": "12"}, {"Count": "12"}),
        ({"{{my.Price}}": 9.5, "Day": "2025-02-28"}, {"Price": "9.5", "Day": "2025-02-28"}),
        (
            {"Link": "https://example.com/a?b=1", "Short": "abcde"},
            {"Link": "https://example.com/a?b=1", "Short": "abcde"},
        ),
        ({"Count": ""}, {}),  # an empty optional token keeps the program's value
        ({"Price": 3.0, "Count": 7}, {"Price": "3", "Count": "7"}),  # Dagster's Float makes 3 into 3.0
    ],
)
def test_valid_token_values_become_text_and_empty_ones_are_left_out(tokens: dict, expected: dict) -> None:
    assert validate_tokens(TYPED, tokens) == expected


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        ({"Count": "1.5"}, "tokens.Count: expected an integer, got '1.5'"),
        ({"Count": True}, "tokens.Count: expected type integer, got a boolean"),
        ({"Price": "cheap"}, "tokens.Price: expected a number, got 'cheap'"),
        ({"Day": "28/02/2025"}, "tokens.Day: expected a date YYYY-MM-DD"),
        ({"Link": "example.com"}, "tokens.Link: expected an http(s) URL"),
        ({"Short": "abcdef"}, "tokens.Short: at most 5 characters, got 6"),
        ({"Colour": "red"}, "tokens.Colour: not a token of action 'typed'; allowed tokens: Count, Day, Link"),
    ],
)
def test_invalid_token_values_name_the_token(tokens: dict, expected: str) -> None:
    with pytest.raises(ActionInputError) as raised:
        validate_tokens(TYPED, tokens)
    assert expected in str(raised.value)


def test_token_errors_name_the_run_config_key_and_the_token() -> None:
    with pytest.raises(ActionInputError) as raised:
        validate_tokens(TYPED, {"Short": "abcdef"}, {"Short": "short_text"})
    assert raised.value.errors == ["tokens.short_text ({{my.Short}}): at most 5 characters, got 6"]


# --- contracts against Adobe's examples ------------------------------------------------------------------
def _doc(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_doc_inactive_trigger_campaign_is_refused() -> None:
    campaign = _doc("doc_smart-campaigns__by-name__response.json")["result"][0]
    action = ActionSettings.model_validate({"name": "t", "campaign": {"name": campaign["name"]}})
    with pytest.raises(ActionInputError) as raised:
        check_campaign(action, campaign)
    assert "it is not active (status 'Inactive')" in str(raised.value)
    assert "no 'Campaign is Requested'" in str(raised.value)


def test_doc_batch_campaign_can_be_scheduled_not_triggered() -> None:
    campaign = _doc("doc_smart-campaigns__by-id__response.json")["result"][0]
    schedule = ActionSettings.model_validate({"name": "s", "kind": "schedule", "campaign": {"id": 1001}})
    assert check_campaign(schedule, campaign) == 1001
    with pytest.raises(ActionInputError, match="it is a batch campaign, not a trigger campaign"):
        check_campaign(ActionSettings.model_validate({"name": "t", "campaign": {"id": 1001}}), campaign)


def test_tokens_go_on_the_wire_in_the_documented_form() -> None:
    documented = _doc("doc_smart-campaigns__trigger__request.json")["input"]["tokens"]
    sent = token_list({"message": "Updated message", "other token": "Value for other token"})
    assert sent == documented
