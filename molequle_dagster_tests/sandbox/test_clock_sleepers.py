"""The virtual clock with several processes waiting on it (a run's steps, one process each): time jumps
only once every process is asleep, to the earliest wake-up, so one step's skipped poll never runs the
clock on while another step works; export files settle before each jump."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from molequle_dagster.sandbox.clock import SandboxClock, Sleepers

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Sleeper:
    """`who` sleeping `seconds` in a thread of its own; `woke` is the virtual time it returned at."""

    def __init__(self, sleepers: Sleepers, who: str, seconds: float, settle) -> None:
        self.woke: datetime | None = None
        self._thread = threading.Thread(target=self._run, args=(sleepers, who, seconds, settle), daemon=True)
        self._thread.start()

    def _run(self, sleepers: Sleepers, who: str, seconds: float, settle) -> None:
        self.woke = sleepers.sleep(who, seconds, settle)

    def wait(self) -> datetime | None:
        self._thread.join(timeout=30)  # a guard only: the jump it waits for is immediate
        return self.woke


def test_the_clock_jumps_only_when_every_process_is_asleep_and_to_the_earliest_wake_up() -> None:
    clock = SandboxClock(frozen_at=T0)
    sleepers = Sleepers(clock, lease_s=120.0)  # nobody drops out during the test
    settled: list[datetime] = []
    settle = lambda: settled.append(clock.now())  # noqa: E731

    sleepers.seen("b")  # b is at work
    a = Sleeper(sleepers, "a", 60, settle)
    assert sleepers.wait_asleep(1)
    assert clock.now() == T0 and not settled  # b works: a's wait does not run the clock on
    b = Sleeper(sleepers, "b", 100, settle)
    assert a.wait() == T0 + timedelta(seconds=60)  # both asleep: to the earliest wake-up, a's
    assert clock.now() == T0 + timedelta(seconds=60) and settled == [T0]
    assert sleepers.wait_asleep(1)  # b still waits: a is at work again
    a = Sleeper(sleepers, "a", 50, settle)
    assert b.wait() == T0 + timedelta(seconds=100)  # b's wake-up came first this time
    b = Sleeper(sleepers, "b", 10, settle)
    assert a.wait() == b.wait() == T0 + timedelta(seconds=110)
    assert clock.now() == T0 + timedelta(seconds=110)


def test_a_process_that_stopped_calling_the_clock_no_longer_holds_time_back() -> None:
    clock = SandboxClock(frozen_at=T0)
    sleepers = Sleepers(clock, lease_s=0.05)
    sleepers.seen("finished")  # a step process that ended (or was killed) after its last call
    alone = Sleeper(sleepers, "a", 60, lambda: None)
    assert alone.wait() == T0 + timedelta(seconds=60)


def test_a_child_process_still_starting_holds_time_until_it_sleeps() -> None:
    """A run's parent lists its step processes: one that has not called the clock yet (still importing)
    is at work, so another step's poll does not skip its minutes; once it sleeps too, time jumps."""
    clock = SandboxClock(frozen_at=T0)
    sleepers = Sleepers(clock, lease_s=120.0)
    sleepers.children("parent", ["a", "starting"])
    a = Sleeper(sleepers, "a", 60, lambda: None)
    assert sleepers.wait_asleep(1)
    assert clock.now() == T0  # "starting" never called the clock, yet it holds time
    starting = Sleeper(sleepers, "starting", 90, lambda: None)
    assert a.wait() == T0 + timedelta(seconds=60)
    again = Sleeper(sleepers, "a", 30, lambda: None)
    assert again.wait() == starting.wait() == T0 + timedelta(seconds=90)


def test_a_child_that_left_its_parents_list_drops_out_after_the_lease() -> None:
    clock = SandboxClock(frozen_at=T0)
    sleepers = Sleepers(clock, lease_s=0.05)
    sleepers.children("parent", ["gone"])
    sleepers.children("parent", [])  # it ended; the parent starts the next steps within the lease
    alone = Sleeper(sleepers, "a", 60, lambda: None)
    assert alone.wait() == T0 + timedelta(seconds=60)
