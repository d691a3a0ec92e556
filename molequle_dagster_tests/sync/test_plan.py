"""The onboarding plan in bytes: windows for both slots, days that fit today's history share, the last
week first, and a pause that says when it resumes and when history should be complete."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from molequle_dagster.budget import Budget
from molequle_dagster.lake import Lake
from molequle_dagster.settings import BudgetSettings
from molequle_dagster.sync.plan import (
    EXPORT_SIZES,
    FIRST_HISTORY_DAYS,
    OVERPLAN,
    PRIORITY_DAYS,
    HistoryAdmission,
    HistoryPlan,
    Step,
    Wait,
    budget_window_days,
    days_that_fit,
    export_sizes,
    export_windows,
    leading_priority_days,
    mark_first_sync_done,
    next_onboarding_step,
    pause_history,
    record_export_sizes,
    windows_around,
)
from molequle_dagster.sync.windows import paid_windows, window_requests

MB = 1024 * 1024
CHICAGO = ZoneInfo("America/Chicago")
JOBS = {"initial": "initial_job", "history": "history_job"}


@dataclass(frozen=True)
class Used:
    resets_at: datetime
    our_export_bytes: int
    our_calls: int = 0
    instance_calls: int | None = None


def days_back(today: date, count: int) -> list[str]:
    """`count` daily keys ending with `today` (the last key), oldest first, as the partitions list them."""
    return [(today - timedelta(days=count - 1 - i)).isoformat() for i in range(count)]


@pytest.mark.parametrize("count", [1, 2, 3, 31, 32, 62, 63, 93, 730])
def test_windows_cover_every_day_once_newest_first_at_most_31_days_an_even_number(count: int) -> None:
    days = list(reversed(days_back(date(2026, 12, 1), count)))
    windows = export_windows(days)
    assert [d for w in windows for d in w] == days
    assert all(1 <= len(w) <= 31 for w in windows)
    assert len(windows) % 2 == 0 or count == 1
    # as few windows as the rules allow: merging any two would break one of them
    assert len(windows) <= max(2, -(-count // 31) + 1)


def test_days_that_fit_follow_the_bytes_left_and_never_stall_on_a_costly_day() -> None:
    assert days_that_fit(100 * MB, 10 * MB, 175 * MB) == 10
    assert days_that_fit(9 * MB, 10 * MB, 175 * MB) == 0
    assert days_that_fit(0, None, 175 * MB) == 0
    assert days_that_fit(1, None, 175 * MB) == FIRST_HISTORY_DAYS  # a first run measures the cost
    # one day costs more than a whole day's share: alone, while at least half the share is left
    assert days_that_fit(100 * MB, 200 * MB, 175 * MB) == 1
    assert days_that_fit(80 * MB, 200 * MB, 175 * MB) == 0


def test_the_last_week_counts_from_the_newest_missing_day() -> None:
    today = "2026-12-10"
    newest_first = [(date(2026, 12, 9) - timedelta(days=i)).isoformat() for i in range(20)]
    assert leading_priority_days(newest_first, today) == PRIORITY_DAYS
    assert leading_priority_days(newest_first[3:], today) == PRIORITY_DAYS - 3
    assert leading_priority_days(newest_first[PRIORITY_DAYS:], today) == 0


def test_the_eta_counts_the_quota_days_history_still_needs() -> None:
    resets = datetime(2026, 12, 2, tzinfo=CHICAGO)
    plan = HistoryPlan(
        days_left=100,
        bytes_per_day=10 * MB,
        bytes_available=50 * MB,
        share_per_day=175 * MB,
        resets_at=resets,
        now=resets - timedelta(hours=3),
    )
    # 1000 MB needed, 50 today, then 175 a day: 950 / 175 -> 6 more quota days
    assert plan.fit_today == 5
    assert plan.quota_days_left == 6
    assert plan.eta == date(2026, 12, 7)
    assert "complete in about 7 days" in plan.summary() and "2026-12-07" in plan.summary()


def test_export_sizes_accumulate_in_the_lake(tmp_path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    assert export_sizes(lake).bytes_per_day is None
    record_export_sizes(lake, 6 * MB, 43_200)  # half a day
    record_export_sizes(lake, 4 * MB, 43_200)
    assert export_sizes(lake).bytes_per_day == pytest.approx(10 * MB)
    assert lake.keyed(EXPORT_SIZES, "day").meta["bytes"] == 10 * MB


def onboarded_lake(tmp_path, bytes_per_day: int) -> Lake:
    lake = Lake(str(tmp_path / "lake"))
    lake.keyed("marketo_people_population", "id").commit(meta={"full_at": "2026-12-10T08:00:00+00:00"})
    mark_first_sync_done(lake, "initial-run", datetime(2026, 12, 10, 9, 0, tzinfo=UTC))
    record_export_sizes(lake, bytes_per_day, 86_400)
    return lake


def test_the_population_alone_is_not_a_finished_first_sync(tmp_path) -> None:
    """A first sync killed once its smart list was in: the plan runs it again (it finishes the other
    tables), until the onboarding plan marks the lake once a first-sync run succeeded."""
    now = datetime(2026, 12, 10, 15, 0, tzinfo=UTC)
    keys = days_back(date(2026, 12, 10), 30)
    lake = Lake(str(tmp_path / "lake"))
    lake.keyed("marketo_people_population", "id").commit(meta={"full_at": "2026-12-10T08:00:00+00:00"})
    step = next_onboarding_step(lake, keys, {keys[-1]}, JOBS, budget(0, now), now)
    assert isinstance(step, Step) and step.kind == "initial" and step.start == step.end == keys[-1]
    mark_first_sync_done(lake, "initial-run", now)
    step = next_onboarding_step(lake, keys, {keys[-1]}, JOBS, budget(0, now), now)
    assert isinstance(step, Step) and step.kind == "history"


def budget(used_mb: float, now: datetime) -> Budget:
    resets = datetime.combine(
        now.astimezone(CHICAGO).date() + timedelta(days=1), datetime.min.time(), CHICAGO
    )
    return Budget(BudgetSettings(), Used(resets, int(used_mb * MB)))


def test_history_runs_take_what_todays_share_pays_for_and_pause_with_the_reset_time(tmp_path) -> None:
    now = datetime(2026, 12, 10, 15, 0, tzinfo=UTC)
    keys = days_back(date(2026, 12, 10), 200)
    lake = onboarded_lake(tmp_path, 10 * MB)
    recent = set(keys[-1 - PRIORITY_DAYS : -1])  # the last week is in already
    # 500 MB x 0.5 share = 250 MB, 30% kept for ticks: 175 MB for history; 100 MB used today -> 75 MB
    step = next_onboarding_step(lake, keys, recent | {keys[-1]}, JOBS, budget(100, now), now)
    assert isinstance(step, Step) and step.kind == "history"
    # 75 MB / 10 MB a day fit: the run is offered every missing day, newest first, and its own exports
    # decide how far back it goes (HistoryAdmission)
    assert (step.start, step.end) == (keys[0], keys[-2 - PRIORITY_DAYS])
    assert step.tags["molequle/history_eta"]
    # the share is spent: a pause that says when it resumes, nothing launched
    spent = next_onboarding_step(lake, keys, recent | {keys[-1]}, JOBS, budget(170, now), now)
    assert isinstance(spent, Wait)
    assert spent.resumes_at == datetime(2026, 12, 11, tzinfo=CHICAGO)
    assert "resumes by itself" in spent.reason and "2026-12-11T00:00:00-06:00" in spent.reason
    assert spent.plan["days_left"] == len(keys) - 1 - PRIORITY_DAYS and spent.plan["eta"]


def test_the_last_week_goes_first_whatever_is_left_of_the_share(tmp_path) -> None:
    now = datetime(2026, 12, 10, 15, 0, tzinfo=UTC)
    keys = days_back(date(2026, 12, 10), 200)
    lake = onboarded_lake(tmp_path, 10 * MB)
    step = next_onboarding_step(lake, keys, {keys[-1]}, JOBS, budget(250, now), now)
    assert isinstance(step, Step)
    assert (step.start, step.end) == (keys[-1 - PRIORITY_DAYS], keys[-2])


def test_a_quota_stop_pauses_everything_until_the_reset(tmp_path) -> None:
    now = datetime(2026, 12, 10, 15, 0, tzinfo=UTC)
    keys = days_back(date(2026, 12, 10), 30)
    lake = Lake(str(tmp_path / "lake"))  # not even the first sync is done
    reset = datetime(2026, 12, 11, tzinfo=CHICAGO)
    step = next_onboarding_step(lake, keys, set(), JOBS, budget(0, now), now, (reset, "1029"))
    assert isinstance(step, Wait) and step.resumes_at == reset and "paused until" in step.reason
    first = next_onboarding_step(lake, keys, set(), JOBS, budget(0, now), now)
    assert isinstance(first, Step) and first.kind == "initial" and first.start == first.end == keys[-1]


def test_a_history_run_starts_each_next_window_while_its_own_exports_say_it_fits() -> None:
    windows = [[f"d{w}-{i}" for i in range(10)] for w in range(6)]  # six windows of ten days
    # The lake's estimate (runs high) over OVERPLAN: 10 MB a day before anything lands; 250 MB allowed.
    admit = HistoryAdmission(windows, 250 * MB, 10 * MB * OVERPLAN, priority=7)
    assert admit(0) and admit(1)  # 0 holds priority days; 0+1: 200 MB at 10 MB a day
    assert not admit(2)  # 300 MB would pass the budget on the first guess
    # the newest window cost 10 MB a day, the next (older) 1 MB a day: the last two say 5.5 MB a day
    admit.landed(0, 100 * MB, (100 * MB, 10 * 86_400.0))
    admit.landed(1, 110 * MB, (10 * MB, 10 * 86_400.0))
    assert admit(2) and admit(3)  # 110 + 2 x 55 MB = 220 MB
    assert not admit(4)  # 110 + 3 x 55 = 275 MB
    # a reused export cost nothing and says nothing about the cost of a day
    admit.landed(2, 110 * MB, None)
    assert admit.bytes_per_day() == pytest.approx(5.5 * MB)


def test_a_history_run_of_unknown_cost_goes_one_window_at_a_time_and_the_last_week_always_goes() -> None:
    windows = [["a", "b"], ["c", "d"], ["e", "f"]]
    admit = HistoryAdmission(windows, 0, None, priority=3)
    assert admit(0) and admit(1)  # the priority days, whatever the budget
    assert not admit(2)  # unknown cost, nothing allowed, not the next one consumed
    unknown = HistoryAdmission(windows, 100 * MB, None)
    assert unknown(0) and not unknown(1)
    unknown.landed(0, 0, None)
    assert unknown(1)


def test_windows_are_cut_to_todays_share_so_a_big_instance_moves_every_day() -> None:
    """1M people: ~38 MB a day by the lake's estimate, 175 MB of history share. A 31-day window (about
    590 MB at the admission's first cost) never fitted, and the run started none, again and again."""
    assert budget_window_days(175 * MB, 38 * MB, 31) == 4  # two windows of 4 days: 152 MB at 19 MB/day
    assert budget_window_days(175 * MB, 1 * MB, 31) == 31  # a small instance keeps Marketo's 31 days
    assert budget_window_days(175 * MB, None, 31) == 31  # cost unknown: the first run measures it
    assert budget_window_days(10 * MB, 38 * MB, 31) == 1  # never below one day
    windows = export_windows([f"d{i}" for i in range(20)], budget_window_days(175 * MB, 38 * MB, 31))
    admit = HistoryAdmission(windows, 175 * MB, 38 * MB)
    assert admit(0) and admit(1) and not admit(2)  # both slots busy, within the share


