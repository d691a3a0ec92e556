"""HTTP transport: one pooled `requests.Session`, the token, the envelope, retries and pacing.

Every request goes through `Transport.request` (JSON envelope) or `Transport.open_download` (bulk file
bytes, normally opened under `download_slot()`, which keeps an in-flight slot while the body streams).
Both pace through the cross-process pacer, count calls in `CallStats`, and turn every failure
into the typed errors of `errors.py` with the secret and the token redacted.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import requests
import urllib3

from molequle_dagster.marketo import errors as E
from molequle_dagster.marketo.auth import TOKENS, TokenCache
from molequle_dagster.marketo.config import DEFAULT_QUOTA_TIMEZONE, RetryConfig
from molequle_dagster.marketo.config import quota_zone as quota_zone_named
from molequle_dagster.marketo.pacing import CrossProcessPacer
from molequle_dagster.marketo.stats import CallStats, endpoint_key

MAX_URI_BYTES = 8 * 1024  # Marketo answers 414 above this: switch to POST ...?_method=GET
TOKEN_PATH = "/identity/oauth/token"
# A body that fails to decompress is a transfer gone wrong too: retried like a dropped connection.
_NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
# Failures where Marketo certainly did not run the request: safe to retry even non-idempotent calls.
_NOT_PROCESSED_CODES = frozenset({"601", "602", "606", "615"})

Params = Mapping[str, Any]


@dataclass
class _Budget:
    """Retry bookkeeping for one logical call."""

    backoffs: int = 0
    throttles: int = 0
    auth_errors: int = 0  # 601/602 in a row


class Transport:
    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout_s: float,
        stats: CallStats,
        pacer: CrossProcessPacer | None,
        retry: RetryConfig | None = None,
        quota_zone: ZoneInfo | None = None,
        sleep: Callable[[float], None] = time.sleep,
        tokens: TokenCache = TOKENS,
        verify_tls: bool = True,
        on_quota: Callable[[E.QuotaExhausted], None] = lambda error: None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url: expected an http(s) URL, got {base_url!r}")
        if not client_id or not client_secret:
            raise ValueError("client_id and client_secret: expected non-empty strings")
        self.base_url = base_url.rstrip("/")
        self._client_id = client_id
        self._secret = client_secret
        self.timeout_s = timeout_s
        self.stats = stats
        self._pacer = pacer
        self.retry = retry or RetryConfig()
        self.quota_zone = quota_zone or quota_zone_named(DEFAULT_QUOTA_TIMEZONE)
        self.on_quota = on_quota  # records a quota stop for every process sharing the store
        self.now = now  # dates quota resets (None: the system clock; benchmarks pass a virtual one)
        self.sleep = sleep
        self._tokens = tokens
        # The secret is part of the key: a wrong secret must never ride on a token the right one fetched.
        self._token_key = (
            self.base_url,
            f"{client_id}#{hashlib.sha256(client_secret.encode()).hexdigest()[:16]}",
        )
        self._token_lock = threading.Lock()
        self.session = requests.Session()
        self.session.verify = verify_tls  # TLS verification stays on unless a test server says otherwise
        self.session.headers["Accept-Encoding"] = "gzip"
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    # --- secrets ------------------------------------------------------------------------------------
    def redact(self, text: str) -> str:
        for secret in [self._secret, *self._tokens.known_values()]:
            if secret:
                text = text.replace(secret, "***")
        return text

    # --- auth ---------------------------------------------------------------------------------------
    def token(self) -> str:
        cached = self._tokens.get(self._token_key)
        if cached is not None:
            return cached.value
        with self._token_lock:  # one refresh per client at a time
            cached = self._tokens.get(self._token_key)
            return cached.value if cached is not None else self._fetch_token()

    def _fetch_token(self) -> str:
        endpoint = f"POST {TOKEN_PATH}"
        # A form body, not the query (Marketo takes both): URLs end up in proxy, urllib3 and server logs.
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._secret,
        }
        budget = _Budget()
        while True:
            failure = ""
            try:
                resp = self.session.post(self.base_url + TOKEN_PATH, data=form, timeout=self.timeout_s)
            except _NETWORK_ERRORS as exc:
                failure = type(exc).__name__
            if failure:
                # Handled outside `except`: the requests exception's text holds the URL with the secret,
                # so it must not even be chained as __context__.
                self._backoff_or_raise(budget, endpoint, f"network error ({failure})")
                continue
            self.stats.record_call(endpoint)
            if resp.status_code >= 500 or resp.status_code == 429:
                self._backoff_or_raise(budget, endpoint, f"HTTP {resp.status_code}")
                continue
            body = _json_or_none(resp.content)
            if resp.status_code == 401 or (isinstance(body, dict) and "error" in body):
                desc = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
                raise E.MarketoAuthError(
                    f"identity endpoint rejected the client credentials (HTTP {resp.status_code})",
                    endpoint=endpoint,
                    marketo_message=self.redact(str(desc)) if desc else None,
                )
            if resp.status_code != 200 or not isinstance(body, dict):
                self._backoff_or_raise(
                    budget, endpoint, "identity answer is not a token JSON object", malformed=True
                )
                continue
            value, expires_in = body.get("access_token"), body.get("expires_in")
            if not isinstance(value, str) or not isinstance(expires_in, int | float):
                raise E.MarketoAuthError("identity answer lacks access_token/expires_in", endpoint=endpoint)
            return self._tokens.put(self._token_key, value, float(expires_in)).value

    # --- JSON calls ---------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json_body: Any = None,
        form: Params | None = None,
        idempotent: bool = True,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """One Marketo call; returns the success envelope or raises a `MarketoError`."""
        endpoint = endpoint_key(method, path)
        url = self.base_url + path
        method, params, form = _long_get_as_post(method, url, params, form)
        budget = _Budget()
        while True:
            token = self.token()
            headers = {"Authorization": f"Bearer {token}"}
            try:
                with self._pace():
                    self.stats.record_call(endpoint)
                    resp = self.session.request(
                        method,
                        url,
                        params=params,
                        json=json_body,
                        data=form,
                        headers=headers,
                        timeout=timeout_s or self.timeout_s,
                    )
                    content = resp.content  # read inside the pace: the call is in flight until then
            except _NETWORK_ERRORS as exc:
                self.stats.record_error("network")
                if not idempotent and not _never_sent(exc):
                    raise E.MarketoTransientError(
                        f"network error ({type(exc).__name__}) after sending a non-idempotent request; "
                        "it may or may not have been applied",
                        endpoint=endpoint,
                    ) from None
                self._backoff_or_raise(budget, endpoint, f"network error ({type(exc).__name__})")
                continue
            if resp.status_code != 200:
                self.stats.record_error(f"http_{resp.status_code}")
                self._http_status(budget, endpoint, resp.status_code, content, idempotent)
                continue
            envelope, problem = _parse_envelope(content)
            if envelope is None:
                self.stats.record_error("malformed")
                if not idempotent:
                    raise E.MalformedResponseError(
                        f"{problem} after a non-idempotent request; it may or may not have been applied",
                        endpoint=endpoint,
                    )
                self._backoff_or_raise(budget, endpoint, problem, malformed=True)
                continue
            if envelope["success"]:
                return envelope
            self._envelope_error(budget, endpoint, envelope, token, idempotent)

    def _pace(self) -> Any:
        return self._pacer.call() if self._pacer is not None else nullcontext()

    def _http_status(
        self, budget: _Budget, endpoint: str, status: int, content: bytes, idempotent: bool
    ) -> None:
        if (status >= 500 or status == 429) and idempotent:
            self._backoff_or_raise(budget, endpoint, f"HTTP {status}")
            return
        snippet = self.redact(content[:200].decode("utf-8", "replace"))
        cls = E.MarketoTransientError if status >= 500 or status == 429 else E.MarketoFatalError
        raise cls(f"HTTP {status}: {snippet!r}", endpoint=endpoint)

    def _envelope_error(
        self, budget: _Budget, endpoint: str, envelope: dict[str, Any], token: str, idempotent: bool
    ) -> None:
        code, message = _first_error(envelope)
        request_id = envelope.get("requestId")
        message = self.redact(message)
        self.stats.record_error(code)
        retry_class = E.classify(code, message)
        if retry_class is E.RetryClass.AUTH:
            # Refresh and retry: once at once, then with back-off a bounded number of times. A second
            # 601/602 right after a refresh happens (a token just re-issued, a gateway hiccup); only
            # credentials the identity endpoint refuses are certainly bad.
            budget.auth_errors += 1
            if budget.auth_errors > self.retry.auth_attempts:
                raise self._error(code, message, endpoint, request_id)
            self._tokens.invalidate(self._token_key, token)
            if budget.auth_errors > 1:
                self.sleep(self.backoff_s(budget.auth_errors - 1))
            return
        budget.auth_errors = 0
        if not idempotent and code not in _NOT_PROCESSED_CODES:
            raise self._error(code, message, endpoint, request_id)
        if retry_class is E.RetryClass.THROTTLE and code in ("606", "615"):
            budget.throttles += 1
            if budget.throttles > self.retry.throttle_attempts:
                raise self._error(code, message, endpoint, request_id)
            base = self.retry.rate_limit_wait_s if code == "606" else self.retry.concurrency_wait_s
            self.sleep(base * (1 + random.random()))
            return
        if retry_class is E.RetryClass.BACKOFF:
            budget.backoffs += 1
            if budget.backoffs >= self.retry.max_attempts:
                raise self._error(code, message, endpoint, request_id)
            self.sleep(self.backoff_s(budget.backoffs))
            return
        raise self._error(code, message, endpoint, request_id)

    def _error(self, code: str, message: str, endpoint: str, request_id: str | None) -> E.MarketoError:
        error = E.error_for(
            code,
            message,
            endpoint=endpoint,
            request_id=request_id,
            quota_zone=self.quota_zone,
            now=self.now() if self.now else None,
        )
        if isinstance(error, E.QuotaExhausted):
            self.on_quota(error)
        return error

    def _backoff_or_raise(
        self, budget: _Budget, endpoint: str, what: str, *, malformed: bool = False
    ) -> None:
        budget.backoffs += 1
        if budget.backoffs >= self.retry.max_attempts:
            cls = E.MalformedResponseError if malformed else E.MarketoTransientError
            raise cls(f"{what} (gave up after {budget.backoffs} attempts)", endpoint=endpoint) from None
        self.sleep(self.backoff_s(budget.backoffs))

    def backoff_s(self, attempt: int) -> float:
        base = min(self.retry.backoff_cap_s, self.retry.backoff_base_s * 2 ** (attempt - 1))
        return base * (0.75 + random.random() / 2)  # jitter keeps parallel processes from retrying in step

    # --- bulk file ----------------------------------------------------------------------------------
    def download_slot(self) -> AbstractContextManager[None]:
        """Hold for the life of one download: the body streams for minutes and is in flight all along.
        Open the download's requests with `slot_held=True` under it."""
        return self._pacer.download_slot() if self._pacer is not None else nullcontext()

    def open_download(self, path: str, *, start: int = 0, slot_held: bool = False) -> requests.Response:
        """A streaming response for a bulk file from byte `start` (206 when start > 0).

        With `slot_held` the caller holds `download_slot()` and this only takes a place in the rate
        window; without it an in-flight slot is held just until the headers arrive.
        Raises `BulkFileGoneError` on 404 (not ready / expired) and typed errors for JSON envelopes
        Marketo sometimes sends instead of bytes.
        """
        endpoint = endpoint_key("GET", path)
        budget = _Budget()
        while True:
            token = self.token()
            headers = {"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"}
            if start:
                headers["Range"] = f"bytes={start}-"
            pace = self._pacer.rate_only() if slot_held and self._pacer is not None else self._pace()
            try:
                with pace:
                    self.stats.record_call(endpoint)
                    resp = self.session.get(
                        self.base_url + path, headers=headers, stream=True, timeout=self.timeout_s
                    )
            except _NETWORK_ERRORS as exc:
                self.stats.record_error("network")
                self._backoff_or_raise(budget, endpoint, f"network error ({type(exc).__name__})")
                continue
            if resp.status_code == 404:
                resp.close()
                raise E.BulkFileGoneError(
                    "export file not found (expired or not completed)", endpoint=endpoint
                )
            if resp.status_code not in (200, 206):
                content = resp.content
                self.stats.record_error(f"http_{resp.status_code}")
                self._http_status(budget, endpoint, resp.status_code, content, True)
                continue
            if "json" in resp.headers.get("Content-Type", "").lower():
                envelope, _ = _parse_envelope(resp.content)
                if envelope is None or envelope["success"]:
                    self._backoff_or_raise(
                        budget, endpoint, "file endpoint sent JSON instead of the file", malformed=True
                    )
                    continue
                self._envelope_error(budget, endpoint, envelope, token, True)
                continue
            return resp


