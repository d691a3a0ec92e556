"""Actions: run a configured smart campaign from Dagster (issue 8).

`run_marketo_action_job` runs one action from the settings' `actions` list:

* `kind: trigger` — Request Campaign for people chosen by Marketo lead id or by unified id (resolved through
  `person_unified_links`), in batches of at most 100, with the action's tokens as `{{my.Name}}`.
* `kind: schedule` — Schedule Campaign for a batch campaign, with `runAt` and tokens.

Run config (op `run_marketo_action`): `run` selects one action by name and holds its inputs; its schema is
built from the settings, so Dagster (and the launchpad, before launch) checks which actions exist, that
triggers take `lead_ids`/`unified_ids` and schedules `run_at`, and each token's presence and type. Token
keys are the token names as identifiers (`Offer URL` -> `offer_url`; the field's description gives the
original):

    run:
      welcome_sequence:
        lead_ids: [1001]
        unified_ids: [u-42]
        tokens: {welcome_message: Hello, offer_url: https://www.example.com/offer}
    idempotency_key: welcome-2030-01    # optional
    resend_uncertain: false             # optional

The job has no default config: a default would either pick people to send to or fail at run time.

Before the first call, the run checks what a schema cannot: token lengths, URL and date formats, empty
required values, at least one person (and positive lead ids), `run_at` (ISO 8601 with a timezone, at least
5 minutes ahead), unified ids that exist, and the campaign itself (an active, requestable trigger campaign;
a batch campaign for schedules). Each batch's outcome goes to the op's metadata and to the lake table
`action_log`.

Idempotency: batches are keyed by `idempotency_key` if given, else by the run's *root* run id, so a
re-execution of a failed run (same root) and an explicit relaunch with the same key both read the action
log and skip people whose batch already succeeded. A batch whose outcome is unknown (the request may have
reached Marketo: a crash or a network error after sending) is not re-sent unless `resend_uncertain` is set,
because a repeated trigger runs the campaign's flow twice for those people.

Modules: `config` (the run config schema, built from the settings), `validation` (run-time input checks),
`people` (lead ids from unified ids), `log` (the action log and idempotency), `sending` (batches),
`execute` (one run), `op` (the op; the job is in `jobs.py`).
"""

from molequle_dagster.actions.config import (
    ACTION_JOB,
    ACTION_OP,
    RUN_FIELD,
    ActionRequest,
    action_config_schema,
    action_request,
    chosen_action,
    token_field_names,
)
from molequle_dagster.actions.execute import execute_action
from molequle_dagster.actions.log import (
    ACTION_LOG_SCHEMA,
    ACTION_LOG_TABLE,
    FAILED,
    SENDING,
    SUCCEEDED,
    UNCERTAIN,
    ActionLog,
    LogEntry,
    Progress,
    fingerprint,
    outcome_of,
    progress,
)
from molequle_dagster.actions.op import build_action_op
from molequle_dagster.actions.people import UNIFIED_LINEAGE_TABLE, UNIFIED_LINKS_TABLE, resolve_lead_ids
from molequle_dagster.actions.sending import MAX_CONSECUTIVE_FAILURES, BatchResult, BatchSender
from molequle_dagster.actions.validation import (
    SCHEDULE_MAX_AHEAD,
    SCHEDULE_MIN_DELAY,
    SHOWN_IDS,
    ActionInputError,
    check_campaign,
    check_targets,
    parse_run_at,
    validate_tokens,
)
from molequle_dagster.marketo.batching import batches

__all__ = [
    "ACTION_JOB",
    "ACTION_LOG_SCHEMA",
    "ACTION_LOG_TABLE",
    "ACTION_OP",
    "FAILED",
    "MAX_CONSECUTIVE_FAILURES",
    "RUN_FIELD",
    "SCHEDULE_MAX_AHEAD",
    "SCHEDULE_MIN_DELAY",
    "SENDING",
    "SHOWN_IDS",
    "SUCCEEDED",
    "UNCERTAIN",
    "UNIFIED_LINEAGE_TABLE",
    "UNIFIED_LINKS_TABLE",
    "ActionInputError",
    "ActionLog",
    "ActionRequest",
    "BatchResult",
    "BatchSender",
    "LogEntry",
    "Progress",
    "action_config_schema",
    "action_request",
    "batches",
    "build_action_op",
    "check_campaign",
    "check_targets",
    "chosen_action",
    "execute_action",
    "fingerprint",
    "outcome_of",
    "parse_run_at",
    "progress",
    "resolve_lead_ids",
    "token_field_names",
    "validate_tokens",
]
