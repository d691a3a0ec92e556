"""The one clock the sync reads: real UTC time, or the Marketo sandbox's virtual clock for benchmarks.

Every "now" the sync records (watermarks, `_synced_at`, data high-water marks, quota days) comes from
`now()`, and every wait between bulk status polls goes through `sleep()`. With
`MOLEQULE_VIRTUAL_CLOCK=<sandbox base URL>` both follow the sandbox's virtual clock instead (read from,
and advanced through, its `/_sandbox/clock` control endpoint), so a benchmark can replay days of
Marketo latency and quota resets in minutes through the same code path as production.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Protocol

import requests

VIRTUAL_CLOCK_ENV = "MOLEQULE_VIRTUAL_CLOCK"
CHILDREN_REPORT_S = 0.05  # how often a parent lists its step processes (a new one holds time at once)


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
    """The sandbox's virtual clock over its control endpoint. `sleep` returns once the clock passed the
    wake-up; the sandbox moves it on only when every process that uses it is asleep (the steps of a run
    executed one process each poll side by side), to the earliest wake-up. Each call names this process,
    so the sandbox knows who is at work."""

    def __init__(self, base_url: str) -> None:
        self._url = base_url.rstrip("/") + "/_sandbox/clock"
        self._session = requests.Session()
        self._pid = os.getpid()
        self._who = f"{socket.gethostname()}:{self._pid}"

    def _http(self) -> requests.Session:
        if os.getpid() != self._pid:  # a forked process: a session of its own, under its own name
            self._session, self._pid = requests.Session(), os.getpid()
            self._who = f"{socket.gethostname()}:{self._pid}"
        return self._session

    def now(self) -> datetime:
        answer = self._http().get(self._url, params={"who": self._who}, timeout=10)
        answer.raise_for_status()
        return datetime.fromisoformat(answer.json()["now"]).astimezone(UTC).replace(microsecond=0)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            # `settle`: the sandbox finishes the export files it is writing before time moves on.
            answer = self._http().post(
                f"{self._url}/sleep", json={"seconds": seconds, "settle": True, "who": self._who}, timeout=600
            )
            answer.raise_for_status()

    def monotonic(self) -> float:
        return self.now().timestamp()

    @contextlib.contextmanager
    def children_at_work(self) -> Iterator[None]:
        """While inside, tell the sandbox which child processes this one runs (a run's steps): time
        waits for a child that is still starting, not only for one that called the clock."""
        done = threading.Event()
        session, host = requests.Session(), socket.gethostname()

        def report() -> None:
            while True:
                try:
                    pids = [p.pid for p in multiprocessing.active_children()]
                except RuntimeError:  # the executor started a process meanwhile: ask again
                    continue
                session.post(
                    f"{self._url}/children",
                    json={"who": f"{host}:{os.getpid()}", "children": [f"{host}:{p}" for p in pids]},
                    timeout=10,
                ).raise_for_status()
                if done.wait(CHILDREN_REPORT_S):
                    return

        reporter = threading.Thread(target=report, name="virtual-clock-children", daemon=True)
        reporter.start()
        try:
            yield
        finally:
            done.set()
            reporter.join(timeout=30)
            session.post(f"{self._url}/children", json={"who": f"{host}:{os.getpid()}", "children": []})


@contextlib.contextmanager
def children_at_work() -> Iterator[None]:
    """Around a run whose steps run in child processes: on the virtual clock, time waits for each step
    process until it sleeps (`SandboxVirtualClock.children_at_work`); nothing on the real clock."""
    clock = current()
    if isinstance(clock, SandboxVirtualClock):
        with clock.children_at_work():
            yield
    else:
        yield


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
