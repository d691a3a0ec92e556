"""The action job's run config, derived from the settings' `actions` so Dagster itself validates it.

The op's config is `run` (a selector: one key, the action's name, holding that action's people and typed
tokens), plus `idempotency_key` and `resend_uncertain`:

    ops:
      run_marketo_action:
        config:
          run:
            welcome_sequence:
              lead_ids: [1001, 1002]
              tokens: {welcome_message: Hello, offer_url: https://example.com/offer}
          idempotency_key: welcome-2030-01

Everything a schema can say is in it, so the launchpad flags it before launch: which actions exist, which
tokens each takes and which are required, the token types, and who takes people (triggers) or `run_at`
(schedules). What a schema cannot say stays a run-time check (`validation`): lengths, URL/date formats,
an empty required token, at least one person, `run_at` at least 5 minutes ahead, the campaign itself.

A raw Dagster schema rather than a generated `dg.Config` class: a selector also works with a single
action, and token field names need not avoid pydantic's attribute names.
"""

import keyword
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from molequle_dagster.settings import ActionSettings, MolequleSettings, TokenSpec

ACTION_JOB = "run_marketo_action_job"
ACTION_OP = "run_marketo_action"  # the run config is keyed by the op's name
RUN_FIELD = "run"

# Dagster config scalar per token type; dates and URLs are strings whose format is checked at run time.
_TOKEN_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "date": str, "url": str}
_TOKEN_SHAPES = {
    "string": "text",
    "integer": "an integer",
    "number": "a number",
    "date": "a date YYYY-MM-DD",
    "url": "an http(s) URL such as https://www.example.com/page",
}


@dataclass(frozen=True)
class ActionRequest:
    """One run's request as the config gave it, with tokens under their own names ("Welcome Message")."""

    action: str
    tokens: dict[str, Any] = field(default_factory=dict)
    lead_ids: list[int] = field(default_factory=list)
    unified_ids: list[str] = field(default_factory=list)
    run_at: str | None = None
    idempotency_key: str | None = None
    resend_uncertain: bool = False


def token_field_names(action: ActionSettings) -> dict[str, TokenSpec]:
    """Config field name -> token, in the settings' order: "Offer URL" becomes `offer_url`.

    Marketo token names may hold spaces and punctuation; config keys are kept to lower-case identifiers
    so they read like every other key. Names that collide get `_2`, `_3`… in order.
    """
    fields: dict[str, TokenSpec] = {}
    for spec in action.tokens:
        ascii_name = unicodedata.normalize("NFKD", spec.name).encode("ascii", "ignore").decode()
        base = re.sub(r"[^0-9a-zA-Z]+", "_", ascii_name).strip("_").lower() or "token"
        if base[0].isdigit() or keyword.iskeyword(base):
            base = f"token_{base}"
        name, n = base, 1
        while name in fields:
            n += 1
            name = f"{base}_{n}"
        fields[name] = spec
    return fields


def _token_field(spec: TokenSpec) -> dg.Field:
    need = "required" if spec.required else "optional: leave it out to keep the program's own value"
    description = (
        f"My Token {{{{my.{spec.name}}}}}: {_TOKEN_SHAPES[spec.type]} of at most {spec.max_length} "
        f"characters; {need}." + (f" {spec.description}" if spec.description else "")
    )
    scalar = _TOKEN_TYPES[spec.type]
    if spec.required:
        return dg.Field(scalar, description=description)
    return dg.Field(dg.Noneable(scalar), is_required=False, description=description)