def _never_sent(exc: Exception) -> bool:
    """True when the connection itself failed, so Marketo cannot have seen the request."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _parse_envelope(content: bytes) -> tuple[dict[str, Any] | None, str]:
    """(envelope, "") or (None, what is wrong): HTML proxy page, truncated JSON, success:false w/o errors."""
    body = _json_or_none(content)
    if body is None:
        head = content[:64].lstrip().lower()
        kind = "an HTML page" if head.startswith((b"<!doctype", b"<html")) else "not valid JSON"
        return None, f"response is {kind}, not a Marketo envelope"
    if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
        return None, "response JSON is not a Marketo envelope (no boolean 'success')"
    if body["success"] is False and _first_error(body) == ("", ""):
        return None, "response says success:false without any errors"
    result = body.get("result")
    if result is not None and not (isinstance(result, list) and all(isinstance(r, dict) for r in result)):
        return None, "response 'result' is not a list of objects"
    return body, ""


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None


def _first_error(envelope: Mapping[str, Any]) -> tuple[str, str]:
    errors = envelope.get("errors")
    if isinstance(errors, list) and errors:
        first = errors[0]
        if isinstance(first, dict):
            return str(first.get("code", "")), str(first.get("message", ""))
        return "", str(first)
    return "", ""


def _long_get_as_post(
    method: str, url: str, params: Params | None, form: Params | None
) -> tuple[str, Params | None, Params | None]:
    """GET whose URI would pass 8 KB (Marketo: HTTP 414) -> `POST url?_method=GET`, query as form body."""
    if method.upper() != "GET" or not params:
        return method, params, form
    prepared = requests.Request("GET", url, params=params).prepare()
    if len(prepared.url or "") <= MAX_URI_BYTES:
        return method, params, form
    return "POST", {"_method": "GET"}, params
