"""The sandbox's virtual clock: real time by default; tests freeze and advance it.

Everything time-dependent in the sandbox (token expiry, rate windows, daily quotas, bulk job progress,
file expiry, churn timestamps, activity retention) reads `SandboxClock.now()`, so two years of history,
quota resets and 30-minute ticks are testable in seconds.
"""

from __future__ import annotations

import threading
import time
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