def test_a_lone_day_costlier_than_the_whole_share_still_goes_first() -> None:
    windows = [["a"], ["b"]]
    admit = HistoryAdmission(windows, 150 * MB, 800 * MB * OVERPLAN, share_per_day=175 * MB)
    assert admit(0) and not admit(1)  # alone, with more than half the share left
    assert not HistoryAdmission(windows, 50 * MB, 800 * MB * OVERPLAN, share_per_day=175 * MB)(0)


def test_a_run_that_found_no_window_to_fit_pauses_history_until_the_reset(tmp_path) -> None:
    now = datetime(2026, 12, 10, 15, 0, tzinfo=UTC)
    keys = days_back(date(2026, 12, 10), 200)
    lake = onboarded_lake(tmp_path, 10 * MB)
    done = set(keys[-1 - PRIORITY_DAYS :])  # the last week and today are in
    assert isinstance(next_onboarding_step(lake, keys, done, JOBS, budget(100, now), now), Step)
    reset = datetime(2026, 12, 11, tzinfo=CHICAGO)
    pause_history(lake, reset, "the history share (1.0 MB left) does not cover the next window")
    waiting = next_onboarding_step(lake, keys, done, JOBS, budget(100, now), now)
    assert isinstance(waiting, Wait) and waiting.resumes_at == reset
    assert "does not cover the next window" in waiting.reason and "resumes by itself" in waiting.reason
    after = reset + timedelta(minutes=1)
    assert isinstance(next_onboarding_step(lake, keys, done, JOBS, budget(0, after), after), Step)
    # the last week never waits for it
    assert isinstance(next_onboarding_step(lake, keys, {keys[-1]}, JOBS, budget(100, now), now), Step)


