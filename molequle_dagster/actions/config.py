"""The action job's run config: which action, for whom, with which tokens, under which idempotency key."""

from typing import Any

import dagster as dg
from pydantic import Field

from molequle_dagster.settings import MolequleSettings

ACTION_JOB = "run_marketo_action_job"
ACTION_OP = "run_marketo_action"  # the run config is keyed by the op's name


class MarketoActionConfig(dg.Config):
    """What to run: one configured action, its people and its token values."""

    action: str = Field(description="Name of the action in the settings' `actions` list.")
    lead_ids: list[int] = Field(
        default_factory=list,
        description="Marketo lead ids to trigger the campaign for (trigger actions; added to unified_ids).",
    )
    unified_ids: list[str] = Field(
        default_factory=list,
        description="Molequle unified person ids; each is resolved to all its Marketo lead ids through "
        "person_unified_links (trigger actions).",
    )
    tokens: dict[str, Any] = Field(
        default_factory=dict,
        description="Token name -> value, for the action's declared My Tokens (names without {{my. }}). "
        "An empty value for an optional token keeps the program's own value.",
    )
    run_at: str | None = Field(
        default=None,
        description="Schedule actions: when Marketo runs the batch campaign, ISO 8601 with a timezone "
        "(e.g. 2030-01-31T09:00:00+00:00), at least 5 minutes ahead. Empty: about 5 minutes after the call.",
    )
    idempotency_key: str | None = Field(
        default=None,
        description="Batches already sent successfully under this key are never sent again. Empty: the "
        "run's root run id (so re-executing a failed run only sends what is left).",
    )
    resend_uncertain: bool = Field(
        default=False,
        description="Re-send batches whose outcome is unknown (the request may have reached Marketo). "
        "Check in Marketo first: a repeated trigger runs the flow twice.",
    )


def default_action_config(settings: MolequleSettings) -> dg.RunConfig | None:
    """Opens the launchpad pre-filled with the first configured action and its tokens."""
    if not settings.actions:
        return None
    first = settings.actions[0]
    config = MarketoActionConfig(action=first.name, tokens={t.name: "" for t in first.tokens})
    return dg.RunConfig(ops={ACTION_OP: config})
