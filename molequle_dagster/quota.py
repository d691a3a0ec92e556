"""The quota stop: when Marketo says a daily quota is used up, every schedule, sensor and `molequle sync`
waits for the reset (midnight in the quota zone) instead of spending more of the customer's quota."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from molequle_dagster import clock
from molequle_dagster.lake import Lake
from molequle_dagster.marketo.errors import QuotaExhausted

QUOTA_STATE = "_coordination/marketo_quota.json"


def record_quota_stop(lake: Lake, error: QuotaExhausted) -> None:
    lake.storage.write_json(
        lake.storage.path(QUOTA_STATE),
        {
            "reason": str(error),
            "resets_at": error.resets_at.isoformat(),
            "recorded_at": clock.now().isoformat(),
        },
    )


def quota_recorder(lake: Lake) -> Callable[[QuotaExhausted], None]:
    return lambda error: record_quota_stop(lake, error)


def quota_paused_until(lake: Lake, now: datetime | None = None) -> tuple[datetime, str] | None:
    """(reset time, reason) while a recorded quota stop is still in force, else None."""
    state: dict[str, Any] = lake.storage.read_json(lake.storage.path(QUOTA_STATE)) or {}
    if not state.get("resets_at"):
        return None
    resets_at = datetime.fromisoformat(state["resets_at"])
    return (resets_at, str(state.get("reason", ""))) if (now or clock.now()) < resets_at else None
