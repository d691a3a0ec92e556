"""Sending an action's batches: each batch is logged as `sending` before the call and with its outcome
after, so a crash or a re-execution always knows what may have reached Marketo."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dagster as dg

from molequle_dagster.actions.config import ActionRequest
from molequle_dagster.actions.log import SENDING, SUCCEEDED, ActionLog, Progress, outcome_of
from molequle_dagster.clock import now as utcnow
from molequle_dagster.marketo.batching import batches
from molequle_dagster.marketo.errors import MarketoError
from molequle_dagster.marketo.writes import TRIGGER_BATCH
from molequle_dagster.settings import ActionSettings

MAX_CONSECUTIVE_FAILURES = 3  # after this many failed batches in a row the problem is not the batch
NOT_SENT = "not_sent"  # a batch given up on after too many failures; never logged, only reported


@dataclass
class BatchResult:
    batch_index: int
    lead_ids: list[int]
    status: str
    code: str | None = None
    message: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "batch": self.batch_index,
            "people": len(self.lead_ids),
            "first_lead_id": self.lead_ids[0] if self.lead_ids else None,
            "status": self.status,
            "code": self.code,
            "message": self.message,
        }


class BatchSender:
    """One execution of an action: validated inputs in, batches out, every outcome logged before the next."""

    def __init__(
        self,
        context: dg.OpExecutionContext,
        action: ActionSettings,
        campaign_id: int,
        key: str,
        request_fingerprint: str,
        log: ActionLog,
    ) -> None:
        self.context, self.action, self.campaign_id = context, action, campaign_id
        self.key, self.request_fingerprint, self.log = key, request_fingerprint, log
        self.results: list[BatchResult] = []

    def record(
        self,
        batch_index: int,
        lead_ids: list[int],
        status: str,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        self.log.append(
            {
                "run_id": self.context.run_id,
                "idempotency_key": self.key,
                "action": self.action.name,
                "kind": self.action.kind,
                "campaign_id": self.campaign_id,
                "batch_index": batch_index,
                "lead_ids": lead_ids,
                "status": status,
                "code": code,
                "message": message,
                "fingerprint": self.request_fingerprint,
                "at": utcnow(),
            }
        )
        if status != SENDING:
            self.results.append(BatchResult(batch_index, lead_ids, status, code, message))

    def send(self, batch_index: int, lead_ids: list[int], call: Callable[[], Any]) -> bool:
        self.record(batch_index, lead_ids, SENDING)
        try:
            call()
        except MarketoError as error:
            status = outcome_of(error)
            self.record(batch_index, lead_ids, status, error.code, error.marketo_message or str(error))
            self.context.log.warning(
                f"action {self.action.name!r} batch {batch_index} ({len(lead_ids)} people, "
                f"first lead {lead_ids[0] if lead_ids else '-'}): {status}: {error}"
            )
            return False
        self.record(batch_index, lead_ids, SUCCEEDED)
        return True


def send_trigger_batches(
    sender: BatchSender,
    before: Progress,
    request: ActionRequest,
    lead_ids: list[int],
    tokens: dict[str, str],
    client: Any,
) -> dict[str, int]:
    """Request the campaign for everyone not already done (nor held as uncertain); returns skip counts."""
    held = set() if request.resend_uncertain else set(before.uncertain)
    pending = [i for i in lead_ids if i not in before.done and i not in held]
    consecutive_failures = 0
    for index, batch in enumerate(batches(pending, TRIGGER_BATCH)):
        if consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
            sender.results.append(
                BatchResult(
                    index,
                    batch,
                    NOT_SENT,
                    None,
                    f"not sent after {MAX_CONSECUTIVE_FAILURES} failed batches in a row",
                )
            )
            continue
        ok = sender.send(index, batch, lambda b=batch: client.request_campaign(sender.campaign_id, b, tokens))
        consecutive_failures = 0 if ok else consecutive_failures + 1
    return {
        "already_sent": sum(1 for i in lead_ids if i in before.done),
        "held_uncertain": sum(1 for i in lead_ids if i in held and i not in before.done),
    }


def send_schedule(
    sender: BatchSender,
    before: Progress,
    request: ActionRequest,
    tokens: dict[str, str],
    run_at: datetime | None,
    client: Any,
) -> dict[str, int]:
    """Schedule the batch campaign once per key (a schedule is one batch with no people)."""
    if before.scheduled:
        return {"already_sent": 1, "held_uncertain": 0}
    if before.schedule_uncertain and not request.resend_uncertain:
        return {"already_sent": 0, "held_uncertain": 1}
    sender.send(0, [], lambda: client.schedule_campaign(sender.campaign_id, run_at=run_at, tokens=tokens))
    return {"already_sent": 0, "held_uncertain": 0}
