"""Marketo REST, Asset and Bulk API client. No Dagster imports: the Dagster layer wraps it in resources.py."""

from molequle_dagster.marketo.bulk import BulkExportResult
from molequle_dagster.marketo.client import MarketoClient
from molequle_dagster.marketo.config import (
    BulkConfig,
    ConfigError,
    MarketoConfig,
    MarketoConnection,
    PacingConfig,
    RetryConfig,
)
from molequle_dagster.marketo.errors import (
    BulkJobFailedError,
    BulkJobTimeoutError,
    ChecksumMismatchError,
    DailyQuotaExceeded,
    ExportQuotaExceeded,
    MalformedResponseError,
    MarketoAuthError,
    MarketoError,
    MarketoFatalError,
    MarketoThrottleError,
    MarketoTransientError,
)
from molequle_dagster.marketo.stats import CallStats
from molequle_dagster.marketo.usage import UsageToday
from molequle_dagster.marketo.writes import SyncResult

__all__ = [
    "BulkConfig",
    "BulkExportResult",
    "BulkJobFailedError",
    "BulkJobTimeoutError",
    "CallStats",
    "ChecksumMismatchError",
    "ConfigError",
    "DailyQuotaExceeded",
    "ExportQuotaExceeded",
    "MalformedResponseError",
    "MarketoAuthError",
    "MarketoClient",
    "MarketoConfig",
    "MarketoConnection",
    "MarketoError",
    "MarketoFatalError",
    "MarketoThrottleError",
    "MarketoTransientError",
    "PacingConfig",
    "RetryConfig",
    "SyncResult",
    "UsageToday",
]
