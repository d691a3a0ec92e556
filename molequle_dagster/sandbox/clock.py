"""The sandbox's virtual clock: real time by default; tests freeze and advance it.

Everything time-dependent in the sandbox (token expiry, rate windows, daily quotas, bulk job progress,
file expiry, churn timestamps, activity retention) reads `SandboxClock.now()`, so two years of history,
quota resets and 30-minute ticks are testable in seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class SandboxClock:
    def __init__(self, frozen_at: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._frozen_at: datetime | None = None
        self._offset = timedelta(0)  # added to real time while running
        if frozen_at is not None:
            self.freeze(frozen_at)

    def now(self) -> datetime:
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return datetime.now(UTC) + self._offset

    def monotonic(self) -> float:
        """Seconds on the virtual timeline, for durations (rate windows, job progress)."""
        return self.now().timestamp()

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    def freeze(self, at: datetime | None = None) -> datetime:
        """Stop the clock at `at` (or at the current virtual time)."""
        target = at if at is not None else self.now()
        if target.tzinfo is None:
            raise ValueError("freeze(at=...): a timezone-aware datetime is required")
        with self._lock:
            self._frozen_at = target.astimezone(UTC)
            return self._frozen_at

    def unfreeze(self) -> None:
        """Let time run again from the current virtual time."""
        with self._lock:
            if self._frozen_at is not None:
                self._offset = self._frozen_at - datetime.now(UTC)
                self._frozen_at = None

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("advance(seconds=...): the clock only moves forward")
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += timedelta(seconds=seconds)
                return self._frozen_at
            self._offset += timedelta(seconds=seconds)
            return datetime.now(UTC) + self._offset

    def sleep(self, seconds: float) -> None:
        """Server-side waits (slow-response faults): real sleep, since they must delay the wire."""
        time.sleep(seconds)


class Sleepers:
    """The processes that wait on the virtual clock (`POST /_sandbox/clock/sleep`), e.g. the steps of a run
    executed one process each. Time jumps only once every process seen lately is asleep, and then only to
    the earliest wake-up among them: one process's skipped wait must not run the clock on while another
    is at work (parsing a file, committing), or that work would take minutes of Marketo time. A process
    counts as awake for `lease_s` of real time after its last clock call, so one that finished (or was
    killed) stops holding the others back. A parent that runs steps in child processes lists them
    (`children`): a listed child is awake until it sleeps, also while it is still starting and has not
    called the clock yet, and for `lease_s` after it left the list (its parent starts the steps that
    waited for it meanwhile). With a single process this is a plain advance."""

    def __init__(self, clock: SandboxClock, lease_s: float = 3.0) -> None:
        self._clock = clock
        self._lease_s = lease_s
        self._changed = threading.Condition()
        self._seen: dict[str, float] = {}  # process -> real time of its last clock call
        self._asleep: dict[str, datetime] = {}  # process -> virtual time it wakes up
        self._children: dict[str, set[str]] = {}  # parent -> its live child processes

    def seen(self, who: str) -> None:
        with self._changed:
            self._seen[who] = time.monotonic()

    def children(self, parent: str, children: list[str]) -> None:
        """`parent`'s live child processes now (it does not count as awake by saying so)."""
        with self._changed:
            real = time.monotonic()
            self._children[parent] = set(children)
            for child in children:
                self._seen[child] = real
            self._changed.notify_all()

    def sleep(self, who: str, seconds: float, settle: Callable[[], object] = lambda: None) -> datetime:
        """Return once the clock passed now + `seconds`; `settle()` runs before each jump (the export files
        being written are finished first)."""
        with self._changed:
            until = self._clock.now() + timedelta(seconds=seconds)
            self._asleep[who] = until
            self._changed.notify_all()  # the last one to fall asleep lets time jump
            try:
                while (now := self._clock.now()) < until:
                    real = time.monotonic()
                    awake = self._awake(real)
                    if any(at <= now for at in self._asleep.values()):
                        self._changed.wait(timeout=self._lease_s)  # one is waking up: it will be at work
                        continue
                    if not awake:
                        self._changed.release()  # settling takes real time: clock calls go on meanwhile
                        try:
                            settle()
                        finally:
                            self._changed.acquire()
                        if self._awake(time.monotonic()):
                            continue  # somebody woke up while the files settled
                        earliest = min(self._asleep.values())
                        self._clock.advance(max((earliest - self._clock.now()).total_seconds(), 0.0))
                        self._changed.notify_all()
                        continue
                    # Until an awake process's lease ends, or real time reaches the wake-up.
                    wait = min(min(awake) + self._lease_s - real, (until - now).total_seconds())
                    self._changed.wait(timeout=min(max(wait, 0.01), self._lease_s))
                return now
            finally:
                del self._asleep[who]
                self._seen[who] = time.monotonic()
                self._changed.notify_all()

    def wait_asleep(self, count: int, timeout: float = 10.0) -> bool:
        """Block until `count` processes are asleep (tests); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._asleep) >= count, timeout=timeout)

    def _awake(self, real: float) -> list[float]:
        """When the processes awake now made their last clock call."""
        listed = set().union(*self._children.values())
        return [
            real if p in listed else at
            for p, at in self._seen.items()
            if p not in self._asleep and (p in listed or real - at < self._lease_s)
        ]
