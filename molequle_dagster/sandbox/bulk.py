"""The sandbox's Bulk Extract job engine: leads, activities and program members (docs/marketo.md §6).

Jobs move Created -> Queued -> Processing -> Completed|Failed (Cancelled from the first three) on the
virtual clock. One queue of `queue_slots` and `processing_slots` is shared by all export types and all API
users; a user sees only their own jobs. The queue is replayed up to `clock.now()` at every call
(`_observe`), so frozen-clock tests drive jobs with `clock.advance`.

When a job starts processing (when Marketo evaluates membership) its rows are counted at once (a cheap
pass of masks) and its file is written from a snapshot on a render thread, into a hidden `.part` file
published whole at completion: create, enqueue and status answer at once, as Marketo does, however big
the file. The count fixes the job's finish on the virtual timeline (start + overhead + rows / speed), so
slots, queue and finish times are deterministic whatever the render's real speed; only what a status shows
waits for the file: a job past its finish whose file is still being written still reads Processing. Tests
wait for that with `wait_for_renders()` (the control surface's `wait_for_exports()`), never with sleeps.
Files live in a per-service temp dir, never in memory.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from molequle_dagster.sandbox.bulk_files import FileFacts, RenderCancelled, write_export
from molequle_dagster.sandbox.bulk_requests import ENTITIES, ExportSpec, invalid, parse_create
from molequle_dagster.sandbox.bulk_rows import open_rows
from molequle_dagster.sandbox.config import BulkSettings
from molequle_dagster.sandbox.context import SandboxContext
from molequle_dagster.sandbox.envelope import MarketoApiError, lead_timestamp, ok

CREATED, QUEUED, PROCESSING, COMPLETED, FAILED = "Created", "Queued", "Processing", "Completed", "Failed"
CANCELLED = "Cancelled"  # internal name; rendered with the configured spelling
STATUS_NAMES = (CREATED, QUEUED, PROCESSING, COMPLETED, FAILED, CANCELLED)
LIST_DAYS = 7  # the list endpoint shows this user's jobs of the last 7 days
STATUS_RETENTION_DAYS = 30  # status stays retrievable this long (docs/marketo.md §6.2)
MAX_BATCH_SIZE = 300
TOO_MANY_JOBS = "Too many jobs in queue"
ALREADY_QUEUED = "Job already queued"
FAILED_MESSAGE = "Export job failed: an internal error occurred while generating the file"
DELIMITERS = {"CSV": ",", "TSV": "\t"}
TOKEN_PREFIX = "bulk-export-list:"
RENDER_THREADS = 2  # as many files written at once as Marketo processes jobs


@dataclass
class _Job:
    seq: int
    export_id: str
    entity: str
    api_user: str
    spec: ExportSpec
    created_at: datetime
    seen_from: datetime  # the user's last action on the job: start of its status refresh grid
    fault: str | None = None  # "job_failed" | "job_stuck"
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finish_due: datetime | None = None
    finished_at: datetime | None = None
    cancelled_at: datetime | None = None
    outcome: str | None = None  # Completed | Failed once finished
    facts: FileFacts | None = None
    error_msg: str | None = None
    file: Path | None = None
    file_expired: bool = False
    internal_error: str | None = None  # a sandbox rendering bug, for jobs_truth only
    render: Future[FileFacts] | None = None  # the file being written (None: no render, or done)
    action_view: dict[str, Any] | None = None  # what the last create/enqueue/cancel answered

    def status_at(self, at: datetime) -> str:
        if self.cancelled_at is not None and at >= self.cancelled_at:
            return CANCELLED
        if self.finished_at is not None and at >= self.finished_at:
            assert self.outcome is not None
            if self.outcome == COMPLETED and self.render is not None:
                return PROCESSING  # finished on the timeline, but the file is not written yet
            return self.outcome
        if self.started_at is not None and at >= self.started_at:
            return PROCESSING
        if self.queued_at is not None and at >= self.queued_at:
            return QUEUED
        return CREATED

    @property
    def processing(self) -> bool:
        return self.started_at is not None and self.finished_at is None and self.cancelled_at is None

    @property
    def waiting(self) -> bool:
        return self.queued_at is not None and self.started_at is None and self.cancelled_at is None

    def as_json(self, at: datetime, cancelled_spelling: str) -> dict[str, Any]:
        """The job object (docs/marketo.md §6.2) as it stood at `at`."""
        status = self.status_at(at)
        job: dict[str, Any] = {
            "exportId": self.export_id,
            "format": self.spec.format,
            "status": cancelled_spelling if status == CANCELLED else status,
            "createdAt": lead_timestamp(self.created_at),
        }
        for key, value in (("queuedAt", self.queued_at), ("startedAt", self.started_at)):
            if value is not None and value <= at:
                job[key] = lead_timestamp(value)
        if status in (COMPLETED, FAILED):
            assert self.finished_at is not None
            job["finishedAt"] = lead_timestamp(self.finished_at)
        if status == COMPLETED and self.facts is not None:
            job["numberOfRecords"] = self.facts.number_of_records
            job["fileSize"] = self.facts.file_size
            job["fileChecksum"] = self.facts.file_checksum
        if status == FAILED:
            job["errorMsg"] = self.error_msg
        return job


class BulkExtractService:
    def __init__(self, ctx: SandboxContext) -> None:
        self._ctx = ctx
        self._lock = threading.RLock()
        self._jobs: dict[str, _Job] = {}
        self._seq = itertools.count(1)
        self._simulated_to: datetime | None = None
        self.files_dir = Path(tempfile.mkdtemp(prefix="molequle-bulk-"))
        self._closed = threading.Event()
        self._renders = ThreadPoolExecutor(max_workers=RENDER_THREADS, thread_name_prefix="sandbox-render")
        self._cleanup = weakref.finalize(self, _close, self._renders, self._closed, str(self.files_dir))

    def close(self) -> None:
        """Stop rendering and delete every export file (also done when the service is garbage collected)."""
        self._cleanup()

    def wait_for_renders(self, timeout: float = 120.0) -> bool:
        """Block until no export file is being written, starting (and waiting for) the jobs that become able
        to start meanwhile; False on timeout. Frozen-clock tests call this instead of sleeping."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                self._observe()
                pending = [job.render for job in self._jobs.values() if job.render is not None]
            if not pending:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            wait(pending, timeout=remaining)

    @property
    def _settings(self) -> BulkSettings:
        return self._ctx.config.bulk  # read per call: the control surface may change settings

    # --- the public API used by routes_bulk.py and the control surface ------------------------------
    def create(self, entity: str, api_user: str, body: dict, fault: str | None = None) -> dict:
        with self._lock:
            now = self._observe()
            self._check_admission(now, fault, queue=False)
            spec = parse_create(entity, body, self._settings, self._ctx.state)
            job = _Job(
                seq=next(self._seq),
                export_id=str(uuid.uuid4()),
                entity=entity,
                api_user=api_user,
                spec=spec,
                created_at=now,
                seen_from=now,
                fault=fault if fault in ("job_failed", "job_stuck") else None,
            )
            self._jobs[job.export_id] = job
            job.action_view = self._json(job, now)
            return job.action_view

    def enqueue(self, entity: str, export_id: str, api_user: str, fault: str | None = None) -> dict:
        with self._lock:
            now = self._observe()
            job = self._job(entity, export_id, api_user)
            status = job.status_at(now)
            if status in (QUEUED, PROCESSING):
                raise MarketoApiError("1029", ALREADY_QUEUED)
            if status != CREATED:
                if self._settings.enqueue_finished_job == "noop":
                    return self._json(job, now)
                raise invalid(
                    f"Export job {export_id} is {self._spell(status)}; only a Created job can be enqueued"
                )
            self._check_admission(now, fault, queue=True)
            job.queued_at = now
            job.seen_from = now
            if fault in ("job_failed", "job_stuck"):
                job.fault = fault
            job.action_view = self._json(job, now)  # "Queued" even when a slot is free at once
            self._fill_slots(now)
            return job.action_view

    def status(self, entity: str, export_id: str, api_user: str, fault: str | None = None) -> dict:
        """The job as its owner sees it. Fault `job_failed` fails a job still queued or processing now."""
        with self._lock:
            now = self._observe()
            job = self._job(entity, export_id, api_user)
            if fault == "job_failed" and job.status_at(now) in (QUEUED, PROCESSING) and job.outcome is None:
                job.fault = "job_failed"
                job.started_at = job.started_at or now
                job.finished_at = job.finish_due = now
                job.seen_from = now
                self._fail(job)
                self._fill_slots(now)  # its slot goes to the next queued job
            return self._view(job, now)

    def cancel(self, entity: str, export_id: str, api_user: str) -> dict:
        with self._lock:
            now = self._observe()
            job = self._job(entity, export_id, api_user)
            status = job.status_at(now)
            if status in (COMPLETED, FAILED, CANCELLED):
                if self._settings.cancel_finished_job == "noop":
                    return self._json(job, now)
                raise invalid(
                    f"Export job {export_id} is already {self._spell(status)}; it cannot be cancelled"
                )
            job.cancelled_at = now
            job.seen_from = now
            if job.render is None:  # a render in flight stops at its next batch and drops its file then
                self._drop_file(job)
            self._fill_slots(now)  # a freed processing slot goes to the next queued job
            job.action_view = self._json(job, now)
            return job.action_view

    def list_jobs(
        self,
        entity: str,
        api_user: str,
        statuses: list[str] | None,
        batch_size: int,
        next_page_token: str | None,
    ) -> dict:
        """The whole `export.json` envelope: this user's jobs of the last 7 days, oldest first."""
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise invalid(f"batchSize: expected an integer from 1 to {MAX_BATCH_SIZE}, got {batch_size}")
        wanted = {_status_name(s) for s in statuses} if statuses else None
        offset = _decode_token(next_page_token) if next_page_token else 0
        with self._lock:
            now = self._observe()
            since = now - timedelta(days=LIST_DAYS)
            views = []
            for job in sorted(self._jobs.values(), key=lambda j: j.seq):
                if job.entity != entity or job.api_user != api_user or job.created_at < since:
                    continue
                view = self._view(job, now)
                if wanted is None or _status_name(view["status"]) in wanted:
                    views.append(view)
        page = views[offset : offset + batch_size]
        if offset + batch_size < len(views):
            return ok(page, nextPageToken=_encode_token(offset + batch_size))
        return ok(page)

    def file_path(self, entity: str, export_id: str, api_user: str) -> tuple[Path, int, str] | None:
        """The finished file of this user's job, or None (unknown, not Completed, expired): HTTP 404."""
        with self._lock:
            now = self._observe()
            job = self._jobs.get(export_id)
            if job is None or job.entity != entity or job.api_user != api_user:
                return None
            if job.status_at(now) != COMPLETED or job.file_expired or job.file is None or job.facts is None:
                return None
            return job.file, job.facts.file_size, job.facts.file_checksum

    def jobs_truth(self) -> list[dict]:
        """Every job of every user as it really is now (no refresh delay), for test assertions."""
        with self._lock:
            now = self._observe()
            return [
                {
                    **self._json(job, now),
                    "entity": job.entity,
                    "apiUser": job.api_user,
                    "fault": job.fault,
                    "filter": {
                        k: v.as_json() if hasattr(v, "as_json") else v for k, v in job.spec.filter.items()
                    },
                    "fields": list(job.spec.fields),
                    "fileExpired": job.file_expired,
                    "internalError": job.internal_error,
                    "rendering": job.render is not None,
                }
                for job in sorted(self._jobs.values(), key=lambda j: j.seq)
            ]

    def exported_bytes_today(self) -> int:
        with self._lock:
            return self._bytes_today(self._observe())

    # --- admission -----------------------------------------------------------------------------------
    def _check_admission(self, now: datetime, fault: str | None, *, queue: bool) -> None:
        settings = self._settings
        neighbours = self._ctx.neighbours
        theirs = neighbours.queued(now) if neighbours else 0
        if fault == "queue_full" or (queue and self._active_count() + theirs >= settings.queue_slots):
            raise MarketoApiError("1029", TOO_MANY_JOBS)
        their_bytes = neighbours.export_bytes_today(now) if neighbours else 0
        if fault == "export_quota" or self._bytes_today(now) + their_bytes >= settings.daily_export_bytes:
            megabytes = settings.daily_export_bytes / (1024 * 1024)
            raise MarketoApiError("1029", f"Export daily quota {megabytes:g}MB exceeded.")

    def _active_count(self) -> int:
        return sum(1 for job in self._jobs.values() if job.waiting or job.processing)

    def _bytes_today(self, now: datetime) -> int:
        zone = ZoneInfo(self._ctx.config.limits.quota_timezone)  # midnight America/Chicago by default
        today = now.astimezone(zone).date()
        return sum(
            job.facts.file_size
            for job in self._jobs.values()
            if job.outcome == COMPLETED
            and job.facts is not None
            and job.finished_at is not None
            and job.finished_at <= now
            and job.finished_at.astimezone(zone).date() == today
        )

    # --- the queue, replayed lazily ------------------------------------------------------------------
    def _observe(self) -> datetime:
        """Bring every job up to the clock's now; return now."""
        now = self._ctx.clock.now()
        start = self._simulated_to or now
        if now < start:  # the clock was moved back: keep the simulated past, act at the latest time
            now = start
        moment = start
        neighbours = self._ctx.neighbours
        while True:
            self._fill_slots(moment)
            due = [job.finish_due for job in self._jobs.values() if job.processing and job.finish_due]
            startable = any(j.waiting and j.fault != "job_stuck" for j in self._jobs.values())
            if neighbours is not None and neighbours.on and startable:
                due.append(neighbours.next_export_change(moment))  # they may free a slot then
            if not due or min(due) > now:
                break
            moment = max(moment, min(due))
            for job in list(self._jobs.values()):
                if job.processing and job.finish_due is not None and job.finish_due <= moment:
                    self._finish(job)
        self._simulated_to = now
        self._expire(now)
        return now

    def _fill_slots(self, at: datetime) -> None:
        running = sum(1 for job in self._jobs.values() if job.processing)
        if self._ctx.neighbours is not None:
            running += self._ctx.neighbours.processing(at)  # slots the other integrations' jobs hold
        waiting = sorted(
            (job for job in self._jobs.values() if job.waiting and job.fault != "job_stuck"),
            key=lambda j: (j.queued_at, j.seq),
        )
        for job in waiting:
            if running >= self._settings.processing_slots:
                break
            self._start(job, at)
            running += 1

    def _start(self, job: _Job, at: datetime) -> None:
        """Processing starts at `at`: rows counted and finish fixed now, the file written by a thread."""
        settings = self._settings
        job.started_at = at
        if job.fault == "job_failed":
            job.finish_due = at + timedelta(seconds=settings.job_overhead_s)
            return
        rows = open_rows(
            self._ctx.state,
            job.spec,
            at,
            enforce_retention=self._ctx.config.behaviour.enforce_retention,
            member_booleans=settings.program_member_booleans,
        )
        speed = rows.count / settings.rows_per_s if settings.rows_per_s > 0 else 0.0
        job.finish_due = at + timedelta(seconds=settings.job_overhead_s + speed)
        job.file = self.files_dir / f"{job.export_id}.part"
        delimiter = DELIMITERS.get(job.spec.format, settings.ssv_delimiter)
        job.render = self._renders.submit(
            write_export,
            job.file,
            job.spec.headers,
            rows.batches,
            delimiter,
            rows.booleans,
            lambda: self._closed.is_set() or job.cancelled_at is not None or job.outcome == FAILED,
            settings.null_text == "quoted",
        )
        job.render.add_done_callback(lambda done: self._render_done(job, done))

    def _render_done(self, job: _Job, done: Future[FileFacts]) -> None:
        """On the render thread: the file is written (or failed). A job already past its finish shows its
        outcome from now on."""
        with self._lock:
            job.render = None
            error = done.exception()
            abandoned = job.cancelled_at is not None or job.outcome == FAILED or self._closed.is_set()
            if abandoned or isinstance(error, RenderCancelled):
                self._drop_file(job)
            elif error is not None:  # a sandbox bug must not wedge the queue: the job fails visibly
                job.fault = "job_failed"
                job.internal_error = f"{type(error).__name__}: {error}"
                self._drop_file(job)
                if job.outcome is not None:
                    self._fail(job)
            else:
                job.facts = done.result()
                if job.outcome == COMPLETED:
                    self._publish(job)

    def _finish(self, job: _Job) -> None:
        job.finished_at = job.finish_due
        if job.fault == "job_failed":
            self._fail(job)
            return
        job.outcome = COMPLETED
        if job.render is None:
            self._publish(job)

    def _fail(self, job: _Job) -> None:
        job.outcome = FAILED
        job.error_msg = FAILED_MESSAGE
        job.facts = None
        self._drop_file(job)

    def _publish(self, job: _Job) -> None:
        """The finished file becomes downloadable: renamed from its hidden `.part` name, whole."""
        assert job.file is not None
        published = job.file.with_suffix(".csv")
        job.file.rename(published)
        job.file = published

    def _expire(self, now: datetime) -> None:
        keep_files = timedelta(days=self._settings.file_retention_days)
        forget = now - timedelta(days=STATUS_RETENTION_DAYS)
        for job in list(self._jobs.values()):
            ended = job.finished_at or job.cancelled_at
            if job.outcome == COMPLETED and not job.file_expired and job.finished_at + keep_files <= now:
                job.file_expired = True
                self._drop_file(job)
            if (ended is not None and ended < forget) or (job.queued_at is None and job.created_at < forget):
                self._drop_file(job)
                del self._jobs[job.export_id]

    def _drop_file(self, job: _Job) -> None:
        if job.file is not None:
            job.file.unlink(missing_ok=True)
            job.file = None

    # --- views ---------------------------------------------------------------------------------------
    def _job(self, entity: str, export_id: str, api_user: str) -> _Job:
        job = self._jobs.get(export_id)
        if job is None or job.entity != entity or job.api_user != api_user:  # others' jobs are invisible
            raise invalid(f"Export job {export_id} not found")
        return job

    def _view(self, job: _Job, now: datetime) -> dict:
        """The job as the client sees it: refreshed at most every status_refresh_s after its last action."""
        refresh = self._settings.status_refresh_s
        if refresh <= 0:
            return self._json(job, now)
        ticks = math.floor((now - job.seen_from).total_seconds() / refresh)
        if ticks == 0 and job.action_view is not None:
            return dict(job.action_view)
        return self._json(job, job.seen_from + timedelta(seconds=ticks * refresh))

    def _json(self, job: _Job, at: datetime) -> dict:
        return job.as_json(at, self._settings.cancelled_spelling)

    def _spell(self, status: str) -> str:
        return self._settings.cancelled_spelling if status == CANCELLED else status


def _close(renders: ThreadPoolExecutor, closed: threading.Event, files_dir: str) -> None:
    closed.set()  # renders in flight stop at their next batch
    renders.shutdown(wait=True, cancel_futures=True)
    shutil.rmtree(files_dir, ignore_errors=True)


def _status_name(value: str) -> str:
    """List filter values are matched case-insensitively; both cancel spellings work."""
    folded = value.strip().casefold()
    if folded in ("cancelled", "canceled"):
        return CANCELLED
    for name in STATUS_NAMES:
        if name.casefold() == folded:
            return name
    allowed = "Created, Queued, Processing, Completed, Failed, Cancelled"
    raise invalid(f"status: expected one of {allowed}, got {value!r}")


def _encode_token(offset: int) -> str:
    return base64.b32encode(f"{TOKEN_PREFIX}{offset}".encode()).decode()


def _decode_token(token: str) -> int:
    try:
        text = base64.b32decode(token.encode(), casefold=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text.startswith(TOKEN_PREFIX) or not text[len(TOKEN_PREFIX) :].isdigit():
        raise invalid(f"nextPageToken: not a token this endpoint returned: {token!r}")
    return int(text[len(TOKEN_PREFIX) :])


__all__ = ["ENTITIES", "BulkExtractService"]
