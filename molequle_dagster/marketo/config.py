"""Every knob of the Marketo client, declared once: defaults, ranges and a description for each.

The settings file's `marketo:` section is `MarketoConnection`, the Dagster `MarketoResource` builds its
launchpad config from `MarketoConfig` (same descriptions), and `MarketoClient` takes a `MarketoConfig`.
Models are strict (`"30"` is not 30, `true` is not 1) and refuse unknown keys, so a typo never passes
silently. Facts about Marketo the ranges rely on are in docs/client.md.
"""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_QUOTA_TIMEZONE = "America/Chicago"  # docs: "12:00AM CST", linking Central Time [UNCONFIRMED: DST]
_ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"


class ConfigError(ValueError):
    """A client setting out of range or of the wrong type; the message names the field path."""


class Knobs(BaseModel):
    """Strict, closed and immutable: what a settings file or a launchpad may set."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    @classmethod
    def build(cls, data: object, where: str) -> Knobs:
        """Validate `data` (a mapping), raising ConfigError with `where.<field>: problem (got …)` lines."""
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise ConfigError(describe_errors(error, where)) from None


def describe_errors(error: ValidationError, where: str) -> str:
    lines = [f"invalid {where}:"]
    for item in error.errors():
        path = ".".join([where, *(str(p) for p in item["loc"])])
        lines.append(f"  {path}: {item['msg'].removeprefix('Value error, ')} (got {item.get('input')!r:.80})")
    return "\n".join(lines)


class PacingConfig(Knobs):
    """Our share of the instance-wide call limits, shared by every process using the same coordination
    store (Marketo: 100 calls per trailing 20 s and 10 in flight, for all integrations together)."""

    calls_per_20s: int = Field(
        50, ge=1, le=100, description="calls admitted per rate window (Marketo allows 100 per 20 s in all)"
    )
    window_s: float = Field(
        20.0,
        gt=0,
        le=60,
        description="length of the rate window in seconds: 20 on every Marketo instance; change it only "
        "for a sandbox configured with another window",
    )
    max_in_flight: int = Field(
        5,
        ge=2,
        le=10,
        description="calls in flight at once (Marketo: 10); at least 2, as a bulk download holds one "
        "while it streams and the process still needs one for its other calls",
    )
    slot_poll_s: float = Field(
        0.02, gt=0, le=1, description="how often a waiting call re-tries a busy in-flight slot (seconds)"
    )

    @property
    def max_downloads(self) -> int:
        """Bulk downloads streaming at once: every slot but one, which stays free for ordinary calls."""
        return self.max_in_flight - 1


class RetryConfig(Knobs):
    """How one call copes with failures before it raises a typed error."""

    max_attempts: int = Field(
        5, ge=1, le=20, description="attempts for transient failures (5xx, resets, 604/608/611...)"
    )
    backoff_base_s: float = Field(1.0, ge=0, le=60, description="first back-off; it doubles each attempt")
    backoff_cap_s: float = Field(60.0, ge=0, le=3600, description="longest single back-off (seconds)")
    throttle_attempts: int = Field(
        8, ge=0, le=100, description="retries after 606 (rate) or 615 (concurrency) before failing"
    )
    rate_limit_wait_s: float = Field(
        5.0, ge=0, le=60, description="wait after a 606, at least (doubled at most by jitter)"
    )
    concurrency_wait_s: float = Field(
        1.0, ge=0, le=60, description="wait after a 615, at least (doubled at most by jitter)"
    )
    auth_attempts: int = Field(
        3,
        ge=1,
        le=10,
        description="token refreshes in a row for one call after 601/602 (with back-off from the second) "
        "before it fails; bad credentials at the identity endpoint fail at once",
    )


class BulkConfig(Knobs):
    """The bulk export engine: queue share, polling, reuse of exports and recovery of orphans."""

    poll_interval_s: float = Field(
        60.0,
        ge=0,
        le=900,
        description="seconds between job status polls (Marketo refreshes at most once a minute)",
    )
    job_timeout_s: float = Field(
        7200.0, gt=0, le=86_400, description="a job not Completed this long after it was queued is cancelled"
    )
    max_queued_jobs: int = Field(
        4,
        ge=1,
        le=10,
        description="our jobs queued or processing on Marketo at once, across all processes and hosts "
        "sharing the coordination store; Marketo processes 2 and queues 10 per instance for all "
        "integrations, so more than 2 keeps a job waiting when a processing slot frees",
    )
    window_days: int = Field(
        31, ge=1, le=31, description="days per createdAt/updatedAt export window (Marketo: 31)"
    )
    queue_full_waits_s: list[float] = Field(
        default_factory=lambda: [60.0, 120.0, 240.0],
        min_length=1,
        description="waits after 1029 'Too many jobs in queue', the last one repeated (Marketo: 1, 2, 4 min)",
    )
    queue_full_max_wait_s: float = Field(
        3600.0, ge=0, le=86_400, description="give up on a full queue after waiting this long in all"
    )
    failed_job_retries: int = Field(1, ge=0, le=5, description="times a Failed job is created again")
    reuse_max_age_s: float = Field(
        86_400.0,
        ge=0,
        le=7 * 86_400,
        description="an identical unfinished job, or a completed one of the same reuse scope, is reused "
        "when created this recently",
    )
    late_records_margin_s: float = Field(
        3600.0,
        ge=0,
        le=7 * 86_400,
        description="a completed export is reused by a later run only if its window ended at least this "
        "long before the job started: records can become visible to exports a while after their time",
    )
    file_retention_s: float = Field(
        6 * 86_400.0,
        gt=0,
        le=10 * 86_400,
        description="completed exports older than this are not reused (Marketo keeps files 7 days, "
        "some pages say 10)",
    )
    orphan_timeout_s: float = Field(
        900.0,
        ge=0,
        le=86_400,
        description="an unfinished job whose process is gone and that nobody resumed for this long is "
        "cancelled by the sweep, so it does not hold a queue slot",
    )
    sweep_interval_s: float = Field(
        300.0, ge=0, le=86_400, description="the orphan sweep runs at most this often per instance"
    )
    download_resumes: int = Field(
        5, ge=0, le=100, description="Range resumes in a row without new bytes before a download fails"
    )
    block_size: int = Field(
        1 << 20,
        ge=1 << 10,
        le=1 << 28,
        description="CSV parse block in bytes (bigger costs memory, gains little)",
    )
    max_empty_activity_pages: int = Field(
        200, ge=1, le=100_000, description="empty activity pages in a row (moreResult:true) before failing"
    )


class MarketoConfig(Knobs):
    """What the client needs besides the credentials."""

    base_url: str = Field(description="REST base URL, e.g. https://123-ABC-456.mktorest.com (no path)")
    timeout_s: float = Field(30.0, gt=0, le=600, description="seconds to wait for each HTTP answer")
    quota_timezone: str = Field(
        DEFAULT_QUOTA_TIMEZONE,
        description="IANA zone whose midnight resets the daily call and export quotas (docs: 12:00AM CST)",
    )
    pacing: PacingConfig = Field(default_factory=PacingConfig, description=PacingConfig.__doc__)
    bulk: BulkConfig = Field(default_factory=BulkConfig, description=BulkConfig.__doc__)
    retry: RetryConfig = Field(default_factory=RetryConfig, description=RetryConfig.__doc__)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+/?$", value):
            raise ValueError("must be an http(s) URL with no path, e.g. https://123-ABC-456.mktorest.com")
        return value.rstrip("/")

    @field_validator("quota_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        quota_zone(value)
        return value

    @property
    def zone(self) -> ZoneInfo:
        return quota_zone(self.quota_timezone)


class MarketoConnection(MarketoConfig):
    """The settings file's `marketo:` section: the client's knobs and where its secrets come from."""

    client_id_env: str = Field(
        "MARKETO_CLIENT_ID", pattern=_ENV_NAME, description="environment variable holding the client id"
    )
    client_secret_env: str = Field(
        "MARKETO_CLIENT_SECRET",
        pattern=_ENV_NAME,
        description="environment variable holding the client secret",
    )
    coordination_url_env: str = Field(
        "MOLEQULE_COORDINATION_URL",
        pattern=_ENV_NAME,
        description="environment variable that may name the coordination store (a postgresql:// URL or a "
        "directory for SQLite); unset, runs use the Dagster instance's PostgreSQL database, or a SQLite "
        "file under $DAGSTER_HOME/molequle",
    )

    def client_config(self) -> MarketoConfig:
        return MarketoConfig.model_validate(self.model_dump(include=set(MarketoConfig.model_fields)))


def quota_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"must be an IANA time zone name such as {DEFAULT_QUOTA_TIMEZONE}") from None
