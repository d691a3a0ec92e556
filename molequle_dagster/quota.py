"""The quota stop: when Marketo says a daily quota is used up, every schedule, sensor and `molequle sync`
waits for the reset (midnight in the quota zone) instead of spending more of the customer's quota.

The client records the stop in the coordination store the moment Marketo answers 607 or 1029 "Export
daily quota", so every process on every host sees it; this module only reads it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from molequle_dagster import clock
from molequle_dagster.marketo.client import scope_key


def quota_paused_until(
    marketo: Any, instance: Any = None, now: datetime | None = None
) -> tuple[datetime, str] | None:
    """(reset time, reason) while a recorded quota stop of this Marketo is in force, else None.
    `marketo` is the MarketoResource; `instance` the Dagster instance (where the store lives)."""
    store = marketo.store_for(instance)
    key = scope_key(marketo.client_config().base_url)
    moment = (now or clock.now()).timestamp()
    stops = [
        s
        for k in ("calls", "exports")
        if (s := store.quota_stop(key, k)) is not None and s.resets_at > moment
    ]
    if not stops:
        return None
    latest = max(stops, key=lambda s: s.resets_at)
    return datetime.fromtimestamp(latest.resets_at, UTC), latest.reason
