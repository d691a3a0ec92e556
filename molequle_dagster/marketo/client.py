"""`MarketoClient`: the one object callers use. Composes transport, pacing, reads, writes and bulk.

No Dagster here: the Dagster layer wraps this class in a ConfigurableResource.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from molequle_dagster.coordination import CoordinationStore, QuotaStop, open_store
from molequle_dagster.marketo import writes
from molequle_dagster.marketo.bulk import BulkEngine, BulkExportResult, ExportRequest
from molequle_dagster.marketo.config import MarketoConfig
from molequle_dagster.marketo.errors import DailyQuotaExceeded, QuotaExhausted
from molequle_dagster.marketo.pacing import CrossProcessPacer
from molequle_dagster.marketo.reads import MarketoReads
from molequle_dagster.marketo.schema import (
    ACTIVITY_COLUMN_TYPES,
    PROGRAM_MEMBER_COLUMN_TYPES,
    describe2_fields,
    lead_field_labels,
    lead_field_types,
    schema_for,
)
from molequle_dagster.marketo.stats import CallStats
from molequle_dagster.marketo.timeutil import format_marketo_datetime, quota_day, split_windows
from molequle_dagster.marketo.transport import Transport
from molequle_dagster.marketo.usage import UsageToday, usage_today

BulkEntity = Literal["leads", "activities", "program/members"]
# Callers outside Dagster: every process of this user on this host shares one budget by default.
DEFAULT_STORE_DIR = Path.home() / ".molequle" / "coordination"
USAGE_CACHE_S = 60.0  # stats/usage.json at most once a minute per client (a step)


def scope_key(*parts: str) -> str:
    """A short stable name for an instance (or instance + client id) in the coordination store."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class MarketoClient(MarketoReads):
    """`store` is the coordination store every process talking to this Marketo shares (see
    molequle_dagster.coordination), or a directory (SQLite) or `postgresql://` URL to open one; by
    default a SQLite store under ~/.molequle/coordination."""

    def __init__(
        self,
        config: MarketoConfig,
        client_id: str,
        client_secret: str,
        *,
        store: CoordinationStore | str | os.PathLike[str] = DEFAULT_STORE_DIR,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        verify_tls: bool = True,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if not isinstance(config, MarketoConfig):
            raise TypeError(f"config: expected a MarketoConfig, got {type(config).__name__}")
        self.stats = CallStats()
        self.config = config
        self.bulk_config = config.bulk
        self._owns_store = not isinstance(store, CoordinationStore)
        self.store: CoordinationStore = open_store(store) if self._owns_store else store  # type: ignore[arg-type]
        base_url = config.base_url
        # Marketo's call limits and quotas are per instance; bulk jobs are visible only to their API user.
        self.instance = scope_key(base_url)
        zone = config.zone
        # The quota day (usage, quota stops) follows `now`: the system clock, or a benchmark's virtual one.
        self._now = now or (lambda: datetime.now(UTC))
        # Pacing waits are real: Marketo's window is wall-clock time, whatever the injected sleep does.
        pacer = CrossProcessPacer(
            self.store, self.instance, config.pacing, usage_day=lambda: quota_day(zone, self._now())
        )
        self._transport = Transport(
            base_url,
            client_id,
            client_secret,
            timeout_s=config.timeout_s,
            stats=self.stats,
            pacer=pacer,
            retry=config.retry,
            quota_zone=zone,
            sleep=sleep,
            verify_tls=verify_tls,
            on_quota=self._record_quota_stop,
            now=self._now,
        )
        super().__init__(self._transport, max_empty_pages=config.bulk.max_empty_activity_pages)
        self._bulk = BulkEngine(
            self._transport,
            config=config.bulk,
            store=self.store,
            stats=self.stats,
            sleep=sleep,
            clock=clock,
            instance=self.instance,
            api_user=scope_key(base_url, client_id),
            zone=zone,
            on_quota=self._record_quota_stop,
            now=self._now,
        )
        self._describe_lock = threading.Lock()
        self._lead_types: dict[str, pa.DataType] | None = None
        self._lead_labels: dict[str, str] = {}
        self._member_types: dict[str, pa.DataType] | None = None
        self._filter_support: dict[tuple[str, str], bool] = {}
        self._usage: tuple[float, UsageToday] | None = None
        self._clock = clock

    def close(self) -> None:
        self._transport.close()
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> MarketoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schemas ------------------------------------------------------------------------------------
    def lead_field_types(self) -> dict[str, pa.DataType]:
        """REST field name -> Arrow type, from Describe Lead (cached for the client's life)."""
        with self._describe_lock:
            if self._lead_types is None:
                described = self.describe_leads()
                self._lead_types = lead_field_types(described)
                self._lead_labels = lead_field_labels(described)
            return self._lead_types

    def lead_field_labels(self) -> dict[str, str]:
        """REST field name -> the display name Marketo's UI shows (same Describe Lead call as the types)."""
        self.lead_field_types()
        return dict(self._lead_labels)

    def lead_schema(self, fields: list[str]) -> pa.Schema:
        return schema_for(fields, self.lead_field_types(), what="Describe Lead")

    def program_member_field_types(self) -> dict[str, pa.DataType]:
        """Program-member fields (Describe Program Member) over lead fields: a PM export mixes both."""
        with self._describe_lock:
            if self._member_types is None:
                described = lead_field_types(describe2_fields(self.describe_program_members()))
                self._member_types = {**PROGRAM_MEMBER_COLUMN_TYPES, **described}
        return {**self.lead_field_types(), **self._member_types}

    def program_member_schema(self, fields: list[str]) -> pa.Schema:
        return schema_for(
            fields, self.program_member_field_types(), what="Describe Program Member / Describe Lead"
        )

    def _column_types(
        self, entity: str, fields: list[str] | None, schema: pa.Schema | None
    ) -> dict[str, pa.DataType]:
        if schema is not None:
            return {f.name: f.type for f in schema}
        if entity == "activities":
            return dict(ACTIVITY_COLUMN_TYPES)
        if entity == "leads":
            return {f.name: f.type for f in self.lead_schema(list(fields or []))}
        return {f.name: f.type for f in self.program_member_schema(list(fields or []))} | {
            "programId": pa.int64()
        }

    # --- bulk ---------------------------------------------------------------------------------------
    def bulk_export(
        self,
        entity: BulkEntity,
        *,
        fields: list[str] | None,
        filter: dict[str, Any],
        schema: pa.Schema | None = None,
        reuse_scope: str | None = None,
    ) -> BulkExportResult:
        """Create (or reuse) one export and wait until it is Completed. Iterate `.batches()` to the end
        before committing anything: the checksum is verified by the iterator's last step."""
        _, result = next(
            self.bulk_export_many(
                entity, [{"fields": fields, "filter": filter}], schema=schema, reuse_scope=reuse_scope
            )
        )
        return result

    def bulk_export_many(
        self,
        entity: BulkEntity,
        requests: Sequence[Mapping[str, Any]],
        *,
        schema: pa.Schema | None = None,
        reuse_scope: str | None = None,
        admit: Callable[[int], bool] | None = None,
    ) -> Iterator[tuple[int, BulkExportResult]]:
        """Results in request order as they complete, with up to `bulk.max_queued_jobs` of our jobs
        queued or processing on Marketo (across all processes sharing the store). Closing the generator
        early cancels the jobs still queued/processing. A completed export is reused by a later request
        only when its data cannot have changed (see marketo/ledger.py); within one `reuse_scope` (e.g. a
        Dagster root run id: its retries and re-executions) any completed export is reused. `admit(i)`,
        asked just before request i starts, holds it back or ends the results there (BulkEngine.run)."""
        built = []
        for i, req in enumerate(requests):
            unknown = set(req) - {"fields", "filter"}
            if unknown:
                raise ValueError(f"requests[{i}]: unknown keys {sorted(unknown)}; expected fields, filter")
            fields = req.get("fields")
            column_types = self._column_types(entity, fields, schema)
            built.append(
                ExportRequest(
                    entity,
                    list(fields) if fields else None,
                    dict(req.get("filter") or {}),
                    column_types,
                    reuse_scope=reuse_scope,
                )
            )
        return self._bulk.run(built, admit)

    def supports_filter(
        self, entity: BulkEntity, filter_name: str, extra_filter: dict[str, Any] | None = None
    ) -> bool:
        """Whether the instance supports a bulk filter (e.g. leads `updatedAt`), probed once per client."""
        key = (entity, filter_name)
        if key not in self._filter_support:
            self._filter_support[key] = self._bulk.supports_filter(entity, filter_name, extra_filter)
        return self._filter_support[key]

    def windows(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """[start, end] in windows of at most `bulk.window_days` (Marketo: 31) for createdAt/updatedAt."""
        return split_windows(start, end, self.bulk_config.window_days)

    def activity_export_requests(
        self,
        start: datetime,
        end: datetime,
        activity_type_ids: Sequence[int],
        fields: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """One request per window with ALL activity types in it (one job per window, not per type)."""
        ids = sorted({int(t) for t in activity_type_ids})
        return [
            {
                "fields": fields,
                "filter": {
                    "createdAt": {"startAt": format_marketo_datetime(a), "endAt": format_marketo_datetime(b)},
                    **({"activityTypeIds": ids} if ids else {}),
                },
            }
            for a, b in self.windows(start, end)
        ]

    # --- quota ------------------------------------------------------------------------------------
    def _record_quota_stop(self, error: QuotaExhausted) -> None:
        kind = "calls" if isinstance(error, DailyQuotaExceeded) else "exports"
        self.store.set_quota_stop(
            self.instance, kind, reason=str(error), resets_at=error.resets_at.timestamp()
        )

    def quota_stops(self) -> dict[str, QuotaStop]:
        """The quota stops in force for this instance, recorded by any process: "calls" (607) and/or
        "exports" (1029 export quota), each with its reason and reset time."""
        stops = {kind: self.store.quota_stop(self.instance, kind) for kind in ("calls", "exports")}
        return {kind: stop for kind, stop in stops.items() if stop is not None}

    def usage_today(self, *, max_age_s: float = USAGE_CACHE_S) -> UsageToday:
        """Today's quota day (midnight in the quota zone): the instance's calls from Marketo's
        stats/usage (all integrations, per API user) and our own record from the store (calls our pacer
        admitted, bytes of our completed exports). stats/usage is asked at most once per `max_age_s`."""
        now = self._clock()
        if self._usage is None or now - self._usage[0] > max_age_s:
            self._usage = (
                now,
                usage_today(self.usage(), self.store, self.instance, self.config.zone, self._now()),
            )
        return self._usage[1]

    def reusable_export_requests(self, entity: str) -> list[dict[str, Any]]:
        """Requests of our completed `entity` exports that a later run may reuse (see `BulkEngine`)."""
        return self._bulk.reusable_requests(entity)

    def sweep_orphan_exports(self) -> list[str]:
        """Cancel our unfinished exports nobody owns or resumed within `bulk.orphan_timeout_s` (also done
        at the start of every bulk run, at most every `bulk.sweep_interval_s`). Returns their ids."""
        return self._bulk.sweep(force=True)

    # --- writes -------------------------------------------------------------------------------------
    def sync_leads_update_by_id(self, records: Sequence[Mapping[str, Any]]) -> list[writes.SyncResult]:
        return writes.sync_leads_update_by_id(self._transport, records)

    def request_campaign(
        self, campaign_id: int, lead_ids: Sequence[int], tokens: Mapping[str, Any] | None = None
    ) -> int:
        return writes.request_campaign(self._transport, campaign_id, lead_ids, tokens)

    def schedule_campaign(
        self,
        campaign_id: int,
        *,
        run_at: datetime | None = None,
        tokens: Mapping[str, Any] | None = None,
        clone_to_program_name: str | None = None,
    ) -> None:
        writes.schedule_campaign(
            self._transport,
            campaign_id,
            run_at=run_at,
            tokens=tokens,
            clone_to_program_name=clone_to_program_name,
        )
