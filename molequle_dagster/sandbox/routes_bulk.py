"""HTTP routes of the Bulk Extract API for leads, activities and program members (docs/marketo.md §6.1).

The gate in app.py has already authenticated the call, applied limits and generic faults, rewritten
`POST …?_method=GET` into a GET, and set `request.state.api_user` / `request.state.fault`. Handlers here
parse parameters, call `BulkExtractService` on a worker thread (a job start renders its file) and answer
Marketo's envelope; files are served by Starlette's `FileResponse` (Range/206, Accept-Ranges).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from molequle_dagster.sandbox.bulk import MAX_BATCH_SIZE, BulkExtractService
from molequle_dagster.sandbox.bulk_requests import ENTITIES
from molequle_dagster.sandbox.context import SandboxContext
from molequle_dagster.sandbox.envelope import MarketoApiError, ok
from molequle_dagster.sandbox.params import parse_json

JSON_TYPE = "application/json;charset=UTF-8"
FILE_TYPE = "text/csv"
FILE_CHUNK_BYTES = 1024 * 1024  # Starlette's 64 KiB default halves loopback throughput
NOT_AVAILABLE = "Export file not available: the job is unknown, not Completed, or its file has expired"

Handler = Callable[[Request], Awaitable[Response]]


class _ExportFile(FileResponse):
    chunk_size = FILE_CHUNK_BYTES


class _TruncatedFile:
    """Fault `truncated_body`: announce the full length of what was asked (the whole file, or the `Range`
    a resuming client sends, as 206), send half of it, then let the connection drop."""

    def __init__(self, path: str, size: int, range_header: str | None) -> None:
        self._path = path
        self._size = size
        self._range = _byte_range(range_header, size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        first, last = self._range or (0, self._size - 1)
        length = max(0, last - first + 1)
        headers = [
            (b"content-type", FILE_TYPE.encode()),
            (b"content-length", str(length).encode()),
            (b"accept-ranges", b"bytes"),
        ]
        if self._range is not None:
            headers.append((b"content-range", f"bytes {first}-{last}/{self._size}".encode()))
        await send({"type": "http.response.start", "status": 206 if self._range else 200, "headers": headers})
        with open(self._path, "rb") as file:
            file.seek(first)
            part = file.read(length // 2)
        await send({"type": "http.response.body", "body": part, "more_body": True})
        # Returning with the body unfinished makes uvicorn close the connection mid-body.


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) of a single satisfiable `bytes=a-b` / `bytes=a-` range, else None (whole file)."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    start, _, end = header[len("bytes=") :].partition("-")
    if not start.isdigit() or (end and not end.isdigit()):
        return None
    first, last = int(start), min(int(end) if end else size - 1, size - 1)
    return (first, last) if first <= last else None


def _json(body: dict) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), media_type=JSON_TYPE)


def _user(request: Request) -> str:
    return request.state.api_user


def _fault(request: Request) -> str | None:
    return getattr(request.state, "fault", None)


async def _json_body(request: Request) -> Any:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("application/json"):
        raise MarketoApiError("612", "Invalid Content Type")
    return parse_json(await request.body())


def _statuses(request: Request) -> list[str] | None:
    """`status` repeated and/or comma-separated."""
    values = [
        part for raw in request.query_params.getlist("status") for part in raw.split(",") if part.strip()
    ]
    return values or None


def _batch_size(request: Request) -> int:
    raw = request.query_params.get("batchSize")
    if raw is None or raw == "":
        return MAX_BATCH_SIZE
    try:
        return int(raw)
    except ValueError:
        raise MarketoApiError(
            "1003", f"batchSize: expected an integer from 1 to {MAX_BATCH_SIZE}, got {raw!r}"
        ) from None


def _handlers(service: BulkExtractService, entity: str) -> dict[str, Handler]:
    async def create(request: Request) -> Response:
        body = await _json_body(request)
        job = await run_in_threadpool(service.create, entity, _user(request), body, _fault(request))
        return _json(ok([job]))

    async def enqueue(request: Request) -> Response:
        export_id = request.path_params["export_id"]
        job = await run_in_threadpool(service.enqueue, entity, export_id, _user(request), _fault(request))
        return _json(ok([job]))

    async def status(request: Request) -> Response:
        export_id = request.path_params["export_id"]
        job = await run_in_threadpool(service.status, entity, export_id, _user(request), _fault(request))
        return _json(ok([job]))

    async def cancel(request: Request) -> Response:
        export_id = request.path_params["export_id"]
        return _json(ok([await run_in_threadpool(service.cancel, entity, export_id, _user(request))]))

    async def list_jobs(request: Request) -> Response:
        token = request.query_params.get("nextPageToken") or None
        body = await run_in_threadpool(
            service.list_jobs, entity, _user(request), _statuses(request), _batch_size(request), token
        )
        return _json(body)

    async def file(request: Request) -> Response:
        export_id = request.path_params["export_id"]
        found = await run_in_threadpool(service.file_path, entity, export_id, _user(request))
        if found is None:
            return PlainTextResponse(NOT_AVAILABLE, status_code=404)
        path, size, _checksum = found
        if _fault(request) == "truncated_body":
            return _TruncatedFile(str(path), size, request.headers.get("range"))  # type: ignore[return-value]
        return _ExportFile(path, media_type=FILE_TYPE)

    return {
        "create": create,
        "enqueue": enqueue,
        "status": status,
        "cancel": cancel,
        "list": list_jobs,
        "file": file,
    }


def bulk_routes(ctx: SandboxContext) -> list[BaseRoute]:
    """Routes for /bulk/v1/{leads,activities,program/members}/export/…; builds ctx.bulk if missing."""
    if ctx.bulk is None:
        ctx.bulk = BulkExtractService(ctx)
    service: BulkExtractService = ctx.bulk
    routes: list[BaseRoute] = []
    for entity in ENTITIES:
        base = f"/bulk/v1/{entity}/export"
        handlers = _handlers(service, entity)
        routes += [
            Route(f"{base}/create.json", handlers["create"], methods=["POST"]),
            Route(f"{base}.json", handlers["list"], methods=["GET"]),
            Route(f"{base}/{{export_id}}/enqueue.json", handlers["enqueue"], methods=["POST"]),
            Route(f"{base}/{{export_id}}/status.json", handlers["status"], methods=["GET"]),
            Route(f"{base}/{{export_id}}/cancel.json", handlers["cancel"], methods=["POST"]),
            Route(f"{base}/{{export_id}}/file.json", handlers["file"], methods=["GET"]),
        ]
    return routes
