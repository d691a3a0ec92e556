"""Every knob of the Marketo client, declared once: defaults, ranges and a description for each.

The settings file's `marketo:` section is `MarketoConnection`, the Dagster `MarketoResource` builds its
launchpad config from `MarketoConfig` (same descriptions: each field's docstring), and `MarketoClient`
takes a `MarketoConfig`. Models are strict (`"30"` is not 30, `true` is not 1) and refuse unknown keys, so
a typo never passes silently. The Marketo facts the ranges rely on are in docs/client.md.
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

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, use_attribute_docstrings=True)

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

    calls_per_20s: int = Field(50, ge=1, le=100)
    """Calls admitted per rate window (Marketo allows 100 per 20 s for all integrations together)."""

    window_s: float = Field(20.0, gt=0, le=60)
    """Length of the rate window in seconds: 20 on every Marketo instance; change it only for a sandbox
    configured with another window."""

    max_in_flight: int = Field(5, ge=2, le=10)
    """Calls in flight at once (Marketo: 10); at least 2, as a bulk download holds one while it streams
    and the process still needs one for its other calls."""

    slot_poll_s: float = Field(0.02, gt=0, le=1)
    """How often a waiting call re-tries a busy in-flight slot, in seconds."""

    @property
    def max_downloads(self) -> int:
        """Bulk downloads streaming at once: every slot but one, which stays free for ordinary calls."""
        return self.max_in_flight - 1


class RetryConfig(Knobs):
    """How one call copes with failures before it raises a typed error."""

    max_attempts: int = Field(5, ge=1, le=20)
    """Attempts for transient failures (5xx, resets, timeouts, 604/608/611...)."""

    backoff_base_s: float = Field(1.0, ge=0, le=60)
    """First back-off in seconds; it doubles with each attempt (with jitter)."""

    backoff_cap_s: float = Field(60.0, ge=0, le=3600)
    """Longest single back-off in seconds."""

    throttle_attempts: int = Field(8, ge=0, le=100)
    """Retries after 606 (rate) or 615 (concurrency) before the call fails."""

    rate_limit_wait_s: float = Field(5.0, ge=0, le=60)
    """Wait after a 606 in seconds, at least (jitter doubles it at most)."""

    concurrency_wait_s: float = Field(1.0, ge=0, le=60)
    """Wait after a 615 in seconds, at least (jitter doubles it at most)."""

    auth_attempts: int = Field(3, ge=1, le=10)
    """Token refreshes in a row for one call after 601/602 (with back-off from the second) before it
    fails; credentials the identity endpoint refuses fail at once."""


class BulkConfig(Knobs):
    """The bulk export engine: queue share, polling, reuse of exports and recovery of orphans."""

    poll_interval_s: float = Field(60.0, ge=0, le=900)
    """Seconds between job status polls (Marketo refreshes a job's status at most once a minute)."""

    max_poll_interval_s: float = Field(300.0, ge=0, le=3600)
    """Polls of a job that keeps waiting thin out: at most one per tenth of the time it has waited so
    far, never further apart than this (nor closer than `poll_interval_s`). A job Marketo holds for two
    hours so costs about 80 status calls instead of one per `poll_interval_s`."""

    job_timeout_s: float = Field(7200.0, gt=0, le=86_400)
    """A job not Completed this many seconds after it was queued is cancelled and fails."""

    max_queued_jobs: int = Field(4, ge=1, le=10)
    """Our jobs queued or processing on Marketo at once, across all processes and hosts sharing the
    coordination store. Marketo processes 2 and queues 10 per instance for all integrations: more than 2
    keeps a job waiting when a processing slot frees."""

    window_days: int = Field(31, ge=1, le=31)
    """Days per createdAt/updatedAt export window (Marketo: at most 31)."""

    queue_full_waits_s: list[float] = Field(default_factory=lambda: [60.0, 120.0, 240.0], min_length=1)
    """Waits after 1029 "Too many jobs in queue", the last one repeated (Marketo advises 1, 2, 4 min)."""

    queue_full_max_wait_s: float = Field(3600.0, ge=0, le=86_400)
    """Give up on a full queue after waiting this many seconds in all."""

    failed_job_retries: int = Field(1, ge=0, le=5)
    """Times a Failed job is created again before the export fails."""

    reuse_max_age_s: float = Field(86_400.0, ge=0, le=7 * 86_400)
    """An identical unfinished job, or a completed one of the same reuse scope, is reused when created
    this many seconds ago at most."""

    late_records_margin_s: float = Field(3600.0, ge=0, le=7 * 86_400)
    """A completed export serves a later run only if its window ended at least this many seconds before
    the job started: records can show in exports a while after their time."""

    file_retention_s: float = Field(6 * 86_400.0, gt=0, le=10 * 86_400)
    """Completed exports older than this are not reused (Marketo keeps files 7 days; some pages say 10)."""

    orphan_timeout_s: float = Field(900.0, ge=0, le=86_400)
    """An unfinished job whose process is gone and that nobody resumed for this many seconds is
    cancelled by the sweep, so it holds no queue slot."""

    sweep_interval_s: float = Field(300.0, ge=0, le=86_400)
    """The orphan sweep runs at most this often per instance (seconds)."""

    download_resumes: int = Field(5, ge=0, le=100)
    """Range resumes in a row without new bytes before a download fails."""

    block_size: int = Field(1 << 20, ge=1 << 10, le=1 << 28)
    """CSV parse block in bytes (a row larger than this is read again with a larger block)."""

    max_empty_activity_pages: int = Field(200, ge=1, le=100_000)
    """Empty activity pages in a row (moreResult:true) before the feed fails."""


class MarketoConfig(Knobs):
    """What the client needs besides the credentials."""

    base_url: str
    """REST base URL, e.g. https://123-ABC-456.mktorest.com (no path)."""

    timeout_s: float = Field(30.0, gt=0, le=600)
    """Seconds to wait for each HTTP answer."""

    quota_timezone: str = DEFAULT_QUOTA_TIMEZONE
    """IANA zone whose midnight resets the daily call and export quotas (the docs say 12:00AM CST)."""

    pacing: PacingConfig = Field(default_factory=PacingConfig)
    """Our share of the instance-wide call limits."""

    bulk: BulkConfig = Field(default_factory=BulkConfig)
    """The bulk export engine."""

    retry: RetryConfig = Field(default_factory=RetryConfig)
    """How one call copes with failures."""

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

    client_id_env: str = Field("MARKETO_CLIENT_ID", pattern=_ENV_NAME)
    """Environment variable holding the client id (read when a run starts)."""

    client_secret_env: str = Field("MARKETO_CLIENT_SECRET", pattern=_ENV_NAME)
    """Environment variable holding the client secret (read when a run starts)."""

    coordination_url_env: str = Field("MOLEQULE_COORDINATION_URL", pattern=_ENV_NAME)
    """Environment variable that may name the coordination store (a postgresql:// URL, or a directory for
    SQLite); unset, runs use the Dagster instance's PostgreSQL database, or a SQLite file under
    $DAGSTER_HOME/molequle."""


def quota_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"must be an IANA time zone name such as {DEFAULT_QUOTA_TIMEZONE}") from None
