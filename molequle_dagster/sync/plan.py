"""What the automation runs next, decided the same way by the daemon (the onboarding sensor) and by
`molequle sync`: the first sync (every person, today's activities), right after it the last
`PRIORITY_DAYS` days of activities, then the rest of the history newest first in runs sized to what is
left of today's export budget, and ticks once the first sync is in.

History is planned in bytes: each exported activity window records its size, which gives an estimate of
bytes per day of Marketo time; while that estimate says some of today's history share
(`Budget.bytes_available("history")`, which keeps the ticks' reserve) is left, a run is offered the newest
missing days, cut into export windows of at most 31 days, an even number of them so Marketo's two
processing slots finish together, and starts each next window only while its own exports so far say it
still fits (`HistoryAdmission`). When nothing fits, history pauses until the quota reset and the plan says
when it resumes and when it should end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from molequle_dagster.budget import Budget
from molequle_dagster.lake import Lake

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
POPULATION = "marketo_people_population"
MARKETO_ACTIVITIES = "marketo_activities"
PRIORITY_DAYS = 7  # right after the first sync (every person), the last week, whatever the history share
FIRST_HISTORY_DAYS = 7  # a history run before any export told us what a day costs
MAX_WINDOW_DAYS = 31  # Marketo's limit for one createdAt window
# A run's range is twice what the estimate says fits: recent days cost more than old ones, so the estimate
# (dominated by recent days) runs high; the run itself stops once its actual bytes reach the budget.
OVERPLAN = 2
SLOTS = 2  # Marketo processes two exports at a time per instance
# Windows a run lists when today's share cuts them short (older days may cost less than the first
# estimate, so a run may reach past its first fit; beyond this it is the next run's).
MAX_PLANNED_WINDOWS = 8
EXPORT_SIZES = "_activity_export_sizes"  # lake meta: bytes and Marketo seconds our activity exports covered
# Lake meta: the first sync is complete (its run succeeded, so every table it writes is in). The population
# alone is not enough: a first sync killed after it left the other tables empty while ticks went on.
FIRST_SYNC = "_first_sync"
HISTORY_PAUSE = "_history_pause"  # lake meta: history waits for the quota reset (`pause_history`)
ETA_TAG = "molequle/history_eta"
DAYS_LEFT_TAG = "molequle/history_days_left"


@dataclass(frozen=True)
class Step:
    job: str
    kind: str
    start: str | None = None  # partition range (inclusive); None for unpartitioned-only runs
    end: str | None = None
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def range_tags(self) -> dict[str, str]:
        if self.start is None or self.end is None:
            return {}
        return {RANGE_START: self.start, RANGE_END: self.end}


@dataclass(frozen=True)
class Wait:
    """Nothing may run before `resumes_at` (a quota reset); the reason says why and what is left."""

    reason: str
    resumes_at: datetime | None = None
    plan: dict[str, Any] = field(default_factory=dict)


# --- what a day of activities costs ---------------------------------------------------------------------
@dataclass(frozen=True)
class ExportSizes:
    """Bytes our activity exports cost and the Marketo time they covered (from every export so far), and
    what the latest history step's exports cost (the oldest days exported so far: `frontier`)."""

    bytes: int = 0
    seconds: float = 0.0
    frontier_bytes: int = 0
    frontier_seconds: float = 0.0
    frontier_day: str | None = None  # the oldest day the frontier's exports covered

    @property
    def bytes_per_day(self) -> float | None:
        """None until at least an hour of Marketo time was exported (a guess from minutes is noise)."""
        return self.bytes / self.seconds * 86_400 if self.seconds >= 3_600 else None

    @property
    def frontier_per_day(self) -> float | None:
        """What a day at history's frontier cost. The days still missing are older, and older days cost no
        more (fewer people then, types Marketo keeps 90 days gone): a bound, not a guess."""
        if self.frontier_seconds < 3_600:
            return None
        return self.frontier_bytes / self.frontier_seconds * 86_400

    @property
    def history_per_day(self) -> float | None:
        """What the next history days should cost: the frontier's, else every export's average."""
        return self.frontier_per_day or self.bytes_per_day

    @property
    def history_price(self) -> tuple[float | None, float]:
        """(bytes per day, its excess) a history run starts from: the frontier's, a bound (1); else the
        average of every export, dominated by recent days (`OVERPLAN`)."""
        if self.frontier_per_day is not None:
            return self.frontier_per_day, 1.0
        return self.bytes_per_day, OVERPLAN


