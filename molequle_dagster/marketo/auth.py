"""Access tokens: one cached token per (instance, client id) for the whole process (§1).

Marketo hands back the same token until it expires, so processes and clients share nothing but the
identity endpoint; within a process every client for the same credentials reuses the cached token and
refreshes it 60 s before expiry.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

REFRESH_MARGIN_S = 60.0


@dataclass
class CachedToken:
    value: str
    expires_at: float  # time.monotonic() seconds

    def fresh(self, now: float) -> bool:
        return self.expires_at - now > REFRESH_MARGIN_S


class TokenCache:
    """Process-wide: keyed by (base_url, client_id) so two sandboxes in one test process never collide."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], CachedToken] = {}

    def get(self, key: tuple[str, str]) -> CachedToken | None:
        with self._lock:
            token = self._tokens.get(key)
        return token if token is not None and token.fresh(time.monotonic()) else None

    def put(self, key: tuple[str, str], value: str, expires_in: float) -> CachedToken:
        token = CachedToken(value, time.monotonic() + expires_in)
        with self._lock:
            self._tokens[key] = token
        return token

    def invalidate(self, key: tuple[str, str], value: str) -> None:
        """Drop the token only if it is still the one that failed (another thread may have refreshed)."""
        with self._lock:
            current = self._tokens.get(key)
            if current is not None and current.value == value:
                del self._tokens[key]

    def known_values(self) -> list[str]:
        with self._lock:
            return [t.value for t in self._tokens.values()]


TOKENS = TokenCache()
