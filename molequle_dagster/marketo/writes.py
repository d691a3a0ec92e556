"""Writes: Sync Leads (updateOnly by id, 300 per call), Request Campaign (100 leads), Schedule Campaign."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from molequle_dagster.marketo.batching import batched
from molequle_dagster.marketo.errors import MalformedResponseError
from molequle_dagster.marketo.timeutil import format_marketo_datetime
from molequle_dagster.marketo.transport import Transport

SYNC_BATCH = 300
TRIGGER_BATCH = 100
MAX_TOKENS = 100
SYNC_LEADS_TIMEOUT_S = 90.0  # Marketo's own server timeout for Sync Leads


@dataclass(frozen=True)
class RecordReason:
    code: str
    message: str


@dataclass(frozen=True)
class SyncResult:
    """One input record's outcome, in input order: status created|updated|skipped, reasons if skipped."""

    index: int
    lead_id: int | None
    status: str
    reasons: tuple[RecordReason, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.status in ("created", "updated")


def sync_leads_update_by_id(transport: Transport, records: Sequence[Mapping[str, Any]]) -> list[SyncResult]:
    """updateOnly by id, 300 per call. Every record must carry an integer `id`."""
    for i, record in enumerate(records):
        lead_id = record.get("id")
        if not isinstance(lead_id, int) or isinstance(lead_id, bool):
            raise ValueError(f"records[{i}].id: expected an integer Marketo lead id, got {lead_id!r}")
    results: list[SyncResult] = []
    for start, chunk in batched(records, SYNC_BATCH):
        batch = [dict(r) for r in chunk]
        envelope = transport.request(
            "POST",
            "/rest/v1/leads.json",
            json_body={"action": "updateOnly", "lookupField": "id", "input": batch},
            timeout_s=SYNC_LEADS_TIMEOUT_S,
        )
        items = envelope.get("result") or []
        if len(items) != len(batch):
            raise MalformedResponseError(
                f"Sync Leads answered {len(items)} results for {len(batch)} records",
                endpoint="POST /rest/v1/leads.json",
                request_id=envelope.get("requestId"),
            )
        for offset, item in enumerate(items):
            results.append(_sync_result(start + offset, item, batch[offset]["id"]))
    return results


def _sync_result(index: int, item: Mapping[str, Any], sent_id: int) -> SyncResult:
    reasons = tuple(
        RecordReason(str(r.get("code", "")), str(r.get("message", "")))
        for r in (item.get("reasons") or [])
        if isinstance(r, Mapping)
    )
    lead_id = item.get("id")
    if lead_id is not None and (isinstance(lead_id, bool) or not str(lead_id).isdigit()):
        raise MalformedResponseError(
            f"Sync Leads result {index} has id {lead_id!r}, not a lead id",
            endpoint="POST /rest/v1/leads.json",
        )
    return SyncResult(
        index=index,
        lead_id=int(lead_id) if lead_id is not None else sent_id,
        status=str(item.get("status", "")),
        reasons=reasons,
    )


def token_list(tokens: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """{name: value} -> [{"name": "{{my.name}}", "value": ...}] (names already in braces are kept)."""
    if not tokens:
        return []
    if len(tokens) > MAX_TOKENS:
        raise ValueError(f"tokens: at most {MAX_TOKENS} per call, got {len(tokens)}")
    out = []
    for name, value in tokens.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"tokens: names must be non-empty strings, got {name!r}")
        bare = name.strip()
        if bare.startswith("{{") and bare.endswith("}}"):
            full = bare
        else:
            full = "{{" + (bare if bare.startswith("my.") else f"my.{bare}") + "}}"
        out.append({"name": full, "value": "" if value is None else str(value)})
    return out


def request_campaign(
    transport: Transport, campaign_id: int, lead_ids: Iterable[int], tokens: Mapping[str, Any] | None = None
) -> int:
    """Request (trigger) a campaign for leads, 100 per call. Not retried after an ambiguous failure
    (a repeated trigger would run the flow twice). Returns the number of calls made."""
    ids = list(lead_ids)
    if not ids:
        raise ValueError("lead_ids: expected at least one lead id")
    bad = [i for i in ids if not isinstance(i, int) or isinstance(i, bool)]
    if bad:
        raise ValueError(f"lead_ids: expected integer lead ids, got {bad[:3]!r}")
    token_items = token_list(tokens)
    calls = 0
    for _, chunk in batched(ids, TRIGGER_BATCH):
        body: dict[str, Any] = {"input": {"leads": [{"id": i} for i in chunk]}}
        if token_items:
            body["input"]["tokens"] = token_items
        transport.request(
            "POST", f"/rest/v1/campaigns/{int(campaign_id)}/trigger.json", json_body=body, idempotent=False
        )
        calls += 1
    return calls


def schedule_campaign(
    transport: Transport,
    campaign_id: int,
    *,
    run_at: datetime | None = None,
    tokens: Mapping[str, Any] | None = None,
    clone_to_program_name: str | None = None,
) -> None:
    """Schedule a batch campaign (runAt omitted: Marketo runs it ~5 minutes later)."""
    body_input: dict[str, Any] = {}
    if run_at is not None:
        body_input["runAt"] = format_marketo_datetime(run_at)
    if tokens:
        body_input["tokens"] = token_list(tokens)
    if clone_to_program_name:
        body_input["cloneToProgramName"] = clone_to_program_name
    transport.request(
        "POST",
        f"/rest/v1/campaigns/{int(campaign_id)}/schedule.json",
        json_body={"input": body_input},
        idempotent=False,
    )