def export_sizes(lake: Lake) -> ExportSizes:
    meta = lake.keyed(EXPORT_SIZES, "day").meta
    return ExportSizes(
        int(meta.get("bytes", 0)),
        float(meta.get("seconds", 0.0)),
        int(meta.get("frontier_bytes", 0)),
        float(meta.get("frontier_seconds", 0.0)),
        meta.get("frontier_day"),
    )


def record_export_sizes(
    lake: Lake, export_bytes: int, seconds: float, *, oldest_day: str | None = None
) -> None:
    """Add what one step's activity exports cost. A history step whose oldest day (`oldest_day`) is
    older than the frontier's becomes the frontier; one of newer days (yesterday, a re-export) does not.
    Two steps adding at once may lose one addition: the estimate is then a little stale, never wrong in
    kind."""
    if export_bytes <= 0 or seconds <= 0:
        return
    known = export_sizes(lake)
    meta: dict[str, Any] = {"bytes": known.bytes + export_bytes, "seconds": known.seconds + seconds}
    meta |= {
        "frontier_bytes": known.frontier_bytes,
        "frontier_seconds": known.frontier_seconds,
        "frontier_day": known.frontier_day,
    }
    if oldest_day is not None and (known.frontier_day is None or oldest_day < known.frontier_day):
        meta |= {"frontier_bytes": export_bytes, "frontier_seconds": seconds, "frontier_day": oldest_day}
    lake.keyed(EXPORT_SIZES, "day").commit(meta=meta)


# --- which days, and in which windows -------------------------------------------------------------------
def population_loaded(lake: Lake) -> bool:
    """The smart list was exported whole (the first sync's population step, or a later refresh)."""
    return bool(lake.keyed(POPULATION, "id").meta.get("full_at"))


def first_sync_done(lake: Lake) -> bool:
    """Every table of the first sync is in: one small read, as sensors and schedules ask every minute."""
    return bool(lake.keyed(FIRST_SYNC, "run_id").meta.get("complete_at"))


def mark_first_sync_done(lake: Lake, run_id: str, at: datetime) -> None:
    """Record in the lake that the first sync's run `run_id` succeeded (`schedules.first_sync_complete`
    does, on seeing it): the marker travels with the lake, whatever instance looks at it later."""
    lake.keyed(FIRST_SYNC, "run_id").commit(meta={"complete_at": at.isoformat(), "run_id": run_id})


def pause_history(lake: Lake, until: datetime, reason: str) -> None:
    """Record that history can do nothing more before `until` (a run found today's share too small for
    its next window): the plan then waits for the reset instead of offering the same run again."""
    lake.keyed(HISTORY_PAUSE, "day").commit(meta={"until": until.isoformat(), "reason": reason})


def history_paused(lake: Lake, now: datetime) -> tuple[datetime, str] | None:
    meta = lake.keyed(HISTORY_PAUSE, "day").meta
    until = datetime.fromisoformat(meta["until"]) if meta.get("until") else None
    return (until, str(meta.get("reason", ""))) if until is not None and until > now else None


def missing_history(keys: Sequence[str], materialized: set[str]) -> list[str]:
    """Days before today not yet synced, newest first (today belongs to the ticks)."""
    return [k for k in reversed(keys[:-1]) if k not in materialized]


