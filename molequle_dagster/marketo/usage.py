"""Today's quota day in numbers: what the instance spent (Marketo's stats/usage, all integrations) beside
what we spent (our own record in the coordination store), so a run can plan within a budget."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from molequle_dagster.coordination import CoordinationStore
from molequle_dagster.marketo.errors import next_quota_reset
from molequle_dagster.marketo.timeutil import quota_day


@dataclass(frozen=True)
class UsageToday:
    day: date  # the quota day: the date in the quota zone
    resets_at: datetime  # next midnight in the quota zone
    instance_calls: int | None  # every integration's calls today, per Marketo (None: it listed no day)
    instance_day: str | None = None  # the day Marketo's figures are for, as it wrote it
    calls_by_user: dict[str, int] = field(default_factory=dict)  # API user -> calls, per Marketo
    our_calls: int = 0  # calls our pacers admitted today, all processes sharing the store
    our_export_bytes: int = 0  # fileSize of our exports completed today (what the export quota meters)
    our_exports: int = 0


def usage_today(
    stats_usage: Sequence[Mapping[str, Any]],
    store: CoordinationStore,
    instance: str,
    zone: ZoneInfo,
    now: datetime | None = None,
) -> UsageToday:
    """`stats_usage` is the `result` of GET /rest/v1/stats/usage.json:
    [{date, total, users: [{userId, count}]}]. `now` picks the quota day (default: the system clock)."""
    now = now or datetime.now(UTC)
    day = quota_day(zone, now)
    rows = [r for r in stats_usage if isinstance(r, Mapping)]
    # Marketo's row for its today; prefer the one dated our quota day if it lists several.
    row = next((r for r in rows if r.get("date") == day), rows[0] if rows else None)
    users: dict[str, int] = {}
    total: int | None = None
    if row is not None:
        total = _count(row.get("total"))
        for user in row.get("users") or []:
            if isinstance(user, Mapping) and isinstance(user.get("userId"), str):
                users[user["userId"]] = _count(user.get("count"))
    ours = store.usage(instance, day)
    return UsageToday(
        day=date.fromisoformat(day),
        resets_at=next_quota_reset(now, zone),
        instance_calls=total,
        instance_day=str(row.get("date")) if row is not None else None,
        calls_by_user=users,
        our_calls=ours.calls,
        our_export_bytes=ours.export_bytes,
        our_exports=ours.exports,
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
