"""Bulk extract engine (§4-§6): create or reuse, enqueue within our slots, poll, stream the file.

* At most `max_processing_jobs` of our jobs are queued/processing at once, across all processes sharing
  `state_dir` (fcntl slots). Marketo's 10-slot queue is shared with other integrations: 1029 "Too many
  jobs in queue" waits 1, 2, 4, 4... minutes; 1029 "Export daily quota" raises `ExportQuotaExceeded`.
* The job ledger makes a retried run reuse its export (created, queued, processing or completed). Without
  a `reuse_scope` (callers outside Dagster) a Completed export is never reused, as its data may be hours
  old; a job still created/queued/processing is (its data is taken when it runs).
* Jobs we abandon (exception, timeout, generator closed early) are cancelled.
* `BulkExportResult.batches()` streams Arrow batches; its last step verifies the checksum, so nothing may
  be committed before the iterator has completed.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from molequle_dagster.marketo import errors as E
from molequle_dagster.marketo.config import BulkConfig
from molequle_dagster.marketo.csvstream import ResumableDownload, read_batches
from molequle_dagster.marketo.ledger import JobLedger, request_key
from molequle_dagster.marketo.pacing import FileSlots
from molequle_dagster.marketo.stats import CallStats
from molequle_dagster.marketo.timeutil import format_marketo_datetime, parse_marketo_datetime
from molequle_dagster.marketo.transport import Transport

Entity = Literal["leads", "activities", "program/members"]
ENTITIES: tuple[str, ...] = ("leads", "activities", "program/members")
MAX_WINDOW_DAYS = 31
UNFINISHED = frozenset({"created", "queued", "processing"})
LIVE = UNFINISHED | {"completed"}


def normalise_status(status: Any) -> str:
    text = str(status or "").strip().lower()
    return "cancelled" if text == "canceled" else text


@dataclass
class ExportRequest:
    entity: str
    fields: list[str] | None
    filter: dict[str, Any]
    column_types: Mapping[str, pa.DataType]
    format: str = "CSV"
    # Reuse from the ledger only within one scope (e.g. a Dagster run and its retries): an identical
    # request from a later sync must see fresh data, not a completed export from hours ago.
    reuse_scope: str | None = None

    def __post_init__(self) -> None:
        if self.entity not in ENTITIES:
            raise ValueError(f"entity: expected one of {', '.join(ENTITIES)}, got {self.entity!r}")
        if not isinstance(self.filter, dict) or not self.filter:
            raise ValueError("filter: expected a non-empty dict (Marketo requires exactly one filter)")
        if self.fields is not None and (not self.fields or not all(isinstance(f, str) for f in self.fields)):
            raise ValueError("fields: expected a non-empty list of REST field names, or None")
        if self.entity != "activities" and not self.fields:
            raise ValueError(f"fields: required for {self.entity} exports")
        for name in ("createdAt", "updatedAt"):
            span = self.filter.get(name)
            if isinstance(span, dict) and {"startAt", "endAt"} <= set(span):
                days = parse_marketo_datetime(span["endAt"]) - parse_marketo_datetime(span["startAt"])
                if days > timedelta(days=MAX_WINDOW_DAYS):
                    raise ValueError(
                        f"filter.{name}: at most {MAX_WINDOW_DAYS} days per export, got "
                        f"{days.total_seconds() / 86400:.1f}; split with MarketoClient.windows()"
                    )

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"format": self.format, "filter": self.filter}
        if self.fields:
            body["fields"] = self.fields
        return body

    @property
    def key(self) -> str:
        return request_key(self.entity, self.fields, self.filter, self.format, self.reuse_scope)


@dataclass
class _Job:
    request: ExportRequest
    export_id: str
    status: str
    reused: bool
    info: dict[str, Any] = field(default_factory=dict)
    slot: int | None = None
    started: float = 0.0
    failures: int = 0


@dataclass
class BulkExportResult:
    """A Completed export. `batches()` streams it; iterate to the end before committing anything."""

    export_id: str
    number_of_records: int
    file_size: int
    file_checksum: str | None
    reused: bool
    _engine: BulkEngine = field(repr=False)
    _request: ExportRequest = field(repr=False)
    # When Marketo started processing (its data is as of then); a reused export can be hours old, so
    # callers ordering rows by freshness must use this, not the time they downloaded it.
    started_at: datetime | None = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        yield from self._engine.stream(self)

    def read_all(self) -> pa.Table:
        """Convenience for small exports and tests (holds the table in memory)."""
        batches = list(self.batches())
        if not batches:
            return pa.table({})
        return pa.Table.from_batches(batches)


class BulkEngine:
    def __init__(
        self,
        transport: Transport,
        *,
        config: BulkConfig,
        state_dir: Path,
        stats: CallStats,
        sleep: Callable[[float], None],
        clock: Callable[[], float] = time.monotonic,
        instance: str,
    ) -> None:
        self._t = transport
        self._config = config
        self._stats = stats
        self._sleep = sleep
        self._clock = clock
        self._ledger = JobLedger(state_dir, instance)
        self._slots = FileSlots(Path(state_dir) / "bulk", _slug(instance), config.max_processing_jobs)

    # --- raw endpoints ------------------------------------------------------------------------------
    def _job_call(self, method: str, entity: str, suffix: str, body: Any = None) -> dict[str, Any]:
        envelope = self._t.request(method, f"/bulk/v1/{entity}/export{suffix}", json_body=body)
        result = envelope.get("result") or []
        if not result or not isinstance(result[0], dict) or "exportId" not in result[0]:
            raise E.MalformedResponseError(
                "bulk job answer has no job object",
                endpoint=f"{method} {suffix}",
                request_id=envelope.get("requestId"),
            )
        return result[0]

    def create(self, request: ExportRequest) -> dict[str, Any]:
        return self._job_call("POST", request.entity, "/create.json", request.body())

    def status(self, entity: str, export_id: str) -> dict[str, Any]:
        return self._job_call("GET", entity, f"/{export_id}/status.json")

    def cancel(self, entity: str, export_id: str) -> None:
        """Best effort: a job we abandon must not keep a queue slot (errors here are swallowed)."""
        with contextlib.suppress(E.MarketoError):
            self._job_call("POST", entity, f"/{export_id}/cancel.json")
        self._ledger.set_status(export_id, "cancelled")

    def _enqueue(self, job: _Job) -> None:
        waited = 0.0
        attempt = 0
        while True:
            try:
                info = self._job_call("POST", job.request.entity, f"/{job.export_id}/enqueue.json")
                job.status = normalise_status(info.get("status")) or "queued"
                break
            except E.ExportQuotaExceeded as exc:
                # The Created job stays in the ledger: the next run after the reset reuses it.
                raise E.ExportQuotaExceeded(
                    endpoint=exc.endpoint,
                    marketo_message=exc.marketo_message,
                    request_id=exc.request_id,
                    export_id=job.export_id,
                    zone=self._t.retry.quota_zone,
                ) from None
            except E.BulkQueueFullError as exc:
                if E.is_job_already_queued(exc.code or "", exc.marketo_message or ""):
                    job.status = "queued"
                    break
                waits = self._config.queue_full_waits_s
                wait = waits[min(attempt, len(waits) - 1)]
                if waited + wait > self._config.queue_full_max_wait_s:
                    raise E.MarketoThrottleError(
                        f"bulk queue still full after waiting {waited:.0f}s",
                        endpoint=exc.endpoint,
                        code=exc.code,
                        marketo_message=exc.marketo_message,
                        request_id=exc.request_id,
                    ) from None
                self._sleep(wait)
                waited += wait
                attempt += 1
        self._ledger.set_status(job.export_id, job.status)

    # --- lifecycle ----------------------------------------------------------------------------------
    def _obtain(self, request: ExportRequest) -> _Job:
        """Reuse a live export from the ledger, or create one (creating takes no queue slot)."""
        reusable = LIVE if request.reuse_scope is not None else UNFINISHED
        entry = self._ledger.find_reusable(request.key, self._config.reuse_max_age_s)
        if entry is not None and normalise_status(entry.status) in reusable:
            try:
                info = self.status(request.entity, entry.export_id)
                status = normalise_status(info.get("status"))
            except E.MarketoFatalError:
                status, info = "gone", {}
            if status in reusable:
                self._stats.record_export(entry.export_id, reused=True)
                self._ledger.set_status(entry.export_id, status)
                return _Job(request, entry.export_id, status, reused=True, info=info)
            self._ledger.set_status(entry.export_id, status or "gone")
        try:
            info = self.create(request)
        except E.ExportQuotaExceeded:
            raise
        export_id = str(info["exportId"])
        self._ledger.record(request.key, request.entity, export_id, "created")
        self._stats.record_export(export_id, reused=False)
        return _Job(
            request, export_id, normalise_status(info.get("status")) or "created", reused=False, info=info
        )

    def _start(self, job: _Job) -> bool:
        """Take one of our processing slots and enqueue (if needed). False when no slot is free."""
        slot = self._slots.try_acquire()
        if slot is None:
            return False
        job.slot = slot
        job.started = self._clock()
        try:
            if job.status == "created":
                self._enqueue(job)
        except BaseException:
            self._release(job)
            raise
        return True

    def _release(self, job: _Job) -> None:
        if job.slot is not None:
            FileSlots.release(job.slot)
            job.slot = None

    def _poll(self, job: _Job) -> bool:
        """True when Completed. Failed jobs are recreated `failed_job_retries` times; stuck ones time out."""
        info = self.status(job.request.entity, job.export_id)
        job.status = normalise_status(info.get("status"))
        job.info = info
        if job.status == "completed":
            self._ledger.set_status(job.export_id, "completed")
            self._release(job)
            return True
        if job.status in ("failed", "cancelled"):
            self._ledger.set_status(job.export_id, job.status)
            job.failures += 1
            if job.failures > self._config.failed_job_retries:
                self._release(job)
                raise E.BulkJobFailedError(
                    f"export {job.export_id} ended {job.status}: {info.get('errorMsg') or 'no errorMsg'}",
                    endpoint=f"GET /bulk/v1/{job.request.entity}/export/{{id}}/status.json",
                )
            fresh = self.create(job.request)
            job.export_id, job.status, job.reused = str(fresh["exportId"]), "created", False
            self._ledger.record(job.request.key, job.request.entity, job.export_id, "created")
            self._stats.record_export(job.export_id, reused=False)
            self._enqueue(job)
            job.started = self._clock()
            return False
        if self._clock() - job.started > self._config.job_timeout_s:
            self._abandon(job)
            raise E.BulkJobTimeoutError(
                f"export {job.export_id} still {job.status} after {self._config.job_timeout_s:.0f}s; "
                "cancelled",
                endpoint=f"GET /bulk/v1/{job.request.entity}/export/{{id}}/status.json",
            )
        return False

    def _abandon(self, job: _Job) -> None:
        if job.status in ("created", "queued", "processing"):
            self.cancel(job.request.entity, job.export_id)
            job.status = "cancelled"
        self._release(job)

    def _result(self, job: _Job) -> BulkExportResult:
        info = job.info
        return BulkExportResult(
            export_id=job.export_id,
            number_of_records=int(info.get("numberOfRecords") or 0),
            file_size=int(info.get("fileSize") or 0),
            file_checksum=info.get("fileChecksum"),
            reused=job.reused,
            _engine=self,
            _request=job.request,
            started_at=_as_of(info),
        )

    def run(self, requests: list[ExportRequest]) -> Iterator[tuple[int, BulkExportResult]]:
        """Results in request order, keeping up to `max_processing_jobs` jobs in flight on Marketo."""
        pending: list[tuple[int, ExportRequest]] = list(enumerate(requests))
        obtained: dict[int, _Job] = {}  # created/reused but waiting for one of our slots
        running: dict[int, _Job] = {}
        done: dict[int, BulkExportResult] = {}
        next_index = 0
        limit = self._config.max_processing_jobs
        try:
            while next_index < len(requests):
                if next_index in done:
                    yield next_index, done.pop(next_index)
                    next_index += 1
                    continue
                # Start more jobs, but never run far ahead of what the caller has consumed.
                while pending and len(running) + len(done) < limit:
                    index, request = pending[0]
                    job = obtained.pop(index, None) or self._obtain(request)
                    if job.status == "completed":
                        done[index] = self._result(job)
                    elif job.reused and job.status in ("queued", "processing"):
                        # Already runs on Marketo: watch it (with a slot if one is free).
                        self._slots_try(job)
                        running[index] = job
                    elif self._start(job):
                        running[index] = job
                    else:
                        obtained[index] = job  # all our slots are busy (maybe in another process)
                        break
                    pending.pop(0)
                if next_index in done:
                    continue
                interval = self._config.poll_interval_s
                self._sleep(interval if running else max(interval, 1.0))  # idle: slots held elsewhere
                for index, job in list(running.items()):
                    if self._poll(job):
                        done[index] = self._result(running.pop(index))
        finally:
            for job in running.values():
                self._abandon(job)

    def _slots_try(self, job: _Job) -> None:
        job.slot = self._slots.try_acquire()
        job.started = self._clock()

    # --- download -----------------------------------------------------------------------------------
    def stream(self, result: BulkExportResult) -> Iterator[pa.RecordBatch]:
        request = result._request
        path = f"/bulk/v1/{request.entity}/export/{result.export_id}/file.json"
        current = result
        for attempt in range(2):
            download = ResumableDownload(
                lambda offset, p=path: self._t.open_download(p, start=offset, slot_held=True),
                expected_size=current.file_size if current.file_checksum or current.file_size else None,
                expected_checksum=current.file_checksum,
                max_resumes=self._config.download_resumes,
                on_bytes=self._stats.record_bulk_bytes,
                endpoint=f"GET /bulk/v1/{request.entity}/export/{{id}}/file.json",
                hold=self._t.download_slot(),
            )
            yielded = False
            try:
                for batch in read_batches(download, request.column_types, block_size=self._config.block_size):
                    yielded = True
                    yield batch
                return
            except E.BulkFileGoneError:
                # A Completed export whose file 404s has expired: recreate it once, unless rows already
                # went out (then the caller must restart; never a silent gap or duplicate).
                if yielded or attempt:
                    raise
                download.close()  # give the slot back before the calls that recreate the export
                self._ledger.set_status(current.export_id, "gone")
                _, current = next(self.run([request]))
                path = f"/bulk/v1/{request.entity}/export/{current.export_id}/file.json"
            finally:
                download.close()

    # --- probes -------------------------------------------------------------------------------------
    def supports_filter(
        self, entity: str, filter_name: str, extra_filter: dict[str, Any] | None = None
    ) -> bool:
        """Corona probe: a one-second export with the filter; 1035 means unsupported, else cancel it."""
        now = datetime.now(UTC).replace(microsecond=0)
        window = {
            "startAt": format_marketo_datetime(now - timedelta(seconds=1)),
            "endAt": format_marketo_datetime(now),
        }
        fields = {"leads": ["id"], "activities": None, "program/members": ["leadId"]}[entity]
        probe = ExportRequest(entity, fields, {filter_name: window, **(extra_filter or {})}, {})
        try:
            info = self.create(probe)
        except E.UnsupportedFilterError:
            return False
        self.cancel(entity, str(info["exportId"]))
        return True


def _as_of(info: dict[str, Any]) -> datetime | None:
    for key in ("startedAt", "queuedAt", "createdAt"):
        if info.get(key):
            try:
                return parse_marketo_datetime(str(info[key]))
            except ValueError:
                continue
    return None


def _slug(instance: str) -> str:
    return hashlib.sha256(instance.encode()).hexdigest()[:16]
