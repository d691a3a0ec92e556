"""Bulk extract engine: reuse or create, enqueue within our queue share, poll, stream the file.

* Queue share: at most `max_queued_jobs` of our jobs are queued or processing on Marketo at once, across
  every process and host sharing the coordination store (a reservation in the ledger, atomic in the
  store). Marketo processes 2 jobs per instance; keeping more than 2 queued means the next job starts
  the moment a processing slot frees, not at our next poll. 1029 "Too many jobs in queue" (the
  instance's 10, shared with other integrations) waits 1, 2, 4, 4... minutes; 1029 "Export daily quota"
  raises `ExportQuotaExceeded` and keeps the Created job for the run after the reset.
* Exports paid once: the ledger lets any later run resume an identical job that is still unfinished
  and reuse a completed one whose data cannot have changed (see ledger.py), and lets a retried Dagster
  run reuse its own exports (`reuse_scope`).
* No orphans: a create or enqueue whose answer was lost is never blindly repeated. An enqueue is
  followed by a status check (the job may already be queued or done; "only a Created job can be
  enqueued" means just that). A create is followed by a look at our Created jobs for the one it may
  have made, which is cancelled; what stays unclear is left to the sweep. The owner of a job holds a
  claim on it in the store while it lives; the sweep cancels unfinished jobs nobody holds or resumed
  for `orphan_timeout_s`, so a killed process does not keep a queue slot.
* `BulkExportResult.batches()` streams Arrow batches; its last step verifies the checksum, so nothing
  may be committed before the iterator has completed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import pyarrow as pa

from molequle_dagster.coordination import CoordinationStore, JobRecord, Slot
from molequle_dagster.marketo import errors as E
from molequle_dagster.marketo import paging
from molequle_dagster.marketo.config import BulkConfig
from molequle_dagster.marketo.csvstream import ResumableDownload, read_batches
from molequle_dagster.marketo.ledger import (
    INTENTS,
    UNFINISHED,
    JobLedger,
    canonical_request,
    closed_window_end,
    request_key,
    reusable_completed,
)
from molequle_dagster.marketo.stats import CallStats
from molequle_dagster.marketo.timeutil import (
    format_marketo_datetime,
    marketo_epoch,
    parse_marketo_datetime,
    quota_day,
)
from molequle_dagster.marketo.transport import Transport

Entity = Literal["leads", "activities", "program/members"]
ENTITIES: tuple[str, ...] = ("leads", "activities", "program/members")
MAX_WINDOW_DAYS = 31
CLOCK_SKEW_S = 600.0  # Marketo's createdAt vs our store's clock, when looking for a job a lost create made
LIST_BATCH = 300
POLL_BACKOFF = 0.1  # a waiting job is polled at most once per tenth of the time it has waited
POLL_SLACK_S = 0.01  # a poll due within this is due now (clock rounding after the sleep)
MAX_BLOCK_SIZE = 1 << 28  # a row larger than 256 MiB is not a Marketo export any more


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
    # A Dagster run and its retries: within it a completed export is reused whatever its window.
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
        return request_key(self.entity, self.fields, self.filter, self.format)

    def record(self, export_id: str, status: str) -> JobRecord:
        """A ledger row for this request (instance, api_user and owner are filled in by the ledger)."""
        return JobRecord(
            export_id,
            "",
            "",
            self.key,
            self.entity,
            status,
            reuse_scope=self.reuse_scope,
            window_end=closed_window_end(self.entity, self.filter),
            request=canonical_request(self.entity, self.fields, self.filter, self.format),
        )


@dataclass
class _Job:
    request: ExportRequest
    export_id: str | None  # None until created
    status: str  # "new" until created, then Marketo's status (lower case)
    reused: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    claim: Slot | None = None  # held while we own the job: the sweep leaves it alone
    started: float = 0.0  # our clock when it was queued (job timeout)
    failures: int = 0
    keep: bool = False  # stopped by the export quota: the Created job waits for the next run
    enqueued: bool = False  # on Marketo's queue (by us or, for a resumed job, by another process)
    polled: float = 0.0  # our clock at its latest status poll (or when it was queued)


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
        store: CoordinationStore,
        stats: CallStats,
        sleep: Callable[[float], None],
        clock: Callable[[], float] = time.monotonic,
        instance: str,
        api_user: str,
        zone: ZoneInfo,
        on_quota: Callable[[E.QuotaExhausted], None] = lambda error: None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self._t = transport
        self._now = now
        self._config = config
        self._stats = stats
        self._sleep = sleep
        self._clock = clock
        self._zone = zone
        self._on_quota = on_quota
        self._store = store
        self._sweep_name = f"bulk-sweep:{api_user}"
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.ledger = JobLedger(store, instance=instance, api_user=api_user, owner=owner)

    # --- raw endpoints ------------------------------------------------------------------------------
    def _job_call(
        self, method: str, entity: str, suffix: str, body: Any = None, *, idempotent: bool = True
    ) -> dict[str, Any]:
        envelope = self._t.request(
            method, f"/bulk/v1/{entity}/export{suffix}", json_body=body, idempotent=idempotent
        )
        result = envelope.get("result") or []
        if not result or not isinstance(result[0], dict) or "exportId" not in result[0]:
            raise E.MalformedResponseError(
                "bulk job answer has no job object",
                endpoint=f"{method} /bulk/v1/{entity}/export{suffix}",
                request_id=envelope.get("requestId"),
            )
        return result[0]

    def status(self, entity: str, export_id: str) -> dict[str, Any]:
        return self._job_call("GET", entity, f"/{export_id}/status.json")

    def cancel(self, entity: str, export_id: str) -> None:
        """Best effort: a job we abandon must not keep a queue slot (errors here are swallowed). One that
        completed since we last looked is recorded as completed, not cancelled: its bytes are paid for,
        and the next run of the same request reuses it instead of exporting it again."""
        info: dict[str, Any] | None = None
        with contextlib.suppress(E.MarketoError):
            info = self._job_call("POST", entity, f"/{export_id}/cancel.json")
        if info is None or normalise_status(info.get("status")) != "cancelled":
            with contextlib.suppress(E.MarketoError):  # "already Completed" is an error on some instances
                info = self.status(entity, export_id)
        if info is not None and normalise_status(info.get("status")) == "completed":
            self._record_completed_info(export_id, info)
            return
        self.ledger.update(export_id, status="cancelled")

    def list_jobs(self, entity: str, status: str) -> list[dict[str, Any]]:
        """Our jobs of the last 7 days with this status (Marketo lists only the API user's own)."""
        path = f"/bulk/v1/{entity}/export.json"
        fetch: paging.Fetch = lambda params: self._t.request("GET", path, params=params)  # noqa: E731
        pages = paging.token_pages(fetch, {"status": status, "batchSize": LIST_BATCH}, endpoint=f"GET {path}")
        return [job for page in pages for job in page if isinstance(job, dict) and job.get("exportId")]

    # --- create -------------------------------------------------------------------------------------
    def _intent(self, request: ExportRequest) -> JobRecord:
        return request.record(f"pending:{uuid.uuid4()}", "creating").with_(
            instance=self.ledger.instance, api_user=self.ledger.api_user, owner=self.ledger.owner
        )

    def _create(self, job: _Job, intent: JobRecord, claim: Slot) -> None:
        """Create the job for `intent` (already in the ledger, claimed by us). A create whose answer
        was lost is not simply repeated: the job it may have made is looked for and cancelled first."""
        request = job.request
        attempt = 0
        while True:
            try:
                info = self._job_call(
                    "POST", request.entity, "/create.json", request.body(), idempotent=False
                )
                break
            except E.MarketoTransientError:  # timed out, reset, 5xx, malformed: it may exist now
                claim.release()
                self._after_lost_create(intent)
                attempt += 1
                if attempt >= self._t.retry.max_attempts:
                    raise
                self._sleep(self._t.backoff_s(attempt))
                intent = self.ledger.store.put_job(
                    intent.with_(export_id=f"pending:{uuid.uuid4()}", created_at=0.0, updated_at=0.0)
                )
                claim = self._claim(intent.export_id) or claim
            except BaseException:
                self.ledger.delete(intent.export_id)  # refused (quota, bad request): nothing was created
                claim.release()
                raise
        export_id = str(info["exportId"])
        if self.ledger.get(export_id) is not None:  # never from Marketo: a new job has a new id
            self.ledger.delete(intent.export_id)
            claim.release()
            raise E.MalformedResponseError(
                f"create answered export {export_id}, a job we already have",
                endpoint=f"POST /bulk/v1/{request.entity}/export/create.json",
            )
        self.ledger.update(
            intent.export_id, export_id=export_id, status="enqueuing", created_at=self._store.now()
        )
        job.claim = self._claim(export_id)
        claim.release()
        job.export_id, job.status, job.info, job.reused = export_id, "created", info, False
        self._stats.record_export(export_id, reused=False)

    def _after_lost_create(self, intent: JobRecord) -> None:
        """Cancel the Created job a lost create made, when it is certainly ours: unknown to the ledger,
        created since the intent, and no other create of ours under way then. Otherwise (or when nothing
        shows yet: the create may still be on its way) the intent stays, as `lost`, for the sweep."""
        now = self._store.now()
        others = [
            j
            for j in self.ledger.find(statuses=INTENTS)
            if j.export_id != intent.export_id and j.updated_at >= intent.created_at - CLOCK_SKEW_S
        ]
        found: list[str] = []
        if not others:
            with contextlib.suppress(E.MarketoError):
                found = [
                    export_id
                    for export_id, _ in self._unknown_created(intent.entity, [(intent.created_at, now)])
                ]
        for export_id in found:
            self.cancel(intent.entity, export_id)
        if found:
            self.ledger.delete(intent.export_id)
        else:
            self.ledger.update(intent.export_id, status="lost")

    def _unknown_created(self, entity: str, windows: list[tuple[float, float]]) -> list[tuple[str, float]]:
        """(export id, createdAt) of our Created jobs the ledger does not know, created inside one of the
        windows (store clock, give or take Marketo's clock skew)."""
        known = self.ledger.known_ids()
        found = []
        for job in self.list_jobs(entity, "Created"):
            created = marketo_epoch(job.get("createdAt"))
            if job["exportId"] in known or created is None:
                continue
            if any(lo - CLOCK_SKEW_S <= created <= hi + CLOCK_SKEW_S for lo, hi in windows):
                found.append((str(job["exportId"]), created))
        return found

    def _asked_again(self, job: _Job) -> bool:
        """Whether a later run may make exactly this request (and so resume the job): not when a window of
        its filter ends within the late-records margin of the job's creation, as a window "until now" does
        (the next run's ends later). Both times are Marketo's clock."""
        created = marketo_epoch(job.info.get("createdAt"))
        windows = [value for value in job.request.filter.values() if isinstance(value, dict)]
        ends = [end for w in windows if (end := marketo_epoch(w.get("endAt"))) is not None]
        latest = max(ends, default=None)
        return created is None or latest is None or latest < created - self._config.late_records_margin_s

    def _claim(self, export_id: str) -> Slot | None:
        return self._store.try_claim(f"bulk-job:{export_id}")

    # --- enqueue ------------------------------------------------------------------------------------
    def _enqueue(self, job: _Job) -> None:
        assert job.export_id is not None
        waited = 0.0
        attempt = 0
        doubts = 0
        while True:
            try:
                info = self._job_call(
                    "POST", job.request.entity, f"/{job.export_id}/enqueue.json", idempotent=False
                )
                job.status = normalise_status(info.get("status")) or "queued"
                break
            except E.ExportQuotaExceeded as exc:
                kept: str | None = job.export_id
                if self._asked_again(job):
                    # The Created job stays in the ledger: the next run after the reset reuses it.
                    job.keep = True
                    self.ledger.update(job.export_id, status="created")
                else:
                    # Its window ends about when it was made ("until now"): no later request is the same,
                    # so nobody would resume it; a Created job left behind is an orphan.
                    self.cancel(job.request.entity, job.export_id)
                    job.status, kept = "cancelled", None
                error = E.ExportQuotaExceeded(
                    endpoint=exc.endpoint,
                    marketo_message=exc.marketo_message,
                    request_id=exc.request_id,
                    export_id=kept,
                    zone=self._zone,
                    now=self._now() if self._now else None,
                )
                self._on_quota(error)
                raise error from None
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
            except E.MarketoTransientError:
                # The answer was lost (timeout, reset, 5xx): the job may be queued already. Ask.
                status = self._refresh(job)
                if status != "created":
                    break
                doubts += 1
                if doubts >= self._t.retry.max_attempts:
                    raise
                self._sleep(self._t.backoff_s(doubts))
            except E.MarketoFatalError as exc:
                # 1003 "only a Created job can be enqueued": an earlier attempt whose answer we lost, or
                # another process, got there first. The job's status says where it is.
                if exc.code != "1003" or self._refresh(job) == "created":
                    raise
                break
        job.enqueued = True
        if job.status == "created":  # Marketo took the enqueue; its status view may lag
            job.status = "queued"
        self.ledger.update(job.export_id, status=job.status)

    def _refresh(self, job: _Job) -> str:
        assert job.export_id is not None
        info = self.status(job.request.entity, job.export_id)
        job.info = info
        job.status = normalise_status(info.get("status"))
        return job.status

    # --- lifecycle ----------------------------------------------------------------------------------
    def reusable_requests(self, entity: str) -> list[dict[str, Any]]:
        """The requests ({entity, fields, filter, format}) of our completed exports of `entity` that any
        later run may reuse (closed windows, file still kept): a run that plans its windows to match one
        pays for none of its days again (e.g. an export that completed while a quota stop ended its run)."""
        now = self._store.now()
        found = []
        for entry in self.ledger.find(statuses={"completed"}):
            if entry.entity != entity or not reusable_completed(entry, None, now, self._config):
                continue
            with contextlib.suppress(ValueError):
                identity = json.loads(entry.request)
                if isinstance(identity, dict):
                    found.append(identity)
        return found

    def _obtain(self, request: ExportRequest) -> _Job:
        """Resume or reuse an identical job from the ledger; otherwise a new job (created later, when
        our queue share has room)."""
        now = self._store.now()
        for entry in self.ledger.find(key=request.key):
            status = entry.status
            if status == "completed":
                if not reusable_completed(entry, request.reuse_scope, now, self._config):
                    continue
            elif status not in UNFINISHED or now - entry.created_at > self._config.reuse_max_age_s:
                continue
            try:
                info = self.status(request.entity, entry.export_id)
            except E.MarketoFatalError:  # unknown to Marketo now
                self.ledger.update(entry.export_id, status="gone")
                continue
            current = normalise_status(info.get("status"))
            still_usable = (
                current == "completed" if status == "completed" else current in UNFINISHED | {"completed"}
            )
            if not still_usable:
                self.ledger.update(entry.export_id, status=current or "gone")
                continue
            job = _Job(
                request, entry.export_id, current, reused=True, info=info, claim=self._claim(entry.export_id)
            )
            job.enqueued = current != "created"
            job.started = job.polled = self._clock()
            if current == "completed":
                self._record_completed(job)
            else:
                self.ledger.update(
                    entry.export_id,
                    status=status if current == "created" else current,
                    owner=self.ledger.owner if job.claim else entry.owner,
                )
            self._stats.record_export(entry.export_id, reused=True)
            return job
        return _Job(request, None, "new")

    def _start(self, job: _Job) -> bool:
        """Reserve a place in our queue share, create (if new) and enqueue. False when no room."""
        limit = self._config.max_queued_jobs
        if job.status == "new":
            intent = self._intent(job.request)
            if not self.ledger.reserve(intent, limit):
                return False
            claim = self._claim(intent.export_id)
            assert claim is not None  # a fresh name nobody else knows
            self._create(job, intent, claim)
        elif job.status == "created":
            assert job.export_id is not None
            entry = self.ledger.get(job.export_id)
            if entry is None or not self.ledger.reserve(entry.with_(status="enqueuing"), limit):
                return False
            if job.claim is None:
                job.claim = self._claim(job.export_id)
        job.started = job.polled = self._clock()
        self._enqueue(job)
        return True

    def _next_poll(self, job: _Job) -> float:
        """When `job` is due for its next status poll: `poll_interval_s` after the last one, stretched to
        a tenth of the time it has waited (capped at `max_poll_interval_s`), so a job Marketo keeps
        waiting for hours costs tens of calls of the day's quota, not thousands."""
        base = self._config.poll_interval_s
        cap = max(base, self._config.max_poll_interval_s)
        waited = max(0.0, job.polled - job.started)
        return job.polled + min(cap, max(base, waited * POLL_BACKOFF))

    def _poll(self, job: _Job) -> bool:
        """True when Completed. A Failed job is created again `failed_job_retries` times; a stuck one times
        out."""
        assert job.export_id is not None
        status = self._refresh(job)
        if status == "created":
            job.status = "queued"  # enqueued already: Marketo's status view lags (or it never starts)
        if job.claim is None:
            job.claim = self._claim(job.export_id)  # its owner is gone: we carry it on
        if status == "completed":
            self._record_completed(job)
            return True
        if status in ("failed", "cancelled"):
            self.ledger.update(job.export_id, status=status)
            self._release(job)
            job.failures += 1
            if job.failures > self._config.failed_job_retries:
                raise E.BulkJobFailedError(
                    f"export {job.export_id} ended {status}: {job.info.get('errorMsg') or 'no errorMsg'}",
                    endpoint=f"GET /bulk/v1/{job.request.entity}/export/{{id}}/status.json",
                )
            job.export_id, job.status, job.reused, job.info, job.enqueued = None, "new", False, {}, False
            return False
        self.ledger.update(job.export_id, status=status)  # also the heartbeat the sweep looks at
        if self._clock() - job.started > self._config.job_timeout_s:
            self._abandon(job)
            raise E.BulkJobTimeoutError(
                f"export {job.export_id} still {status} after {self._config.job_timeout_s:.0f}s; cancelled",
                endpoint=f"GET /bulk/v1/{job.request.entity}/export/{{id}}/status.json",
            )
        return False

    def _record_completed(self, job: _Job) -> None:
        assert job.export_id is not None
        self._record_completed_info(job.export_id, job.info)
        self._release(job)

    def _record_completed_info(self, export_id: str, info: dict[str, Any]) -> None:
        finished = marketo_epoch(info.get("finishedAt"))
        finished_at = datetime.fromtimestamp(finished, UTC) if finished is not None else None
        self.ledger.update(
            export_id,
            status="completed",
            started_at=marketo_epoch(info.get("startedAt")),
            finished_at=finished,
            file_size=_count(info, "fileSize"),
            records=_count(info, "numberOfRecords"),
            quota_day=quota_day(self._zone, finished_at),
        )

    def _release(self, job: _Job) -> None:
        if job.claim is not None:
            job.claim.release()
            job.claim = None

    def _abandon(self, job: _Job) -> None:
        """Cancel a job we own that is still waiting or running; a job another process owns is its own."""
        if job.keep or job.export_id is None:
            self._release(job)
            return
        if job.claim is None and job.status in UNFINISHED:
            job.claim = self._claim(job.export_id)
        if job.claim is not None and job.status in UNFINISHED:
            self.cancel(job.request.entity, job.export_id)
            job.status = "cancelled"
        self._release(job)

    def _result(self, job: _Job) -> BulkExportResult:
        assert job.export_id is not None
        info = job.info
        return BulkExportResult(
            export_id=job.export_id,
            number_of_records=_count(info, "numberOfRecords"),
            file_size=_count(info, "fileSize"),
            file_checksum=_checksum(info),
            reused=job.reused,
            _engine=self,
            _request=job.request,
            started_at=_as_of(info),
        )

    def run(
        self, requests: list[ExportRequest], admit: Callable[[int], bool] | None = None
    ) -> Iterator[tuple[int, BulkExportResult]]:
        """Results in request order as they complete, with up to `max_queued_jobs` of our jobs queued
        or processing on Marketo (across every process sharing the store). Only job ids are held: the
        data streams from Marketo when the caller iterates a result's batches. `admit(index)` is asked,
        in request order, just before a request is started (what the caller consumed so far is known
        then): a no holds the request back until the caller consumed another result, and ends the results
        there once nothing is in flight that could change the answer (a budget measured as it goes)."""
        self.sweep()
        pending = list(enumerate(requests))
        active: dict[int, _Job] = {}  # obtained, maybe still waiting for room in our queue share
        done: dict[int, BulkExportResult] = {}
        next_index = 0
        end = len(requests)  # lowered to the first request `admit` turned down
        ahead = self._config.max_queued_jobs
        try:
            while next_index < end:
                if next_index in done:
                    yield next_index, done.pop(next_index)
                    next_index += 1
                    continue
                # Work on at most `ahead` requests beyond what the caller has consumed.
                while pending and len(active) + len(done) < ahead:
                    if admit is not None and not admit(pending[0][0]):
                        if not active and not done:
                            end, pending = pending[0][0], []
                        break
                    index, request = pending.pop(0)
                    job = self._obtain(request)
                    if job.status == "completed":
                        done[index] = self._result(job)
                    else:
                        active[index] = job
                for index in sorted(active):  # in request order, while our share has room
                    if not active[index].enqueued and not self._start(active[index]):
                        break
                for index, job in list(active.items()):  # e.g. an enqueue that found it already done
                    if job.status == "completed":
                        self._record_completed(job)
                        done[index] = self._result(active.pop(index))
                if next_index in done:
                    continue
                enqueued = [job for job in active.values() if job.enqueued]
                if not enqueued:  # waiting for room in our queue share
                    self._sleep(max(self._config.poll_interval_s, 1.0))
                else:
                    self._sleep(max(0.0, min(self._next_poll(job) for job in enqueued) - self._clock()))
                now = self._clock()
                for index, job in list(active.items()):
                    if job.enqueued and self._next_poll(job) <= now + POLL_SLACK_S:
                        job.polled = now
                        if self._poll(job):
                            done[index] = self._result(active.pop(index))
        finally:
            for job in active.values():
                self._abandon(job)

    # --- orphans ------------------------------------------------------------------------------------
    def sweep(self, *, force: bool = False) -> list[str]:
        """Cancel unfinished jobs of ours that nobody owns and nobody resumed for `orphan_timeout_s`,
        and the Created jobs lost creates left behind. At most once per `sweep_interval_s` per API user
        across all processes (unless forced). Returns the export ids cancelled."""
        if not force and not self._store.run_due(self._sweep_name, self._config.sweep_interval_s):
            return []
        now = self._store.now()
        cutoff = now - self._config.orphan_timeout_s
        cancelled: list[str] = []
        intents: dict[str, list[tuple[JobRecord, Slot]]] = {}
        for entry in self.ledger.find(statuses=UNFINISHED | INTENTS, updated_before=cutoff):
            if entry.status == "created" and now - entry.created_at <= self._config.reuse_max_age_s:
                continue  # e.g. stopped by the export quota: the next run after the reset enqueues it
            claim = self._claim(entry.export_id)
            if claim is None:
                continue  # its owner lives
            if entry.status in INTENTS:
                intents.setdefault(entry.entity, []).append((entry, claim))
                continue
            with claim:
                try:
                    current = normalise_status(self.status(entry.entity, entry.export_id).get("status"))
                except E.MarketoFatalError:
                    self.ledger.update(entry.export_id, status="gone")
                    continue
                except E.MarketoError:
                    continue  # try again at the next sweep
                if current in UNFINISHED:
                    self.cancel(entry.entity, entry.export_id)
                    cancelled.append(entry.export_id)
                else:
                    self.ledger.update(entry.export_id, status=current or "gone")
        for entity, found in intents.items():
            windows = [(entry.created_at, entry.updated_at) for entry, _ in found]
            try:
                orphans = self._unknown_created(entity, windows)
            except E.MarketoError:
                orphans = None  # look again at the next sweep
            for export_id, created in orphans or []:
                if created <= cutoff:  # a younger one may be another process's, about to be recorded
                    self.cancel(entity, export_id)
                    cancelled.append(export_id)
            for entry, claim in found:
                if orphans is not None:
                    self.ledger.delete(entry.export_id)
                claim.release()
        return cancelled

    # --- download -----------------------------------------------------------------------------------
    def stream(self, result: BulkExportResult) -> Iterator[pa.RecordBatch]:
        """The export's rows, checked at the end against fileSize, fileChecksum and numberOfRecords.

        A row too large for the parse block makes the file be read again with a four times larger
        block, skipping the rows already handed out. A file that 404s (expired) is exported again once,
        unless rows already went out (then the caller must restart: never a silent gap or duplicate)."""
        request = result._request
        current = result
        block = self._config.block_size
        delivered = 0  # rows handed to the caller
        recreated = False
        while True:
            skip = delivered  # a second read of the same file starts with rows already handed out
            path = f"/bulk/v1/{request.entity}/export/{current.export_id}/file.json"
            download = ResumableDownload(
                lambda offset, p=path: self._t.open_download(p, start=offset, slot_held=True),
                expected_size=current.file_size if current.file_checksum or current.file_size else None,
                expected_checksum=current.file_checksum,
                max_resumes=self._config.download_resumes,
                on_bytes=self._stats.record_bulk_bytes,
                endpoint=f"GET /bulk/v1/{request.entity}/export/{{id}}/file.json",
                hold=self._t.download_slot(),
            )
            try:
                for batch in read_batches(download, request.column_types, block_size=block):
                    if skip:
                        dropped = min(skip, batch.num_rows)
                        skip -= dropped
                        batch = batch.slice(dropped)
                        if not batch.num_rows:
                            continue
                    delivered += batch.num_rows
                    yield batch
                if current.number_of_records != delivered and (current.file_checksum or current.file_size):
                    raise E.MalformedResponseError(
                        f"export {current.export_id} gave {delivered} rows, Marketo reported "
                        f"{current.number_of_records}",
                        endpoint=f"GET /bulk/v1/{request.entity}/export/{{id}}/file.json",
                    )
                return
            except E.RowTooLargeError:
                if block >= MAX_BLOCK_SIZE:
                    raise
                block = min(block * 4, MAX_BLOCK_SIZE)
            except E.BulkFileGoneError:
                if delivered or recreated:
                    raise
                recreated = True
                download.close()  # give the slot back before the calls that recreate the export
                self.ledger.update(current.export_id, status="gone")
                _, current = next(self.run([request]))
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
        job = _Job(probe, None, "new")
        intent = self.ledger.store.put_job(self._intent(probe))
        claim = self._claim(intent.export_id)
        assert claim is not None
        try:
            self._create(job, intent, claim)
        except E.UnsupportedFilterError:
            return False
        assert job.export_id is not None
        self.cancel(entity, job.export_id)
        self._release(job)
        return True


def _count(info: dict[str, Any], key: str) -> int:
    """A job's numberOfRecords / fileSize: a whole number, or the answer is not Marketo's."""
    value = info.get(key) or 0
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise E.MalformedResponseError(f"bulk job {key} is {value!r}, not a count")
    return int(value)


def _checksum(info: dict[str, Any]) -> str | None:
    value = info.get("fileChecksum")
    if value is not None and not isinstance(value, str):
        raise E.MalformedResponseError(f"bulk job fileChecksum is {value!r}, not text")
    return value


def _as_of(info: dict[str, Any]) -> datetime | None:
    for key in ("startedAt", "queuedAt", "createdAt"):
        if info.get(key):
            try:
                return parse_marketo_datetime(str(info[key]))
            except ValueError:
                continue
    return None
