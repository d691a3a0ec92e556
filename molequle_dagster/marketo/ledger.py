"""The bulk job ledger: our exports as last seen, kept in the coordination store so any process on any
host resumes or reuses them instead of paying for an export twice.

Statuses: `creating` (we are about to create it; the row holds our place in the queue share),
`lost` (a create whose answer never came: the sweep looks for the job it may have made), then Marketo's
own `created`, `queued`, `processing`, `completed`, `failed`, `cancelled`, plus `enqueuing` (reserved,
enqueue under way) and `gone` (Marketo no longer knows it, or its file expired).

When a completed export may serve a later run (`reusable_completed`): within the same reuse scope (a
Dagster run and its retries), or, across runs, when its data cannot have changed since: an activities
export of a `createdAt` window or a leads export of an `updatedAt` window that ended at least
`late_records_margin_s` before the job started. Leads by `createdAt` carry field values that change after
creation, and smart-list, static-list and program-member exports follow membership, so those are reused
only within their scope.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from typing import Any

from molequle_dagster.coordination import CoordinationStore, JobRecord
from molequle_dagster.marketo.config import BulkConfig
from molequle_dagster.marketo.timeutil import parse_marketo_datetime

UNFINISHED = frozenset({"created", "enqueuing", "queued", "processing"})
INTENTS = frozenset({"creating", "lost"})
# Our jobs holding (or about to hold) a place in Marketo's queue: they count toward max_queued_jobs.
RESERVED = frozenset({"creating", "enqueuing", "queued", "processing"})
# Window filters whose export is a fixed record of the past once the window has closed.
CLOSED_WINDOW_FILTERS = {"activities": "createdAt", "leads": "updatedAt"}


def request_key(entity: str, fields: list[str] | None, filter: dict[str, Any], fmt: str = "CSV") -> str:
    canonical = canonical_request(entity, fields, filter, fmt)
    return hashlib.sha256(canonical.encode()).hexdigest()


def canonical_request(entity: str, fields: list[str] | None, filter: dict[str, Any], fmt: str = "CSV") -> str:
    identity = {"entity": entity, "fields": fields, "filter": filter, "format": fmt}
    return json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)


def closed_window_end(entity: str, filter: dict[str, Any]) -> float | None:
    """The end of the request's window (epoch seconds) when its export can serve later runs, else None."""
    name = CLOSED_WINDOW_FILTERS.get(entity)
    span = filter.get(name) if name else None
    if not isinstance(span, dict) or set(filter) - {name, "activityTypeIds"}:
        return None  # any other filter (lists, programs, smart lists) follows membership: not fixed
    try:
        return parse_marketo_datetime(str(span["endAt"])).timestamp()
    except (KeyError, ValueError):
        return None


def reusable_completed(job: JobRecord, reuse_scope: str | None, now: float, config: BulkConfig) -> bool:
    if job.finished_at is not None and now - job.finished_at > config.file_retention_s:
        return False  # its file is gone (or about to be)
    if reuse_scope is not None and job.reuse_scope == reuse_scope:
        return now - job.created_at <= config.reuse_max_age_s
    return (
        job.window_end is not None
        and job.started_at is not None
        and job.window_end <= job.started_at - config.late_records_margin_s
    )


class JobLedger:
    """The store's job rows for one instance and API user (Marketo shows a job only to its creator)."""

    def __init__(self, store: CoordinationStore, *, instance: str, api_user: str, owner: str) -> None:
        self.store = store
        self.instance = instance
        self.api_user = api_user
        self.owner = owner

    def reserve(self, job: JobRecord, limit: int) -> bool:
        return self.store.reserve_job(job.with_(owner=self.owner), limit=limit, counted=RESERVED)

    def find(
        self,
        *,
        key: str | None = None,
        statuses: Collection[str] | None = None,
        updated_before: float | None = None,
    ) -> list[JobRecord]:
        return self.store.find_jobs(
            self.instance,
            api_user=self.api_user,
            request_key=key,
            statuses=statuses,
            updated_before=updated_before,
        )

    def known_ids(self) -> set[str]:
        return {job.export_id for job in self.find()}

    def update(self, export_id: str, /, **changes: Any) -> None:
        self.store.update_job(export_id, **changes)

    def get(self, export_id: str) -> JobRecord | None:
        return self.store.get_job(export_id)

    def delete(self, export_id: str) -> None:
        self.store.delete_job(export_id)
