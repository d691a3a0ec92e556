"""Assembles the sandbox: the Starlette app for every route, behind `MarketoGate`.

`MarketoGate` is a raw ASGI middleware (no per-request task or body copy) that does, for every call under
/rest and /bulk, what Marketo's gateway does before a handler runs: URI/body size (414/413; a chunked
body has no Content-Length, so it is counted as it is read, holding at most `max_body_bytes`),
`POST …?_method=GET`, endpoint resolution (605/610), bearer check (601/602), scripted faults, the
instance-wide limits (615/606/607), gzip, call counting and the request log. Identity calls are served
here too (not under quota); `/_sandbox/` control calls pass straight through and are never counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import socket
import struct
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount

from molequle_dagster.sandbox.auth import BadClientCredentials, TokenStore, bearer_token
from molequle_dagster.sandbox.clock import SandboxClock
from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.context import SandboxContext
from molequle_dagster.sandbox.envelope import MarketoApiError, error
from molequle_dagster.sandbox.faults import (
    BULK_ONLY_FAULTS,
    ENVELOPE_FAULTS,
    HTTP_FAULTS,
    FaultPlan,
    PickedFault,
)
from molequle_dagster.sandbox.limits import UNCOUNTED_CODES, Limiter, check_uri_and_body
from molequle_dagster.sandbox.model import InstanceState
from molequle_dagster.sandbox.neighbours import Neighbours

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

JSON_TYPE = b"application/json;charset=UTF-8"
IDENTITY_PATH = "/identity/oauth/token"
HTTP_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
LOG = logging.getLogger(__name__)
MAX_REQUEST_LOG = 20_000  # oldest half dropped beyond this, so long runs do not grow without bound
SECRET_PARAMS = frozenset({"access_token", "client_secret"})
HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def build_context(config: SandboxConfig, state: InstanceState, clock: SandboxClock) -> SandboxContext:
    ctx = SandboxContext(config=config, state=state, clock=clock)
    ctx.tokens = TokenStore(config, clock)
    ctx.neighbours = Neighbours(config)
    ctx.limiter = Limiter(config.limits, clock, ctx.neighbours)
    ctx.faults = FaultPlan()
    ctx.bulk = _bulk_service(ctx)
    return ctx


def _bulk_service(ctx: SandboxContext) -> Any:
    try:  # the bulk engine is built in parallel; the REST sandbox works without it
        from molequle_dagster.sandbox.bulk import BulkExtractService
    except ImportError:
        return None
    return BulkExtractService(ctx)


def _bulk_routes(ctx: SandboxContext) -> list[BaseRoute]:
    try:
        from molequle_dagster.sandbox.routes_bulk import bulk_routes
    except ImportError:
        return []
    return list(bulk_routes(ctx))


def marketo_routes(ctx: SandboxContext) -> list[BaseRoute]:
    from molequle_dagster.sandbox import (
        routes_activities,
        routes_assets,
        routes_campaigns,
        routes_leads,
        routes_list_membership,
        routes_merge_delete,
        routes_misc,
        routes_program_membership,
    )

    return [
        *routes_activities.routes(ctx),
        *routes_leads.routes(ctx),
        *routes_campaigns.routes(ctx),
        *routes_assets.routes(ctx),
        *routes_misc.routes(ctx),
        *routes_merge_delete.routes(ctx),
        *routes_list_membership.routes(ctx),
        *routes_program_membership.routes(ctx),
        *_bulk_routes(ctx),
    ]


async def _client_gone(request: Request, exc: Exception) -> Response:
    """The client hung up before its request's body was read (it timed out while a `slow` fault held the
    call): Marketo never got the request, so nothing happened, and nobody is left to answer. Not a bug."""
    return Response(status_code=499)  # nginx's "client closed request"; it reaches no one


def create_app(ctx: SandboxContext) -> MarketoGate:
    from molequle_dagster.sandbox.control import control_routes

    routes = marketo_routes(ctx)

    async def render_unexpected(request: Request, exc: Exception) -> Response:
        """What Marketo answers an unhandled exception with (611 System error), never a bare HTTP 500; the
        traceback is kept for tests (`control.internal_errors()`) and logged."""
        ctx.internal_errors.append(
            {"path": request.url.path, "error": "".join(traceback.format_exception(exc)).strip()}
        )
        LOG.error("sandbox bug answered as 611: %s %s", request.method, request.url.path, exc_info=exc)
        request.state.error_code = "611"
        return _envelope_response(
            error("611", "System error", asset_api=request.url.path.startswith("/rest/asset/"))
        )

    starlette = Starlette(
        routes=[*routes, Mount("/_sandbox", routes=control_routes(ctx))],
        exception_handlers={
            MarketoApiError: _render_marketo_error,
            ClientDisconnect: _client_gone,
            Exception: render_unexpected,
        },
    )
    return MarketoGate(starlette, ctx, routes)


async def _render_marketo_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MarketoApiError)
    request.state.error_code = exc.code
    asset_api = exc.asset_api or request.url.path.startswith("/rest/asset/")
    return _envelope_response(error(exc.code, exc.message, asset_api=asset_api))


def _envelope_response(body: dict) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json;charset=UTF-8")


def endpoint_template(route: BaseRoute) -> str:
    """'/rest/v1/lead/{id}.json' from a route path such as '/rest/v1/lead/{id:int}.json'."""
    path = getattr(route, "path", "")
    out, depth, skipping = [], 0, False
    for char in path:
        if char == "{":
            depth, skipping = depth + 1, False
        elif char == "}":
            depth, skipping = depth - 1, False
        elif char == ":" and depth:
            skipping = True
            continue
        if not skipping:
            out.append(char)
    return "".join(out)


class MarketoGate:
    def __init__(self, app: Starlette, ctx: SandboxContext, routes: list[BaseRoute]) -> None:
        self.app = app
        self.ctx = ctx
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith("/_sandbox/"):
            await self.app(scope, receive, send)
        elif path == IDENTITY_PATH:
            await self._identity(scope, receive, send)
        elif path.startswith(("/rest/", "/bulk/")):
            await self._marketo_call(scope, receive, send)
        else:
            await _plain(send, 404, b"Not Found")

    # --- identity (docs/marketo.md §2) --------------------------------------------------------------

    async def _identity(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        key = f"{method} {IDENTITY_PATH}"
        self.ctx.call_counts[key] = self.ctx.call_counts.get(key, 0) + 1
        params = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if method == "POST":
            body = await _read_body(receive)
            params.update(parse_qsl(body.decode("utf-8", "replace")))
        elif method != "GET":
            await _plain(send, 405, b"Method Not Allowed")
            return
        try:
            body = self.ctx.tokens.issue(
                params.get("grant_type"), params.get("client_id"), params.get("client_secret")
            )
            status = 200
        except BadClientCredentials:
            status = 401
            body = (
                {"error": "invalid_client", "error_description": "Bad client credentials"}
                if self.ctx.config.tokens.error_body == "invalid_client"
                else {"error": "unauthorized", "error_description": "Bad client credentials"}
            )
        self._log(method, key, scope, params, api_user=None, status=status, error_code=None, fault=None)
        await _json(send, status, body, extra_headers=[(b"cache-control", b"no-store")])

    # --- Marketo REST / Bulk calls -----------------------------------------------------------------------

    async def _marketo_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        limits = self.ctx.config.limits
        raw_query: bytes = scope.get("query_string", b"")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        length = headers.get("content-length", "")
        uri_bytes = len(scope.get("raw_path") or scope["path"].encode()) + 1 + len(raw_query)
        oversize = check_uri_and_body(uri_bytes, int(length) if length.isdigit() else None, limits)
        if oversize is None and not length and "transfer-encoding" in headers:
            body = await _read_bounded(receive, limits.max_body_bytes)
            if body is None:
                oversize = 413
            else:
                receive = _replay(body, receive)
        if oversize is not None:  # the gateway refuses these before Marketo sees them: not counted
            reason = b"Request-URI Too Long" if oversize == 414 else b"Request Entity Too Large"
            await _plain(send, oversize, reason)
            return
        original_method = scope["method"]
        if original_method == "POST" and b"_method=" in raw_query:
            scope, receive = await _as_get(scope, receive, headers)
        match, template = self._resolve(scope)
        call = _Call(
            scope=scope,
            receive=receive,
            send=send,
            match=match,
            key=f"{scope['method']} {template}",
            headers=headers,
            query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))),
            asset_api=scope["path"].startswith("/rest/asset/"),
            state=scope.setdefault("state", {}),
        )
        self.ctx.call_counts[call.key] = self.ctx.call_counts.get(call.key, 0) + 1
        try:
            await self._gated(call)
        finally:
            self._log(original_method, call.key, scope, call.query, **call.log)

    async def _gated(self, call: _Call) -> None:
        """Bearer check, 605, faults that are not counted, then the limits; the handler runs once admitted."""
        ctx = self.ctx
        token = bearer_token(call.headers, call.query, ctx.config.tokens.accept_query_param)
        try:
            api_user = ctx.tokens.api_user_for(token)
        except MarketoApiError as exc:
            await call.error(exc.code, exc.message)
            return
        call.log["api_user"] = call.state["api_user"] = api_user
        if call.match == Match.PARTIAL:
            await call.error("605", "HTTP Method not supported")
            return
        fault = ctx.faults.pick(call.key)
        call.log["fault"] = call.state["fault"] = fault.kind if fault else None
        if fault and fault.kind in ENVELOPE_FAULTS and ENVELOPE_FAULTS[fault.kind][0] in UNCOUNTED_CODES:
            await call.error(*ENVELOPE_FAULTS[fault.kind])
            return
        try:
            ctx.limiter.admit(api_user)
        except MarketoApiError as exc:
            await call.error(exc.code, exc.message)
            return
        try:
            await self._admitted(call, fault)
        finally:
            ctx.limiter.release(call.log["error_code"])

    async def _admitted(self, call: _Call, fault: PickedFault | None) -> None:
        send = call.send
        if fault is not None and fault.kind not in BULK_ONLY_FAULTS:
            if fault.kind == "slow":
                # Marketo does the work at once; only its answer is late (a create has made its job).
                seconds = fault.seconds
                send = _held_send(call.send, lambda: self._hold(seconds))
            elif await self._answer_fault(fault.kind, call):
                return
        if call.match == Match.NONE:
            await call.error("610", "Requested resource not found")
            return
        compress = _accepts_gzip(call.scope) and not call.scope["path"].endswith("/file.json")
        tap = _ResponseTap(send, call.log, compress, self.ctx.config.behaviour.gzip_min_bytes)
        await self.app(call.scope, call.receive, tap)
        call.log["error_code"] = call.state.get("error_code")

    async def _answer_fault(self, kind: str, call: _Call) -> bool:
        """Answer a generic fault; False when the call should continue to its handler."""
        if kind in ENVELOPE_FAULTS:
            await call.error(*ENVELOPE_FAULTS[kind])
        elif kind in HTTP_FAULTS:
            call.log["status"] = HTTP_FAULTS[kind]
            await _json(call.send, HTTP_FAULTS[kind], {"message": HTTP_REASONS[HTTP_FAULTS[kind]]})
        elif kind == "html_502":
            call.log["status"] = 502
            await _raw(call.send, 502, HTML_502, b"text/html")
        elif kind == "malformed_json":
            body = json.dumps({"requestId": "dead#beef", "success": True, "result": [{"id": 1}]}).encode()
            await _raw(call.send, 200, body[: len(body) // 2], JSON_TYPE)
        elif kind == "connection_reset":
            call.log["status"] = 0
            _reset_connection(call.send)
        else:
            return False
        return True

    async def _hold(self, seconds: float) -> None:
        """Hold a response back for `seconds` of real time, or until the faults are cleared."""
        released = self.ctx.faults.released
        deadline = asyncio.get_running_loop().time() + seconds
        while not released.is_set():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(0.02, remaining))

    def _resolve(self, scope: Scope) -> tuple[Match, str]:
        """(FULL | PARTIAL | NONE, endpoint template); PARTIAL means the path exists for another method."""
        partial: str | None = None
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                template = endpoint_template(route)
                return Match.FULL, template + ("/*" if isinstance(route, Mount) else "")
            if match == Match.PARTIAL and partial is None:
                partial = endpoint_template(route)
        if partial is not None:
            return Match.PARTIAL, partial
        return Match.NONE, scope["path"]

    def _log(
        self,
        method: str,
        key: str,
        scope: Scope,
        params: dict[str, str],
        *,
        api_user: str | None,
        status: int,
        error_code: str | None,
        fault: str | None,
    ) -> None:
        log = self.ctx.request_log
        log.append(
            {
                "at": _iso(self.ctx.clock.now()),
                "method": method,
                "endpoint": key,
                "path": scope["path"],
                "params": {k: v for k, v in params.items() if k not in SECRET_PARAMS},
                "api_user": api_user,
                "status": status,
                "error_code": error_code,
                "fault": fault,
            }
        )
        if len(log) > MAX_REQUEST_LOG:
            del log[: MAX_REQUEST_LOG // 2]


def _held_send(send: Send, hold: Callable[[], Awaitable[None]]) -> Send:
    """`send` whose first message waits for `hold()` (the answer is late, the work was done)."""
    pending = [hold]

    async def late(message: dict) -> None:
        if pending:
            await pending.pop()()
        await send(message)

    return late


@dataclass
class _Call:
    """One Marketo call on its way through the gate."""

    scope: Scope
    receive: Receive
    send: Send
    match: Match
    key: str  # "METHOD /path/template"
    headers: dict[str, str]
    query: dict[str, str]
    asset_api: bool
    state: dict  # request.state: api_user, fault, error_code
    log: dict = field(
        default_factory=lambda: {"api_user": None, "status": 200, "error_code": None, "fault": None}
    )

    async def error(self, code: str, message: str) -> None:
        self.log["error_code"] = code
        await _json(self.send, 200, error(code, message, asset_api=self.asset_api))


class _ResponseTap:
    """Wraps `send`: records the status and gzips single-message bodies when the client accepts it."""

    def __init__(self, send: Send, log: dict, compress: bool, min_bytes: int) -> None:
        self._send = send
        self._log = log
        self._compress = compress
        self._min_bytes = min_bytes
        self._start: dict | None = None

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self._log["status"] = message["status"]
            if self._compress:
                self._start = message
                return
        elif message["type"] == "http.response.body" and self._start is not None:
            start, self._start = self._start, None
            body = message.get("body", b"")
            if not message.get("more_body", False) and len(body) >= self._min_bytes:
                headers = [(k, v) for k, v in start["headers"] if k.lower() not in (b"content-length",)]
                if not any(k.lower() == b"content-encoding" for k, _ in headers):
                    body = gzip.compress(body, compresslevel=1, mtime=0)  # speed over ratio on loopback
                    headers += [
                        (b"content-encoding", b"gzip"),
                        (b"vary", b"Accept-Encoding"),
                        (b"content-length", str(len(body)).encode()),
                    ]
                    start = {**start, "headers": headers}
                    message = {**message, "body": body}
            await self._send(start)
        await self._send(message)


def _accepts_gzip(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"accept-encoding":
            return b"gzip" in value
    return False


async def _as_get(scope: Scope, receive: Receive, headers: dict[str, str]) -> tuple[Scope, Receive]:
    """`POST …?_method=GET` with a form body: continue as a GET whose query holds both parts
    (docs/marketo.md §1)."""
    query = [
        (k, v)
        for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        if k != "_method"
    ]
    if _single_param(scope, "_method").upper() != "GET":
        return scope, receive
    body = await _read_body(receive)
    if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        query += parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    new_scope = {**scope, "method": "GET", "query_string": urlencode(query).encode("latin-1")}

    async def empty_body() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    return new_scope, empty_body


def _single_param(scope: Scope, name: str) -> str:
    for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
        if key == name:
            return value
    return ""


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _read_bounded(receive: Receive, limit: int) -> bytes | None:
    """The body, or None once it passes `limit` bytes (the rest is read and dropped, so the client
    still gets the 413 instead of a reset while it is sending)."""
    chunks: list[bytes] | None = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # client went away
            return None
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            chunks = None  # over the limit: keep reading, hold nothing
        elif chunks is not None:
            chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks) if chunks is not None else None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the already-read body over once, then listens on the real one."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> dict:
        return pending.pop() if pending else await receive()

    return replay


def _reset_connection(send: Send) -> None:
    """Close the socket with RST and no response. uvicorn's `send` is a bound method of its request cycle."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionResetError("fault: connection_reset")  # not under uvicorn: fail the request loudly
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # RST instead of FIN, as a dropped proxy connection looks
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _json(send: Send, status: int, body: dict, extra_headers: list | None = None) -> None:
    await _raw(send, status, json.dumps(body, separators=(",", ":")).encode(), JSON_TYPE, extra_headers)


async def _plain(send: Send, status: int, body: bytes) -> None:
    await _raw(send, status, body, b"text/plain; charset=utf-8")


async def _raw(
    send: Send, status: int, body: bytes, content_type: bytes, extra_headers: list | None = None
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")
