"""`MarketoClient`: the one object callers use. Composes transport, pacing, reads, writes and bulk.

No Dagster here: the Dagster layer wraps this class in a ConfigurableResource.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from molequle_dagster.marketo import writes
from molequle_dagster.marketo.bulk import BulkEngine, BulkExportResult, ExportRequest
from molequle_dagster.marketo.config import (
    DEFAULT_BULK,
    DEFAULT_PACING,
    DEFAULT_RETRY,
    BulkConfig,
    PacingConfig,
    RetryConfig,
)
from molequle_dagster.marketo.pacing import CrossProcessPacer
from molequle_dagster.marketo.reads import MarketoReads
from molequle_dagster.marketo.schema import (
    ACTIVITY_COLUMN_TYPES,
    PROGRAM_MEMBER_COLUMN_TYPES,
    describe2_fields,
    lead_field_types,
    schema_for,
)
from molequle_dagster.marketo.stats import CallStats
from molequle_dagster.marketo.timeutil import format_marketo_datetime, split_windows
from molequle_dagster.marketo.transport import Transport

BulkEntity = Literal["leads", "activities", "program/members"]


class MarketoClient(MarketoReads):
    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout_s: float = 30.0,
        pacing: PacingConfig = DEFAULT_PACING,
        bulk: BulkConfig = DEFAULT_BULK,
        state_dir: Path,
        sleep: Callable[[float], None] = time.sleep,
        retry: RetryConfig = DEFAULT_RETRY,
        clock: Callable[[], float] = time.monotonic,
        verify_tls: bool = True,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s: expected a positive number of seconds, got {timeout_s!r}")
        self.stats = CallStats()
        self.bulk_config = bulk
        state_dir = Path(state_dir)
        instance = f"{base_url.rstrip('/')}|{client_id}"
        # Pacing waits are real: Marketo's window is wall-clock time, whatever the injected sleep does.
        pacer = CrossProcessPacer(state_dir, base_url.rstrip("/"), pacing)
        self._transport = Transport(
            base_url,
            client_id,
            client_secret,
            timeout_s=timeout_s,
            stats=self.stats,
            pacer=pacer,
            retry=retry,
            sleep=sleep,
            verify_tls=verify_tls,
        )
        super().__init__(self._transport, max_empty_pages=bulk.max_empty_activity_pages)
        self._bulk = BulkEngine(
            self._transport,
            config=bulk,
            state_dir=state_dir,
            stats=self.stats,
            sleep=sleep,
            clock=clock,
            instance=instance,
        )
        self._describe_lock = threading.Lock()
        self._lead_types: dict[str, pa.DataType] | None = None
        self._member_types: dict[str, pa.DataType] | None = None
        self._filter_support: dict[tuple[str, str], bool] = {}

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> MarketoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schemas ------------------------------------------------------------------------------------
    def lead_field_types(self) -> dict[str, pa.DataType]:
        """REST field name -> Arrow type, from Describe Lead (cached for the client's life)."""
        with self._describe_lock:
            if self._lead_types is None:
                self._lead_types = lead_field_types(self.describe_leads())
            return self._lead_types

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
    ) -> Iterator[tuple[int, BulkExportResult]]:
        """Results in request order with up to `max_processing_jobs` jobs on Marketo at once. Closing the
        generator early cancels the jobs still queued/processing. `reuse_scope` (e.g. a Dagster root run
        id) limits ledger reuse to retries and restarts of the same work."""
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
        return self._bulk.run(built)

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