def _action_fields(action: ActionSettings) -> dict[str, dg.Field]:
    fields: dict[str, dg.Field] = {}
    if action.kind == "trigger":
        # Optional without a default: the launchpad's "expand defaults" then never writes a trigger
        # for nobody (`lead_ids: []`) that looks valid and fails at run time.
        fields["lead_ids"] = dg.Field(
            [int],
            is_required=False,
            description="Marketo lead ids to trigger the campaign for (added to unified_ids' leads). "
            "Give at least one person here or in unified_ids.",
        )
        fields["unified_ids"] = dg.Field(
            [str],
            is_required=False,
            description="Molequle unified person ids; each is resolved to all its Marketo lead ids "
            "through person_unified_links (retired ids follow person_id_lineage).",
        )
    else:
        fields["run_at"] = dg.Field(
            dg.Noneable(str),
            default_value=None,
            description="When Marketo runs the batch campaign: ISO 8601 with a timezone (e.g. "
            "2030-01-31T09:00:00+00:00), at least 5 minutes ahead. Empty: about 5 minutes after the call.",
        )
    tokens = token_field_names(action)
    if tokens:
        required = [name for name, spec in tokens.items() if spec.required]
        fields["tokens"] = dg.Field(
            {name: _token_field(spec) for name, spec in tokens.items()},
            is_required=bool(required),
            description="Values for the program's My Tokens, by config name (each field's description "
            "gives the token's own name)." + (f" Required: {', '.join(required)}." if required else ""),
        )
    return fields


def _describe(action: ActionSettings) -> str:
    ref = action.campaign
    campaign = f"id {ref.id}" if ref.id is not None else repr(ref.name)
    what = (
        f"Trigger: request smart campaign {campaign} for the given people."
        if action.kind == "trigger"
        else f"Schedule: run batch campaign {campaign} at run_at."
    )
    return what + (f" {action.description}" if action.description else "")


def action_config_schema(settings: MolequleSettings) -> dict[str, dg.Field]:
    """The op's config schema: `run` selects one configured action; nothing in it has a default that fails."""
    if settings.actions:
        run = dg.Field(
            dg.Selector(
                {
                    a.name: dg.Field(dg.Shape(_action_fields(a)), description=_describe(a))
                    for a in settings.actions
                }
            ),
            description="The action to run: one key, the action's name, holding its people and tokens. "
            "Configured: " + ", ".join(f"{a.name} ({a.kind})" for a in settings.actions) + ".",
        )
    else:
        # An enum without values: no config is valid, so the launchpad says so instead of a run failing.
        run = dg.Field(
            dg.Enum("NoActionConfigured", []),
            description="No actions are configured: add one to the settings' `actions` and reload the "
            "code location.",
        )
    return {
        RUN_FIELD: run,
        "idempotency_key": dg.Field(
            dg.Noneable(str),
            default_value=None,
            description="Batches already sent successfully under this key are never sent again. Empty: "
            "the run's root run id (so re-executing a failed run only sends what is left).",
        ),
        "resend_uncertain": dg.Field(
            bool,
            default_value=False,
            description="Re-send batches whose outcome is unknown (the request may have reached "
            "Marketo). Check in Marketo first: a repeated trigger runs the flow twice.",
        ),
    }


def action_request(action: ActionSettings, config: Mapping[str, Any]) -> ActionRequest:
    """The request in a run config that Dagster already validated against `action_config_schema`."""
    chosen = config[RUN_FIELD][action.name] or {}
    fields = token_field_names(action)
    given = chosen.get("tokens") or {}
    return ActionRequest(
        action=action.name,
        tokens={spec.name: given[key] for key, spec in fields.items() if given.get(key) is not None},
        lead_ids=list(chosen.get("lead_ids") or []),
        unified_ids=list(chosen.get("unified_ids") or []),
        run_at=chosen.get("run_at"),
        idempotency_key=config.get("idempotency_key"),
        resend_uncertain=bool(config.get("resend_uncertain")),
    )


def chosen_action(config: Mapping[str, Any]) -> str:
    """The action a validated run config selects (the selector's one key)."""
    selected = config.get(RUN_FIELD)
    if not isinstance(selected, Mapping) or len(selected) != 1:
        raise ValueError(f"{RUN_FIELD}: expected one key, the name of a configured action, got {selected!r}")
    return next(iter(selected))
