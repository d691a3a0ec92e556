"""The quota budget: our share of Marketo's daily call quota and export bytes, what is left of it today,
and whether a piece of work may spend it.

Marketo's quotas are the subscription's, shared with every other integration of the customer. The sync
may use `budget.call_share` of the calls and `budget.export_share` of the export bytes (half by default),
never more than what the whole instance has left (Marketo's stats/usage counts every integration). Ticks
always run; history and reconciliation are deferred as soon as they would eat into the reserve kept for
the rest of the day's ticks (`budget.tick_reserve` of our share).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from molequle_dagster.marketo.errors import next_quota_reset
from molequle_dagster.marketo.timeutil import quota_day
from molequle_dagster.settings import BudgetSettings

Kind = Literal["tick", "daily", "history", "reconcile"]


class Usage(Protocol):
    """What today's quota day spent so far (the client's `usage_today()` answers this)."""

    resets_at: datetime
    instance_calls: int | None  # every integration's calls today (None when Marketo did not say)
    our_calls: int
    our_export_bytes: int


@dataclass(frozen=True)
class Budget:
    settings: BudgetSettings
    usage: Usage

    @property
    def calls_limit(self) -> int:
        return self.settings.calls_limit

    @property
    def export_bytes_limit(self) -> int:
        return self.settings.export_bytes_limit

    @property
    def calls_left(self) -> int:
        ours = self.calls_limit - self.usage.our_calls
        if self.usage.instance_calls is None:
            return max(ours, 0)
        return max(min(ours, self.settings.daily_calls - self.usage.instance_calls), 0)

    @property
    def export_bytes_left(self) -> int:
        return max(self.export_bytes_limit - self.usage.our_export_bytes, 0)

    def allows(self, kind: Kind, calls: int = 0, export_bytes: int = 0) -> tuple[bool, str]:
        """Whether work of this kind, expected to cost this much, may run now; with the reason if not."""
        reserve = 0.0 if kind == "tick" else self.settings.tick_reserve
        calls_room = self.calls_left - reserve * self.calls_limit
        bytes_room = self.export_bytes_left - reserve * self.export_bytes_limit
        if calls > calls_room:
            return False, (
                f"{kind} deferred: needs about {calls:,} calls, {max(int(calls_room), 0):,} left today "
                "beyond the ticks' reserve; resumes after the quota reset at "
                f"{self.usage.resets_at.isoformat()}"
            )
        if export_bytes > bytes_room:
            return False, (
                f"{kind} deferred: needs about {export_bytes / 1e6:,.1f} MB of exports, "
                f"{max(bytes_room, 0) / 1e6:,.1f} MB left today beyond the ticks' reserve; resumes after the "
                f"quota reset at {self.usage.resets_at.isoformat()}"
            )
        return True, ""

    @property
    def history_bytes_per_day(self) -> int:
        """What history may export on a whole quota day: our share less the ticks' reserve."""
        return int(self.export_bytes_limit * (1 - self.settings.tick_reserve))

    def bytes_available(self, kind: Kind) -> int:
        """Export bytes work of this kind may still spend today."""
        reserve = 0.0 if kind == "tick" else self.settings.tick_reserve
        return max(int(self.export_bytes_left - reserve * self.export_bytes_limit), 0)

    def metadata(self) -> dict[str, Any]:
        """Used and left today as plain ints (Dagster records them as numeric metadata the UI plots)."""
        return {
            "budget_calls_used": int(self.usage.our_calls),
            "budget_calls_left": int(self.calls_left),
            "budget_export_bytes_used": int(self.usage.our_export_bytes),
            "budget_export_bytes_left": int(self.export_bytes_left),
            "instance_calls_today": int(self.usage.instance_calls or 0),
        }


def budget_of(client: Any, settings: BudgetSettings) -> Budget:
    return Budget(settings, client.usage_today())


@dataclass(frozen=True)
class RecordedUsage:
    """Today's usage from our own record alone (no Marketo call): what a sensor plans with."""

    resets_at: datetime
    our_calls: int
    our_export_bytes: int
    instance_calls: int | None = None


def budget_from_store(
    store: Any, instance_key: str, settings: BudgetSettings, zone: ZoneInfo, now: datetime
) -> Budget:
    """The budget as the coordination store records it (every process's calls and export bytes today),
    for planning outside a run, where no Marketo client is open."""
    day = quota_day(zone, now)
    ours = store.usage(instance_key, day)
    return Budget(settings, RecordedUsage(next_quota_reset(now, zone), ours.calls, ours.export_bytes))
