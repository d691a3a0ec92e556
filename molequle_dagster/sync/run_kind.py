"""What kind of run a step is in, from its tags: ticks read deltas through REST; the rest exports in bulk."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

KIND_TAG = "molequle/kind"
TICK, DAILY, INITIAL, HISTORY, RECONCILE = "tick", "daily", "initial", "history", "reconcile"
RECENT = timedelta(hours=6)


def run_kind(context: Any) -> str | None:
    return context.run.tags.get(KIND_TAG) if context is not None else None


def reads_rest(context: Any, keys: Sequence[str], now: datetime) -> bool:
    """A tick reads its delta through REST; so does an on-demand run of today's partition alone. The
    daily close, backfills and the first sync read whole days in bulk."""
    kind = run_kind(context)
    if kind == TICK:
        return True
    if kind is not None:
        return False
    return len(keys) == 1 and now - datetime.fromisoformat(keys[0]).replace(
        tzinfo=now.tzinfo
    ) < RECENT + timedelta(days=1)
