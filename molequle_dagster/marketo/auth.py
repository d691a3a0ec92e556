"""Access tokens: one cached token per (instance, client id, secret) for the whole process.

Marketo hands back the same token until it expires, so processes and clients share nothing but the
identity endpoint; within a process every client for the same credentials reuses the cached token and
refreshes it 60 s before expiry. A refresh inside those 60 s gets the same token back (Marketo re-issues
only after expiry), so such a token is then kept until it really expires; the 602 path takes over there.
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
    margin_s: float = REFRESH_MARGIN_S  # 0 once refreshing early can no longer yield a new token

    def fresh(self, now: float) -> bool:
        return self.expires_at - now > self.margin_s


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
        with self._lock:
            previous = self._tokens.get(key)
            # Same value again, or already inside the margin: an earlier refresh cannot get a newer token,
            # so keep this one to the end instead of re-fetching on every call.
            final = expires_in <= REFRESH_MARGIN_S or (previous is not None and previous.value == value)
            token = CachedToken(value, time.monotonic() + expires_in, 0.0 if final else REFRESH_MARGIN_S)
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
