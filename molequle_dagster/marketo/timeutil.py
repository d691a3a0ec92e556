"""Marketo's datetime shapes: `…Z`, `…+0000`, `…-08:00`, and the asset API's odd `…Z+0000`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


def parse_marketo_datetime(text: str) -> datetime:
    """An aware UTC datetime from any shape Marketo emits; a naive value means GMT."""
    value = text.strip()
    if value.endswith("Z+0000"):
        value = value[:-5]
    value = value.replace("Z", "+00:00")
    parsed = datetime.fromisoformat(value)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def format_marketo_datetime(value: datetime) -> str:
    """ISO-8601 without milliseconds, in UTC with `Z` (what Marketo's filters accept)."""
    if value.tzinfo is None:
        raise ValueError(f"datetime {value!r}: expected a timezone-aware datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def split_windows(start: datetime, end: datetime, days: int = 31) -> list[tuple[datetime, datetime]]:
    """Consecutive inclusive windows of at most `days` days covering [start, end]: each window ends one
    second before the next starts (Marketo's filters are inclusive at both ends)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("split_windows: start and end must be timezone-aware")
    if end < start:
        raise ValueError(f"split_windows: end {end.isoformat()} is before start {start.isoformat()}")
    if not 1 <= days <= 31:
        raise ValueError(f"split_windows: days expected 1..31, got {days}")
    windows = []
    cursor = start
    while cursor <= end:
        window_end = min(cursor + timedelta(days=days) - timedelta(seconds=1), end)
        windows.append((cursor, window_end))
        cursor = window_end + timedelta(seconds=1)
    return windows


def quota_day(zone: ZoneInfo, at: datetime | None = None) -> str:
    """The quota day (the date in the quota time zone, whose midnight resets Marketo's daily quotas)."""
    return (at or datetime.now(UTC)).astimezone(zone).date().isoformat()


def marketo_epoch(value: object) -> float | None:
    """Seconds since the epoch of a Marketo timestamp, or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_marketo_datetime(value).timestamp()
    except ValueError:
        return None
