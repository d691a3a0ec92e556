"""The one clock the sync reads: real UTC time, or the Marketo sandbox's virtual clock for benchmarks.

Every "now" the sync records (watermarks, `_synced_at`, data high-water marks, quota days) comes from
`now()`, and every wait between bulk status polls goes through `sleep()`. With
`MOLEQULE_VIRTUAL_CLOCK=<sandbox base URL>` both follow the sandbox's virtual clock instead (read from,
and advanced through, its `/_sandbox/clock` control endpoint), so a benchmark can replay days of
Marketo latency and quota resets in minutes through the same code path as production.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Protocol

import requests

VIRTUAL_CLOCK_ENV = "MOLEQULE_VIRTUAL_CLOCK"


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC).replace(microsecond=0)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def monotonic(self) -> float:
        return time.monotonic()


class SandboxVirtualClock:
    """The sandbox's virtual clock over its control endpoint: `sleep` advances it (one sleeper at a time:
    a benchmark runs the sync in one process, where the bulk engine polls all its jobs in one loop)."""

    def __init__(self, base_url: str) -> None:
        self._url = base_url.rstrip("/") + "/_sandbox/clock"
        self._session = requests.Session()

    def now(self) -> datetime:
        answer = self._session.get(self._url, timeout=10)
        answer.raise_for_status()
        return datetime.fromisoformat(answer.json()["now"]).astimezone(UTC).replace(microsecond=0)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            # `settle`: the sandbox finishes the export files it is writing before time moves on.
            answer = self._session.post(
                f"{self._url}/advance", json={"seconds": seconds, "settle": True}, timeout=130
            )
            answer.raise_for_status()

    def monotonic(self) -> float:
        return self.now().timestamp()


_SYSTEM = SystemClock()
_virtual: dict[str, SandboxVirtualClock] = {}


def current() -> Clock:
    url = os.environ.get(VIRTUAL_CLOCK_ENV)
    if not url:
        return _SYSTEM
    if url not in _virtual:
        _virtual[url] = SandboxVirtualClock(url)
    return _virtual[url]


def now() -> datetime:
    """UTC now, second precision (Marketo's filters and timestamps have no sub-seconds)."""
    return current().now()


def sleep(seconds: float) -> None:
    current().sleep(seconds)
