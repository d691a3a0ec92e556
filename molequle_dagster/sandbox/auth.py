"""Identity (docs/marketo.md §2): one live access token per client_id on the virtual clock, and the bearer
check.

Marketo hands back the same token until it expires, with `expires_in` counting down; the first use of an
expired token answers 602 and every later use 601. Unknown tokens answer 601.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from molequle_dagster.sandbox.clock import SandboxClock
from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.envelope import MarketoApiError


class BadClientCredentials(Exception):
    """The identity endpoint answers HTTP 401 with an OAuth-style body (not the Marketo envelope)."""


@dataclass
class IssuedToken:
    token: str
    client_id: str
    api_user: str
    expires_at: datetime
    expiry_reported: bool = False  # the first stale use reports 602, later ones 601


class TokenStore:
    def __init__(self, config: SandboxConfig, clock: SandboxClock) -> None:
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._by_token: dict[str, IssuedToken] = {}
        self._live_by_client: dict[str, IssuedToken] = {}

    def issue(self, grant_type: str | None, client_id: str | None, client_secret: str | None) -> dict:
        """The identity endpoint's success body; raises BadClientCredentials on any mismatch."""
        client = next((c for c in self._config.clients if c.client_id == client_id), None)
        if grant_type != "client_credentials" or client is None or client.client_secret != client_secret:
            raise BadClientCredentials()
        now = self._clock.now()
        with self._lock:
            live = self._live_by_client.get(client.client_id)
            if live is None or live.expires_at <= now:
                live = IssuedToken(
                    token=f"{uuid.uuid4()}:sb",
                    client_id=client.client_id,
                    api_user=client.api_user,
                    expires_at=now + timedelta(seconds=self._config.tokens.lifetime_s),
                )
                self._live_by_client[client.client_id] = live
                self._by_token[live.token] = live
            # Marketo reports the remaining lifetime rounded down (a fresh token shows 3599).
            remaining = max(0, int((live.expires_at - now).total_seconds()) - 1)
            return {
                "access_token": live.token,
                "token_type": "bearer",
                "expires_in": remaining,
                "scope": live.api_user,
            }

    def api_user_for(self, token: str | None) -> str:
        """The API user a bearer token belongs to, or MarketoApiError 601/602."""
        if not token:
            raise MarketoApiError(601, "Access token invalid")
        now = self._clock.now()
        with self._lock:
            issued = self._by_token.get(token)
            if issued is None:
                raise MarketoApiError(601, "Access token invalid")
            if issued.expires_at <= now:
                if not issued.expiry_reported:
                    issued.expiry_reported = True
                    raise MarketoApiError(602, "Access token expired")
                raise MarketoApiError(601, "Access token invalid")
            return issued.api_user

    def expire_all(self) -> None:
        """Control surface: make every live token stale now (the next use answers 602)."""
        now = self._clock.now()
        with self._lock:
            for issued in self._live_by_client.values():
                issued.expires_at = min(issued.expires_at, now)


def bearer_token(headers: dict[str, str], query: dict[str, str], accept_query_param: bool) -> str | None:
    """The token from `Authorization: Bearer …`, or the legacy `access_token` param when allowed."""
    header = headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    if accept_query_param:
        return query.get("access_token")
    return None
