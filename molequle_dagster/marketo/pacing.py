"""Pacing shared by every process that uses the same coordination store (Dagster runs steps in separate
processes, and production runs them on several hosts): at most N calls per trailing window, M in flight.

* Rate: a call counts from the moment it is admitted until `window_s` after it *finished*, so however
  long the request takes on the wire, Marketo can never see more than N of our calls inside any window
  (admission <= server arrival <= completion).
* In flight: M slots in the store; a dead process's slots are free at once (fcntl locally, session
  advisory locks on PostgreSQL).
* Bulk downloads hold an in-flight slot until the body has streamed (Marketo counts the call as in
  flight that long), but only M-1 downloads may do so at once (M-1 "download permits", taken before the
  slot): one slot always stays for ordinary calls, so a process streaming a file can still make its
  other calls and nothing deadlocks. One thread must read its downloads one after the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from molequle_dagster.coordination import CoordinationStore, Slot
from molequle_dagster.marketo.config import PacingConfig

# A call never finished (its process died) stops counting after this: no call outlives the longest
# client timeout (600 s) plus the window, so it cannot still be in flight at Marketo.
STALE_IN_FLIGHT_S = 900.0


class CrossProcessPacer:
    def __init__(
        self,
        store: CoordinationStore,
        instance: str,
        config: PacingConfig,
        *,
        usage_day: Callable[[], str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._store = store
        self._instance = instance
        self._config = config
        self._usage_day = usage_day  # the quota day each admitted call is counted on
        self._sleep = sleep  # real waits: the window is real time on Marketo's side

    @contextmanager
    def call(self) -> Iterator[None]:
        """Hold one in-flight slot and one place in the rate window for the duration of a request."""
        with self.in_flight_slot(), self.rate_only():
            yield

    @contextmanager
    def rate_only(self) -> Iterator[None]:
        """A place in the rate window for a request made under a slot its caller already holds."""
        ticket = self._admit()
        try:
            yield
        finally:
            self._store.finish_call(ticket)

    @contextmanager
    def in_flight_slot(self) -> Iterator[None]:
        with self._held(f"{self._instance}:call", self._config.max_in_flight):
            yield

    @contextmanager
    def download_slot(self) -> Iterator[None]:
        """An in-flight slot for the whole life of a bulk download (never the last free one)."""
        with (
            self._held(f"{self._instance}:download", self._config.max_downloads),
            self._held(f"{self._instance}:call", self._config.max_in_flight),
        ):
            yield

    @contextmanager
    def _held(self, pool: str, count: int) -> Iterator[None]:
        slot: Slot | None
        while (slot := self._store.try_slot(pool, count)) is None:
            self._sleep(self._config.slot_poll_s)
        with slot:
            yield

    def _admit(self) -> int:
        day = self._usage_day() if self._usage_day is not None else None
        while True:
            admission = self._store.try_admit_call(
                self._instance,
                limit=self._config.calls_per_20s,
                window_s=self._config.window_s,
                stale_after_s=STALE_IN_FLIGHT_S,
                usage_day=day,
            )
            if admission.ticket is not None:
                return admission.ticket
            # Until the earliest finished call leaves the window; all in flight: poll briefly.
            self._sleep(max(admission.wait_s, self._config.slot_poll_s, 0.001))