def newest_run(missing_newest_first: list[str], keys: Sequence[str], max_days: int) -> tuple[str, str]:
    """The newest run of consecutive missing days, at most `max_days` long: (first day, last day)."""
    position = {k: i for i, k in enumerate(keys)}
    run = [missing_newest_first[0]]
    for key in missing_newest_first[1:]:
        if position[run[-1]] - position[key] != 1 or len(run) >= max_days:
            break
        run.append(key)
    return run[-1], run[0]


def days_that_fit(bytes_available: int, bytes_per_day: float | None, share_per_day: int) -> int:
    """How many days of history today's budget pays for. Unknown cost: a small first run that measures
    it. A single day costlier than a whole day's share still goes, alone, while at least half of that
    share is left (else it would never fit)."""
    if bytes_per_day is None:
        return FIRST_HISTORY_DAYS if bytes_available > 0 else 0
    if bytes_per_day <= 0:
        return 1_000_000
    fit = int(bytes_available // bytes_per_day)
    if fit == 0 and bytes_per_day > share_per_day and bytes_available >= share_per_day / 2:
        return 1
    return fit


@dataclass
class HistoryAdmission:
    """Which export windows (newest first) a budgeted run may still start, decided as it goes: what the
    run's consumed exports cost plus what the windows in flight and the next one would cost must stay
    within `allowed`. The cost of a day is the run's own latest exports' (its oldest days so far: older
    days cost no more, so it errs high), before any lands `estimate / overplan` (the frontier's price,
    or the average of all exports over `OVERPLAN`: dominated by recent days, it runs high), and unknown
    means one window at a time. Windows holding one of the
    `priority` newest days always start. A run thus goes as far back as today's share really pays for,
    not as far as a first guess said (`BulkEngine.run`'s `admit`)."""

    windows: Sequence[Sequence[str]]
    allowed: int
    estimate: float | None  # the lake's bytes per day before this run (`export_sizes`)
    priority: int = 0
    share_per_day: int = 0  # history's share of a whole quota day (a lone costly day, see `days_that_fit`)
    overplan: float = OVERPLAN  # the estimate's excess before any lands (1: a bound, the frontier's cost)
    spent: int = 0  # bytes of this run's exports consumed so far
    consumed: int = 0  # windows consumed so far
    sizes: list[tuple[int, float]] = field(default_factory=list)  # (bytes, seconds) of new exports

    def landed(self, index: int, export_bytes: int, new: tuple[int, float] | None) -> None:
        """Window `index` was consumed; the run has spent `export_bytes` so far; `new` is its export's
        (bytes, Marketo seconds covered) when it was a new export (a reused one cost nothing)."""
        self.consumed, self.spent = index + 1, export_bytes
        if new is not None and new[1] > 0:
            self.sizes.append(new)

    def bytes_per_day(self) -> float | None:
        latest = self.sizes[-SLOTS:]
        if latest:
            return sum(b for b, _ in latest) / sum(s for _, s in latest) * 86_400
        return self.estimate / self.overplan if self.estimate is not None else None

    def __call__(self, index: int) -> bool:
        if sum(len(w) for w in self.windows[:index]) < self.priority:
            return True
        per_day = self.bytes_per_day()
        if per_day is None:
            return index == self.consumed
        ahead = sum(len(w) for w in self.windows[self.consumed : index + 1])
        if self.spent + ahead * per_day <= self.allowed:
            return True
        # A single day costlier than a whole day's share goes alone, first thing, while at least half of
        # the share is left: else it would never fit and history would never end.
        lone = index == self.consumed == 0 and len(self.windows[index]) == 1
        return lone and per_day > self.share_per_day > 0 and self.allowed >= self.share_per_day / 2


def budget_window_days(
    allowed: int, estimate: float | None, window_days: int, overplan: float = OVERPLAN
) -> int:
    """Days per export window for a budgeted run: small enough that two windows (Marketo's two slots)
    fit in what is left today at the admission's first cost per day (`estimate / overplan`), at most
    `window_days`, at least one. At 1M people a 31-day window is more than a day's share: cut to the
    share, history moves every day instead of never."""
    if estimate is None or estimate <= 0:
        return window_days
    fit = int(allowed // (estimate / overplan))
    return max(1, min(window_days, fit // SLOTS))


def leading_priority_days(days_newest_first: Sequence[str], today: str) -> int:
    """How many of the first days (newest first) are within the `PRIORITY_DAYS` before `today`: the
    last week goes right after the first sync, held back only by Marketo's own quota."""
    since = (date.fromisoformat(today) - timedelta(days=PRIORITY_DAYS)).isoformat()
    count = 0
    for day in days_newest_first:
        if not since <= day < today:
            break
        count += 1
    return count


def export_windows(days_newest_first: Sequence[str], window_days: int = MAX_WINDOW_DAYS) -> list[list[str]]:
    """Consecutive days (newest first) cut into export windows, newest first: as few windows of at most
    `window_days` as possible (small ranges merge into one), but an even number when there are two days or
    more, so Marketo's two processing slots work side by side and finish together."""
    days = list(days_newest_first)
    if not days:
        return []
    count = math.ceil(len(days) / window_days)
    if len(days) >= 2 and count % 2:
        count += 1
    size = math.ceil(len(days) / count)
    return [days[i : i + size] for i in range(0, len(days), size)]


def windows_around(
    days_newest_first: Sequence[str], window_days: int, fixed: Sequence[Sequence[str]]
) -> list[list[str]]:
    """`export_windows` of the days, except that each of the `fixed` windows (days of exports already
    paid for, any order) that lies wholly among them is kept as it is, so its request matches the export
    and reuses it. Newest first; a fixed window overlapping one taken before it is left out."""
    wanted = set(days_newest_first)
    by_newest: dict[str, list[str]] = {}
    taken: set[str] = set()
    for window in sorted((sorted(w, reverse=True) for w in fixed if w), reverse=True):
        if set(window) <= wanted and not taken & set(window):
            by_newest[window[0]] = window
            taken |= set(window)
    windows: list[list[str]] = []
    free: list[str] = []
    for day in days_newest_first:
        if day in by_newest:
            windows += [*export_windows(free, window_days), by_newest[day]]
            free = []
        elif day not in taken:
            free.append(day)
    return windows + export_windows(free, window_days)


@dataclass(frozen=True)
class HistoryPlan:
    """The history still to export and what today's budget allows of it."""

    days_left: int
    bytes_per_day: float | None
    bytes_available: int  # history's share left today (the ticks' reserve kept)
    share_per_day: int  # history's share of a whole quota day
    resets_at: datetime
    now: datetime

    @property
    def fit_today(self) -> int:
        return min(
            self.days_left, days_that_fit(self.bytes_available, self.bytes_per_day, self.share_per_day)
        )

    @property
    def quota_days_left(self) -> int | None:
        """Quota days still needed after today's (0: it all fits today); None while the cost is unknown."""
        if self.bytes_per_day is None:
            return None
        rest = max(self.days_left * self.bytes_per_day - self.bytes_available, 0.0)
        return math.ceil(rest / max(self.share_per_day, 1))

    @property
    def eta(self) -> date | None:
        """The quota day (in the quota zone) history should complete on, at this quota and share."""
        more = self.quota_days_left
        if more is None:
            return None
        today = (self.resets_at - timedelta(hours=12)).date()  # resets_at is the next midnight there
        return today + timedelta(days=more)

    def summary(self) -> str:
        if self.days_left == 0:
            return "history complete"
        cost = (
            f"{self.bytes_per_day / 1e6:,.1f} MB/day" if self.bytes_per_day else "cost per day not known yet"
        )
        more = self.quota_days_left
        when = (
            "completes today"
            if more == 0
            else f"complete in about {more + 1} days at this quota (by {self.eta})"
            if more is not None
            else "ETA after the first history run"
        )
        return (
            f"{self.days_left} days of history left ({cost}; {self.share_per_day / 1e6:,.0f} MB/day for "
            f"history at this quota); {when}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "days_left": self.days_left,
            "bytes_per_day": round(self.bytes_per_day) if self.bytes_per_day else None,
            "history_bytes_left_today": self.bytes_available,
            "history_bytes_per_day": self.share_per_day,
            "days_fit_today": self.fit_today,
            "quota_days_left": self.quota_days_left,
            "eta": self.eta.isoformat() if self.eta else None,
            "resets_at": self.resets_at.isoformat(),
            "summary": self.summary(),
        }


def history_plan(lake: Lake, missing: Sequence[str], budget: Budget, now: datetime) -> HistoryPlan:
    return HistoryPlan(
        days_left=len(missing),
        bytes_per_day=export_sizes(lake).history_per_day,
        bytes_available=budget.bytes_available("history"),
        share_per_day=budget.history_bytes_per_day,
        resets_at=budget.usage.resets_at,
        now=now,
    )


# --- the next step -----------------------------------------------------------------------------------------
def next_onboarding_step(
    lake: Lake,
    keys: Sequence[str],
    materialized: set[str],
    jobs: dict[str, str],
    budget: Budget,
    now: datetime,
    paused: tuple[datetime, str] | None = None,
) -> Step | Wait | None:
    """The first sync if it is not done, else the newest missing history that today's budget pays for,
    else None (nothing to do). `paused` is the quota stop in force, if any: then everything waits."""
    missing = missing_history(keys, materialized)
    plan = history_plan(lake, missing, budget, now) if missing else None
    plan_info = plan.as_dict() if plan else {}
    if paused:
        return Wait(
            f"Marketo quota used up; paused until {paused[0].isoformat()} (resumes by itself). "
            + (plan.summary() if plan else ""),
            paused[0],
            plan_info,
        )
    if not first_sync_done(lake):
        # Everyone first, with today's changes; the last week's activities follow at once, then history.
        return Step(
            jobs["initial"],
            "initial",
            keys[-1],
            keys[-1],
            "first sync: people, accounts, programs, memberships and today's activities",
        )
    if plan is None:
        return None
    # The last week is what people look at first: it never waits for the history share.
    priority = leading_priority_days(missing, keys[-1])
    fit = max(plan.fit_today * OVERPLAN, priority)
    if not priority and (stalled := history_paused(lake, now)):
        return Wait(
            f"history paused until {stalled[0].isoformat()} (resumes by itself): {stalled[1]}. "
            f"{plan.summary()}",
            stalled[0],
            plan_info,
        )
    if fit == 0:
        return Wait(
            f"history paused: today's export share for history is used "
            f"({plan.bytes_available / 1e6:,.1f} MB left of {plan.share_per_day / 1e6:,.0f} MB); resumes by "
            f"itself after the quota reset at {plan.resets_at.isoformat()}. {plan.summary()}",
            plan.resets_at,
            plan_info,
        )
    if plan.bytes_per_day is not None and plan.fit_today > 0:
        # With a day's cost known and some share left, the run is offered every missing day: it starts
        # each next window only while its own exports say it fits (`HistoryAdmission`), so a high first
        # estimate no longer ends it early and costs a second run.
        fit = len(missing)
    start, end = newest_run(missing, keys, fit)
    return Step(
        jobs["history"],
        "history",
        start,
        end,
        f"activity history {start}..{end}: {plan.summary()}",
        {
            DAYS_LEFT_TAG: str(plan.days_left),
            ETA_TAG: plan.eta.isoformat() if plan.eta else "unknown until the first history run",
        },
    )


def tick_range(lake: Lake, keys: Sequence[str]) -> tuple[str, str]:
    """Today, plus yesterday while its last minutes are not read yet (so midnight never delays data)."""
    days = lake.days(MARKETO_ACTIVITIES)
    today = keys[-1]
    if len(keys) > 1:
        yesterday = keys[-2]
        cursor = days.cursor(yesterday)
        if not cursor.get("closed") and cursor.get("covered_until", "") < f"{today}T00:00:00":
            return yesterday, today
    return today, today
