"""Client-side knobs: our share of Marketo's limits and the bulk engine's timings (all overridable)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True)
class PacingConfig:
    """Our share of the instance-wide limits (Marketo: 100 calls / 20 s, 10 in flight), shared by all
    processes that use the same `state_dir`."""

    calls_per_window: int = 50
    window_s: float = 20.0
    # A bulk download holds one slot while its body streams, and downloads never take the last slot, so
    # the process streaming a file can still make its other calls: hence at least 2.
    max_in_flight: int = 5
    slot_poll_s: float = 0.02  # how often a process re-tries a busy in-flight slot (real time)

    def __post_init__(self) -> None:
        _positive("PacingConfig.calls_per_window", self.calls_per_window)
        _positive("PacingConfig.window_s", self.window_s)
        if self.max_in_flight < 2:
            raise ValueError(
                f"PacingConfig.max_in_flight: expected at least 2 (bulk downloads hold one slot while they "
                f"stream and must leave one for other calls), got {self.max_in_flight!r}"
            )

    @property
    def max_downloads(self) -> int:
        """Bulk downloads streaming at once: every slot but one, which stays free for ordinary calls."""
        return self.max_in_flight - 1


@dataclass(frozen=True)
class RetryConfig:
    max_attempts: int = 5  # BACKOFF: 1, 2, 4, 8 s (+ jitter)
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    throttle_attempts: int = 8  # 606 / 615
    rate_limit_wait_s: float = 5.0  # 606: at least this long (sliding 20-s window)
    concurrency_wait_s: float = 1.0  # 615: 1-5 s with jitter
    # 607 / export quota reset at midnight here. [UNCONFIRMED] docs say "12:00 AM CST", link Central Time.
    quota_timezone: str = "America/Chicago"

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.quota_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"RetryConfig.quota_timezone: expected an IANA time zone such as "
                f"America/Chicago, got {self.quota_timezone!r}"
            ) from None

    @cached_property
    def quota_zone(self) -> ZoneInfo:
        return ZoneInfo(self.quota_timezone)


@dataclass(frozen=True)
class BulkConfig:
    poll_interval_s: float = 60.0  # Marketo refreshes job status at most once a minute
    job_timeout_s: float = 7200.0  # a job not Completed by then is cancelled and fails
    max_processing_jobs: int = 2  # our jobs queued/processing at once (Marketo processes 2)
    window_days: int = 31
    queue_full_waits_s: tuple[float, ...] = (60.0, 120.0, 240.0)  # then repeats the last (Marketo advice)
    queue_full_max_wait_s: float = 3600.0  # give up (MarketoThrottleError) after this much waiting
    failed_job_retries: int = 1  # a Failed job is recreated this many times
    reuse_max_age_s: float = 24 * 3600.0  # ledger: reuse an identical export created this recently
    download_resumes: int = 5  # Range resumes in a row without progress before giving up
    block_size: int = 1 << 20  # CSV parse block: bigger blocks buy little speed and cost RSS
    max_empty_activity_pages: int = 200

    def __post_init__(self) -> None:
        if not 1 <= self.max_processing_jobs <= 2:
            raise ValueError(
                f"BulkConfig.max_processing_jobs: expected 1 or 2, got {self.max_processing_jobs}"
            )
        if not 1 <= self.window_days <= 31:
            raise ValueError(f"BulkConfig.window_days: expected 1..31, got {self.window_days}")
        if self.poll_interval_s < 0:
            raise ValueError(f"BulkConfig.poll_interval_s: expected >= 0, got {self.poll_interval_s}")
        _positive("BulkConfig.job_timeout_s", self.job_timeout_s)


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name}: expected a positive number, got {value!r}")


DEFAULT_PACING = PacingConfig()
DEFAULT_RETRY = RetryConfig()
DEFAULT_BULK = BulkConfig()
