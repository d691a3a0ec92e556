"""One action run end to end: validate everything, consult the action log, send, then report or fail."""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from molequle_dagster.actions.config import action_request, chosen_action, token_field_names
from molequle_dagster.actions.log import SUCCEEDED, ActionLog, fingerprint, progress
from molequle_dagster.actions.people import resolve_lead_ids
from molequle_dagster.actions.sending import BatchSender, send_schedule, send_trigger_batches
from molequle_dagster.actions.validation import (
    ActionInputError,
    check_campaign,
    check_targets,
    parse_run_at,
    validate_tokens,
)
from molequle_dagster.conventions import fail_on_purpose
from molequle_dagster.resources import LakeResource, MarketoResource
from molequle_dagster.settings import ActionSettings, MolequleSettings, SettingsError


def _fail(
    context: dg.OpExecutionContext, description: str, metadata: dict[str, Any] | None = None
) -> dg.Failure:
    # Bad action input fails the same way however often it runs: never retried, by the step or the run.
    return fail_on_purpose(context, description, metadata)


def execute_action(
    context: dg.OpExecutionContext,
    settings: MolequleSettings,
    config: Mapping[str, Any],
    marketo: MarketoResource,
    lake: LakeResource,
) -> None:
    """Run the action `config` (the op's config, already validated by Dagster) selects."""
    try:
        # The schema came from the same settings; a mismatch means the code location was not reloaded.
        action = settings.action(chosen_action(config))
    except (SettingsError, ValueError) as error:
        raise _fail(context, f"run: {error}") from None
    request = action_request(action, config)
    now = datetime.now(UTC)
    try:
        check_targets(action, request)
        config_names = {spec.name: key for key, spec in token_field_names(action).items()}
        tokens = validate_tokens(action, request.tokens, config_names)
        run_at = parse_run_at(request.run_at, now) if action.kind == "schedule" else None
        lead_ids = resolve_lead_ids(lake.lake, request.lead_ids, request.unified_ids)
        client = marketo.client
        ref = action.campaign
        found = (
            client.smart_campaign(ref.id)
            if ref.id is not None
            else client.smart_campaign_by_name(ref.name or "")
        )
        campaign_id = check_campaign(action, found)
    except ActionInputError as error:
        raise _fail(
            context, f"action {action.name!r} was not run: {error}", {"errors": error.errors}
        ) from None

    key = request.idempotency_key or context.run.root_run_id or context.run_id
    request_fingerprint = fingerprint(action, campaign_id, tokens, run_at)
    log = ActionLog(lake.lake)
    before = progress(log.entries(key, action.name))
    if before.fingerprints and request_fingerprint not in before.fingerprints:
        raise _fail(
            context,
            f"idempotency_key {key!r} was already used for action {action.name!r} with different tokens "
            "or run_at; use a new key for a different request",
        )
    sender = BatchSender(context, action, campaign_id, key, request_fingerprint, log)
    if action.kind == "schedule":
        skipped = send_schedule(sender, before, request, tokens, run_at, client)
    else:
        skipped = send_trigger_batches(sender, before, request, lead_ids, tokens, client)
    _report(context, sender, action, campaign_id, key, skipped, len(lead_ids))


def _report(
    context: dg.OpExecutionContext,
    sender: BatchSender,
    action: ActionSettings,
    campaign_id: int,
    key: str,
    skipped: dict[str, int],
    people: int,
) -> None:
    results = sender.results
    sent = [r for r in results if r.status == SUCCEEDED]
    bad = [r for r in results if r.status != SUCCEEDED]
    metadata: dict[str, Any] = {
        "action": action.name,
        "kind": action.kind,
        "campaign_id": campaign_id,
        "idempotency_key": key,
        "people": people,
        "people_sent": sum(len(r.lead_ids) for r in sent),
        "people_already_sent": skipped["already_sent"],
        "people_held_uncertain": skipped["held_uncertain"],
        "batches_sent": len(sent),
        "batches_not_succeeded": len(bad),
        "batches": dg.MetadataValue.json([r.summary() for r in results]),
    }
    if bad:
        lines = [
            f"batch {r.batch_index} ({len(r.lead_ids)} people, first lead "
            f"{r.lead_ids[0] if r.lead_ids else '-'}): {r.status}"
            + (f", Marketo code {r.code}: {r.message}" if r.code else (f": {r.message}" if r.message else ""))
            for r in bad
        ]
        raise _fail(
            context,
            f"action {action.name!r}: {len(bad)} of {len(results)} batch(es) did not succeed; "
            f"re-execute the run (or relaunch with idempotency_key {key!r}) to send only those: "
            + "; ".join(lines),
            metadata,
        )
    if skipped["held_uncertain"]:
        raise _fail(
            context,
            f"action {action.name!r}: {skipped['held_uncertain']} people were held back because an "
            "earlier attempt may have reached Marketo; check in Marketo, then relaunch with "
            "resend_uncertain: true to send them",
            metadata,
        )
    context.add_output_metadata(metadata)
