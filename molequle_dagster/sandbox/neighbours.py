"""Other integrations sharing the instance ("neighbours"): a CRM sync, a BI extract, a webinar app.

Marketo's limits belong to the subscription, not to one API user (docs/marketo.md §4.1): every integration
draws from the same 20-second window, the same 10 in-flight calls, the same daily quota, the same export
queue, the same two processing slots and the same daily export bytes. `Neighbours` is their load as a
pure function of the virtual time, consulted whenever the limiter or the export queue decides, so there
is no background thread and a frozen-clock test sees exactly the same neighbours every run.

Their calls come in bursts: active for the first part of every `call_cycle_s` at `rate_share` of the
window, idle for the rest, so that a day adds up to `daily_share` of the quota. Their exports occupy
`processing_slots` during the first `export_busy_share` of every `export_cycle_s` and keep `queue_share`
of the queue waiting; their files take `export_share` of the daily bytes, spread over the day. Every
amount scales with `level` (0: alone on the instance, the default; 1: the full load described).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from molequle_dagster.sandbox.config import SandboxConfig

DAY_S = 86_400.0


@dataclass
class Neighbours:
    config: SandboxConfig  # read at every decision: the control surface may change the level any time

    @property
    def on(self) -> bool:
        return self.config.neighbours.level > 0

    # --- calls ------------------------------------------------------------------------------------------

    def _rates(self) -> tuple[float, float]:
        """(calls per second while active, share of each call cycle that is active)."""
        s = self.config.neighbours
        burst = s.level * s.rate_share * self.config.limits.rate_calls / self.config.limits.rate_window_s
        daily = s.level * s.daily_share * self.config.limits.daily_quota
        if burst <= 0:
            return 0.0, 0.0
        return burst, min(1.0, daily / (burst * DAY_S))

    def _calls_until(self, t: float) -> float:
        """Neighbour calls made from the epoch to `t` (piecewise linear: bursts, then quiet)."""
        burst, active = self._rates()
        cycle = self.config.neighbours.call_cycle_s
        whole, into = divmod(t, cycle)
        return burst * (whole * active * cycle + min(into, active * cycle))

    def calls_in_window(self, t: float) -> int:
        """Their calls in the trailing rate window ending at `t`."""
        if not self.on:
            return 0
        window = self.config.limits.rate_window_s
        return math.floor(self._calls_until(t)) - math.floor(self._calls_until(t - window))

    def in_flight(self, t: float) -> int:
        """Calls they hold in flight: while their burst is on."""
        if not self.on:
            return 0
        _burst, active = self._rates()
        busy = (t % self.config.neighbours.call_cycle_s) < active * self.config.neighbours.call_cycle_s
        return (
            round(
                self.config.neighbours.level
                * self.config.neighbours.in_flight_share
                * self.config.limits.max_in_flight
            )
            if busy
            else 0
        )

    def calls_today(self, now: datetime) -> dict[str, int]:
        """Their calls since the quota day began (midnight in the quota zone), per neighbour API user."""
        return self.calls_between(self._midnight(now), now)

    def _midnight(self, now: datetime) -> datetime:
        zone = ZoneInfo(self.config.limits.quota_timezone)
        local = now.astimezone(zone)
        return datetime(local.year, local.month, local.day, tzinfo=zone)

    def calls_between(self, start: datetime, end: datetime) -> dict[str, int]:
        """Their calls in [start, end), per neighbour API user (a past quota day in usage statistics)."""
        if not self.on:
            return {}
        total = math.floor(self._calls_until(end.timestamp())) - math.floor(
            self._calls_until(start.timestamp())
        )
        return _split(total, self.config.neighbours.users)

    # --- bulk exports -------------------------------------------------------------------------------------

    def processing(self, at: datetime) -> int:
        """Processing slots their export jobs hold at `at`."""
        if not self.on:
            return 0
        s = self.config.neighbours
        busy = (at.timestamp() % s.export_cycle_s) < s.export_busy_share * s.export_cycle_s
        return min(self.config.bulk.processing_slots, round(s.level * s.processing_slots)) if busy else 0

    def queued(self, at: datetime) -> int:
        """Places in the shared export queue their jobs hold (waiting and processing)."""
        if not self.on:
            return 0
        waiting = round(
            self.config.neighbours.level * self.config.neighbours.queue_share * self.config.bulk.queue_slots
        )
        return min(self.config.bulk.queue_slots, waiting + self.processing(at))

    def next_export_change(self, after: datetime) -> datetime:
        """The next moment after `after` at which the slots they hold change (a busy phase starts or ends)."""
        s = self.config.neighbours
        t = after.timestamp()
        start = math.floor(t / s.export_cycle_s) * s.export_cycle_s
        for edge in (start + s.export_busy_share * s.export_cycle_s, start + s.export_cycle_s):
            if edge > t:
                return after + timedelta(seconds=edge - t)
        return after + timedelta(seconds=start + 2 * s.export_cycle_s - t)

    def export_bytes_today(self, now: datetime) -> int:
        """Bytes their files took from today's export quota so far (spread evenly over the day)."""
        if not self.on:
            return 0
        elapsed = (now - self._midnight(now)).total_seconds() / DAY_S
        share = self.config.neighbours.level * self.config.neighbours.export_share
        return int(share * self.config.bulk.daily_export_bytes * min(1.0, max(0.0, elapsed)))

    def snapshot(self, now: datetime) -> dict[str, object]:
        """Their load now, for the control surface."""
        t = now.timestamp()
        return {
            "level": self.config.neighbours.level,
            "calls_in_window": self.calls_in_window(t),
            "in_flight": self.in_flight(t),
            "calls_today": self.calls_today(now),
            "exports_processing": self.processing(now),
            "exports_queued": self.queued(now),
            "export_bytes_today": self.export_bytes_today(now),
        }


def _split(total: int, users: list[str]) -> dict[str, int]:
    """A total shared among users in fixed proportions (the first one makes most calls)."""
    weights = [len(users) - i for i in range(len(users))]
    counts = [total * w // sum(weights) for w in weights]
    counts[0] += total - sum(counts)
    return {user: count for user, count in zip(users, counts, strict=True) if count}
