"""One typed error hierarchy for every Marketo failure, by retry class (docs/client.md, "Authentication and
errors").

Messages name the endpoint, Marketo's code and message and the requestId; they never carry the client
secret or the access token (transport redacts both before building any message).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo


class RetryClass(Enum):
    AUTH = "auth"  # refresh the token, retry once
    BACKOFF = "backoff"  # transient: exponential back-off
    THROTTLE = "throttle"  # rate / concurrency / queue limit: wait, then retry
    FATAL = "fatal"  # fix the request
    DAILY = "daily"  # stop until midnight America/Chicago


class MarketoError(Exception):
    """Base of every client error. `code`/`marketo_message`/`request_id` are None for non-Marketo failures."""

    retry_class = RetryClass.FATAL

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        code: str | None = None,
        marketo_message: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.code = code
        self.marketo_message = marketo_message
        self.request_id = request_id
        super().__init__(_describe(message, endpoint, code, marketo_message, request_id))


def _describe(message: str, endpoint: str, code: str | None, mmsg: str | None, rid: str | None) -> str:
    parts = [message]
    if endpoint:
        parts.append(f"endpoint={endpoint}")
    if code is not None:
        parts.append(f"code={code}")
    if mmsg:
        parts.append(f"marketo_message={mmsg!r}")
    if rid:
        parts.append(f"requestId={rid}")
    return "; ".join(parts)


class MarketoAuthError(MarketoError):
    """Bad credentials (identity 401) or a token Marketo rejected twice in a row."""

    retry_class = RetryClass.AUTH


class MarketoTransientError(MarketoError):
    """A failure that may pass (5xx, timeouts, resets, 604/608/611...) that outlived the retry budget."""

    retry_class = RetryClass.BACKOFF


class MarketoThrottleError(MarketoError):
    """Rate (606), concurrency (615) or bulk queue (1029) limit that outlived the wait budget."""

    retry_class = RetryClass.THROTTLE


class BulkQueueFullError(MarketoThrottleError):
    """1029 "Too many jobs in queue": the instance's 10 bulk slots are taken (by us or others)."""


class MarketoFatalError(MarketoError):
    """Marketo rejected the request itself (bad field, permission, unknown id...). Retrying cannot help."""

    retry_class = RetryClass.FATAL


class UnsupportedFilterError(MarketoFatalError):
    """1035: the instance lacks the bulk filter (no "Corona" infrastructure)."""


class BulkJobFailedError(MarketoTransientError):
    """The export job ended Failed or Cancelled on Marketo's side, again after `bulk.failed_job_retries`
    new jobs ("an internal error occurred while generating the file"): Marketo's trouble, not the
    request's, so the step's retry policy tries once more later."""


class BulkJobTimeoutError(MarketoTransientError):
    """The export job did not complete within `job_timeout_s`; it was cancelled."""


class BulkFileGoneError(MarketoTransientError):
    """The export's file 404s (expired or not ready); the engine recreates the job."""


class ChecksumMismatchError(MarketoTransientError):
    """The downloaded bytes do not match `fileChecksum`/`fileSize`: every batch of that export is suspect."""


class PagingError(MarketoError):
    """Paging did not end the way Marketo promises (too many empty pages, a repeating token)."""


class MalformedResponseError(MarketoTransientError):
    """Not Marketo JSON: an HTML page from a proxy, truncated JSON, or success:false without errors."""


class RowTooLargeError(MalformedResponseError):
    """A row of an export file does not fit the CSV parse block (`bulk.block_size`)."""


class QuotaExhausted(MarketoError):
    """A daily Marketo quota is used up: stop until `resets_at` (midnight in the quota zone,
    `MarketoConfig.quota_timezone`). Retrying earlier only burns quota."""

    retry_class = RetryClass.DAILY

    def __init__(
        self,
        what: str,
        *,
        code: str,
        endpoint: str = "",
        marketo_message: str | None = None,
        request_id: str | None = None,
        zone: ZoneInfo,
        now: datetime | None = None,
        detail: str = "",
    ) -> None:
        self.resets_at = next_quota_reset(now, zone)
        super().__init__(
            f"{what} exhausted, resets at {self.resets_at.isoformat()}{detail}",
            endpoint=endpoint,
            code=code,
            marketo_message=marketo_message,
            request_id=request_id,
        )


class DailyQuotaExceeded(QuotaExhausted):
    """607: the instance's daily call quota is used up."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("daily quota", code="607", **kwargs)


class ExportQuotaExceeded(QuotaExhausted):
    """1029 "Export daily quota …MB exceeded": bulk export bytes used up. Resumable after the reset."""

    def __init__(self, *, export_id: str | None = None, **kwargs: Any) -> None:
        self.export_id = export_id
        kept = f" (export {export_id} is kept and reused by the next run)" if export_id else ""
        super().__init__("daily bulk export quota", code="1029", detail=kept, **kwargs)


def next_quota_reset(now: datetime | None, zone: ZoneInfo) -> datetime:
    """Next midnight in `zone` (aware datetime in that zone)."""
    local = (now or datetime.now(zone)).astimezone(zone)
    tomorrow = local.date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(0, 0), tzinfo=zone)


# Response-level codes by retry class (docs/client.md). Anything unlisted is FATAL.
_BACKOFF_CODES = frozenset({"500", "502", "604", "608", "611", "614", "713", "719", "1014"})
_THROTTLE_CODES = frozenset({"606", "615", "1016", "1019"})
_AUTH_CODES = frozenset({"601", "602"})


def classify(code: str, message: str = "") -> RetryClass:
    if code in _AUTH_CODES:
        return RetryClass.AUTH
    if code == "607" or (code == "1029" and "quota" in message.lower()):
        return RetryClass.DAILY
    if code in _THROTTLE_CODES or code == "1029":
        return RetryClass.THROTTLE
    if code in _BACKOFF_CODES:
        return RetryClass.BACKOFF
    return RetryClass.FATAL


def is_job_already_queued(code: str, message: str) -> bool:
    return code == "1029" and "already queued" in message.lower()


def error_for(
    code: str,
    message: str,
    *,
    endpoint: str,
    request_id: str | None,
    quota_zone: ZoneInfo,
    now: datetime | None = None,
) -> MarketoError:
    """The typed exception for one Marketo error (used once retries are exhausted or not allowed).
    `now` dates a quota stop's reset (default: the system clock)."""
    kw = {"endpoint": endpoint, "marketo_message": message, "request_id": request_id}
    rc = classify(code, message)
    if code == "607":
        return DailyQuotaExceeded(**kw, zone=quota_zone, now=now)
    if code == "1029" and rc is RetryClass.DAILY:
        return ExportQuotaExceeded(**kw, zone=quota_zone, now=now)
    if code == "1029":
        return BulkQueueFullError("bulk export queue is full", code=code, **kw)
    if code == "1035":
        return UnsupportedFilterError("bulk filter not supported by this instance", code=code, **kw)
    if rc is RetryClass.AUTH:
        return MarketoAuthError("access token rejected after a refresh", code=code, **kw)
    if rc is RetryClass.THROTTLE:
        return MarketoThrottleError("still throttled after waiting", code=code, **kw)
    if rc is RetryClass.BACKOFF:
        return MarketoTransientError("transient Marketo error persisted", code=code, **kw)
    return MarketoFatalError("Marketo rejected the request", code=code, **kw)
