"""Marketo's instance-wide limits (docs/marketo.md §4.1) on the virtual clock: 606 rate, 615 concurrency,
607 daily quota.

All clients share one Limiter, as all integrations share one Marketo subscription, and so do the simulated
other integrations (`neighbours.py`): their calls in the window, their calls in flight and their calls of
the day are added at every decision. The daily quota and the usage statistics roll over at midnight in
`limits.quota_timezone` (America/Chicago by default). Calls answered with a code documented as uncounted
(docs/marketo.md §3.3) never reach the limiter, so they are not counted. The limiter also keeps, per API
user, the most calls it ever saw in one window (`peak_calls_in_window`), so a test can show a client kept
to its share.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from molequle_dagster.sandbox.clock import SandboxClock
from molequle_dagster.sandbox.config import LimitSettings
from molequle_dagster.sandbox.envelope import MarketoApiError
from molequle_dagster.sandbox.neighbours import Neighbours

# docs/marketo.md §3.3: codes documented as not counted against the quota or the rate limit.
UNCOUNTED_CODES = frozenset({"601", "602", "604", "605", "608", "611"})

# Batch limits (docs/marketo.md §4.2); routes validate their inputs against these.
MAX_BATCH = 300
MAX_FILTER_VALUES = 300
MAX_ACTIVITY_TYPE_IDS = 10
MAX_LEAD_IDS = 30
MAX_TRIGGER_LEADS = 100
MAX_TRIGGER_TOKENS = 100
MAX_ASSET_RETURN = 200
MAX_FILTER_MATCHES = 1000


@dataclass
class DayUsage:
    total: int = 0
    users: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)


class Limiter:
    def __init__(
        self, limits: LimitSettings, clock: SandboxClock, neighbours: Neighbours | None = None
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._neighbours = neighbours
        self._zone = ZoneInfo(limits.quota_timezone)
        self._cond = threading.Condition()
        self._window: deque[float] = deque()  # virtual timestamps of counted calls, oldest first
        self._user_windows: dict[str, deque[float]] = {}
        self._peaks: Counter = Counter()  # per API user: most calls seen in one window
        self.in_flight = 0
        self._days: dict[date, DayUsage] = {}

    # --- admission ------------------------------------------------------------------------------------

    def admit(self, api_user: str) -> None:
        """Count one call and take an in-flight slot, or raise 615/606/607 (those calls still count)."""
        now = self._clock.monotonic()
        with self._cond:
            usage = self._today()
            self._trim(now)
            rejection = self._rejection(usage, now)
            self._window.append(now)
            usage.total += 1
            usage.users[api_user] += 1
            self._count_for_user(api_user, now)
            if rejection is not None:
                usage.errors[rejection.code] += 1
                raise rejection
            self.in_flight += 1
            self._cond.notify_all()

    def release(self, error_code: str | None = None) -> None:
        """Give the in-flight slot back; `error_code` feeds stats/errors.json."""
        with self._cond:
            self.in_flight = max(0, self.in_flight - 1)
            if error_code is not None:
                self._today().errors[error_code] += 1
            self._cond.notify_all()

    def _rejection(self, usage: DayUsage, now: float) -> MarketoApiError | None:
        if not self.limits.enforce:
            return None
        nb = self._neighbours
        theirs_in_flight, theirs_in_window = (nb.in_flight(now), nb.calls_in_window(now)) if nb else (0, 0)
        if self.in_flight + theirs_in_flight >= self.limits.max_in_flight:
            return MarketoApiError(615, f"Concurrent access limit '{self.limits.max_in_flight}' reached")
        if len(self._window) + theirs_in_window >= self.limits.rate_calls:
            window = _plain_number(self.limits.rate_window_s)
            return MarketoApiError(
                606, f"Max rate limit '{self.limits.rate_calls}' exceeded with in '{window}' secs"
            )
        theirs_today = sum(nb.calls_today(self._clock.now()).values()) if nb else 0
        if usage.total + theirs_today >= self.limits.daily_quota:
            return MarketoApiError(607, "Daily quota reached")
        return None

    def _count_for_user(self, api_user: str, now: float) -> None:
        calls = self._user_windows.setdefault(api_user, deque())
        horizon = now - self.limits.rate_window_s
        while calls and calls[0] <= horizon:
            calls.popleft()
        calls.append(now)
        self._peaks[api_user] = max(self._peaks[api_user], len(calls))

    def peak_calls_in_window(self) -> dict[str, int]:
        """Per API user, the most calls it had in one trailing rate window since the last reset."""
        with self._cond:
            return dict(self._peaks)

    def _trim(self, now: float) -> None:
        horizon = now - self.limits.rate_window_s
        while self._window and self._window[0] <= horizon:
            self._window.popleft()

    # --- days and statistics --------------------------------------------------------------------------

    def quota_day(self) -> date:
        return self._clock.now().astimezone(self._zone).date()

    def _today(self) -> DayUsage:
        return self._days.setdefault(self.quota_day(), DayUsage())

    def calls_in_window(self) -> int:
        with self._cond:
            self._trim(self._clock.monotonic())
            return len(self._window)

    def usage(self, days: int = 1) -> list[dict]:
        """stats/usage.json rows, newest first: {date, total, users:[{userId, count}]}."""
        with self._cond:
            today = self.quota_day()
            rows = []
            for back in range(days):
                day = today - timedelta(days=back)
                usage = self._days.get(day, DayUsage())
                counts = Counter(usage.users) + Counter(self._neighbour_calls(day, back == 0))
                users = [{"userId": user, "count": count} for user, count in sorted(counts.items())]
                rows.append({"date": day.isoformat(), "total": sum(counts.values()), "users": users})
            return rows

    def _neighbour_calls(self, day: date, today: bool) -> dict[str, int]:
        if self._neighbours is None:
            return {}
        now = self._clock.now()
        if today:
            return self._neighbours.calls_today(now)
        start = datetime(day.year, day.month, day.day, tzinfo=self._zone)
        end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=self._zone)
        return self._neighbours.calls_between(start, end)

    def errors(self, days: int = 1) -> list[dict]:
        """stats/errors.json rows: {date, total, errors:[{errorCode, count}]}."""
        with self._cond:
            today = self.quota_day()
            rows = []
            for back in range(days):
                day = today - timedelta(days=back)
                usage = self._days.get(day, DayUsage())
                errors = [{"errorCode": code, "count": count} for code, count in sorted(usage.errors.items())]
                rows.append({"date": day.isoformat(), "total": sum(usage.errors.values()), "errors": errors})
            return rows

    def exhaust_daily_quota(self) -> None:
        """Control surface: today's quota is used up (the next call answers 607)."""
        with self._cond:
            usage = self._today()
            usage.total = max(usage.total, self.limits.daily_quota)

    def reset(self) -> None:
        with self._cond:
            self._window.clear()
            self._days.clear()
            self._user_windows.clear()
            self._peaks.clear()

    def wait_for_in_flight(self, count: int, timeout: float) -> bool:
        """Block until at least `count` calls are in flight (tests synchronise on this, not on sleeps)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.in_flight >= count, timeout=timeout)


def _plain_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def check_uri_and_body(
    path_and_query_bytes: int, content_length: int | None, limits: LimitSettings
) -> int | None:
    """HTTP status 414/413 for an oversized request, else None."""
    if path_and_query_bytes > limits.max_uri_bytes:
        return 414
    if content_length is not None and content_length > limits.max_body_bytes:
        return 413
    return None