def test_windows_already_paid_for_are_kept_so_the_next_run_reuses_them() -> None:
    """A quota stop ended a run while one of its exports completed: the run after the reset cuts its
    windows around that export's days, so its request is the same and nothing is paid twice."""
    days = days_back(date(2026, 11, 30), 30)[::-1]  # newest first
    paid_days = ["2026-11-20", "2026-11-21", "2026-11-22"]
    now = datetime(2026, 12, 2, tzinfo=UTC)
    requests = window_requests([paid_days], [7, 1], now)
    ledger = [{"entity": "activities", "format": "CSV", **r} for r in requests]
    paid = paid_windows(ledger, [1, 7])
    assert paid == [paid_days]
    assert paid_windows(ledger, [1, 6, 7]) == []  # other types: another request
    windows = windows_around(days, 7, [*paid, ["2026-11-21"], ["2026-12-01"]])  # overlapping, not wanted
    assert sorted(paid_days, reverse=True) in windows
    assert sorted(d for w in windows for d in w) == sorted(days)  # every day once
    assert all(len(w) <= 7 for w in windows)
    assert [w[0] for w in windows] == sorted((w[0] for w in windows), reverse=True)  # newest first
    assert windows_around(days, 31, []) == export_windows(days, 31)


def test_the_frontier_of_history_bounds_what_older_days_cost(tmp_path) -> None:
    """The average of every export is dominated by the first sync's and the last week's days (at 1M
    people 38 MB a day); what the latest history step paid per day bounds the older days still missing."""
    lake = Lake(str(tmp_path / "lake"))
    record_export_sizes(lake, 7 * 38 * MB, 7 * 86_400.0)  # the first sync and the week: not history
    assert export_sizes(lake).frontier_per_day is None
    assert export_sizes(lake).history_per_day == pytest.approx(38 * MB)
    record_export_sizes(lake, 10 * 12 * MB, 10 * 86_400.0, oldest_day="2026-10-01")  # older, 12 MB a day
    sizes = export_sizes(lake)
    assert sizes.frontier_per_day == pytest.approx(12 * MB)
    assert sizes.history_per_day == sizes.frontier_per_day
    assert sizes.bytes_per_day == pytest.approx((7 * 38 + 10 * 12) / 17 * MB)
    record_export_sizes(lake, 38 * MB, 86_400.0)  # the daily close of yesterday moves no frontier
    assert export_sizes(lake).frontier_per_day == pytest.approx(12 * MB)
    # nor does a history run of newer days (yesterday, when no close ran: at 1M people its few bytes
    # priced the whole history at nothing and four 31-day windows went at once, 1.5 GB in a quota day)
    record_export_sizes(lake, 1024, 86_400.0, oldest_day="2026-12-03")
    assert export_sizes(lake).frontier_per_day == pytest.approx(12 * MB)
    record_export_sizes(lake, 5 * 2 * MB, 5 * 86_400.0, oldest_day="2026-09-01")  # further back
    assert export_sizes(lake).frontier_per_day == pytest.approx(2 * MB)
