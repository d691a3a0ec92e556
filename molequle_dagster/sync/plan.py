"""What the automation runs next, decided the same way by the daemon (sensors, schedules) and by
`molequle sync`: the first sync, then activity history newest first, and ticks once the first sync is in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from molequle_dagster.lake import Lake

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
POPULATION = "marketo_people_population"
MARKETO_ACTIVITIES = "marketo_activities"


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
    reason: str


def first_sync_done(lake: Lake) -> bool:
    return bool(lake.keyed(POPULATION, "id").meta.get("full_at"))


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


def next_onboarding_step(
    lake: Lake,
    keys: Sequence[str],
    materialized: set[str],
    history_days_per_run: int,
    jobs: dict[str, str],
    paused: tuple[datetime, str] | None = None,
) -> Step | Wait | None:
    """The first sync if it is not done, else the newest missing history, else None (nothing to do).
    `paused` is the quota stop in force, if any: then everything waits for the reset."""
    if paused:
        return Wait(f"Marketo quota used up; paused until {paused[0].isoformat()} (resumes by itself)")
    if not first_sync_done(lake):
        # Everyone first, with today's changes; the history runs that follow start with the newest days.
        return Step(
            jobs["initial"],
            "initial",
            keys[-1],
            keys[-1],
            "first sync: people, accounts, programs, memberships and today's activities",
        )
    missing = missing_history(keys, materialized)
    if not missing:
        return None
    start, end = newest_run(missing, keys, history_days_per_run)
    return Step(
        jobs["history"],
        "history",
        start,
        end,
        f"activity history {start}..{end} ({len(missing)} days left)",
        {"molequle/history_days_left": str(len(missing))},
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
