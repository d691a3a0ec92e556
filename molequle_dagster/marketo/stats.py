"""Call accounting: per-endpoint counters, bulk bytes and export ids, readable by callers."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_ID_SEGMENT = re.compile(r"/(\d+|[0-9a-fA-F-]{36})(?=/|\.json)")


def endpoint_key(method: str, path: str) -> str:
    """`GET /bulk/v1/leads/export/{id}/status.json`: ids folded so counters group by endpoint."""
    return f"{method.upper()} {_ID_SEGMENT.sub('/{id}', path)}"


class CallStats:
    """Thread-safe counters for one client. `snapshot()` is a plain dict; `measure()` gives a delta."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._bulk_bytes = 0
        self._exports_created: list[str] = []
        self._exports_reused: list[str] = []

    def record_call(self, key: str) -> None:
        with self._lock:
            self._calls[key] += 1

    def record_error(self, code: str) -> None:
        with self._lock:
            self._errors[code] += 1

    def record_bulk_bytes(self, n: int) -> None:
        with self._lock:
            self._bulk_bytes += n

    def record_export(self, export_id: str, *, reused: bool) -> None:
        with self._lock:
            (self._exports_reused if reused else self._exports_created).append(export_id)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": dict(self._calls),
                "total_calls": sum(self._calls.values()),
                "errors": dict(self._errors),
                "bulk_bytes": self._bulk_bytes,
                "exports_created": list(self._exports_created),
                "exports_reused": list(self._exports_reused),
            }

    @contextmanager
    def measure(self) -> Iterator[dict[str, Any]]:
        """`with stats.measure() as delta: ...` — `delta` is filled with what the block spent."""
        before = self.snapshot()
        delta: dict[str, Any] = {}
        try:
            yield delta
        finally:
            delta.update(diff(before, self.snapshot()))


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    calls = {k: v - before["calls"].get(k, 0) for k, v in after["calls"].items()}
    errors = {k: v - before["errors"].get(k, 0) for k, v in after["errors"].items()}
    return {
        "calls": {k: v for k, v in calls.items() if v},
        "total_calls": after["total_calls"] - before["total_calls"],
        "errors": {k: v for k, v in errors.items() if v},
        "bulk_bytes": after["bulk_bytes"] - before["bulk_bytes"],
        "exports_created": after["exports_created"][len(before["exports_created"]) :],
        "exports_reused": after["exports_reused"][len(before["exports_reused"]) :],
    }
