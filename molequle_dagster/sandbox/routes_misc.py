"""Usage statistics routes (docs/marketo.md §4.1): daily and last-7-days call counts and error counts."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from molequle_dagster.sandbox.context import SandboxContext
from molequle_dagster.sandbox.envelope import ok
from molequle_dagster.sandbox.params import respond


def routes(ctx: SandboxContext) -> list[BaseRoute]:
    async def usage(request: Request) -> Response:
        return respond(ok(ctx.limiter.usage(1)))

    async def usage_week(request: Request) -> Response:
        return respond(ok(ctx.limiter.usage(7)))

    async def errors(request: Request) -> Response:
        return respond(ok(ctx.limiter.errors(1)))

    async def errors_week(request: Request) -> Response:
        return respond(ok(ctx.limiter.errors(7)))

    return [
        Route("/rest/v1/stats/usage.json", usage, methods=["GET"]),
        Route("/rest/v1/stats/usage/last7days.json", usage_week, methods=["GET"]),
        Route("/rest/v1/stats/errors.json", errors, methods=["GET"]),
        Route("/rest/v1/stats/errors/last7days.json", errors_week, methods=["GET"]),
    ]
