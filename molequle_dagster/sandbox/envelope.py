"""Marketo's response envelope and error raising, shared by every sandbox route (docs/marketo.md §3)."""

from __future__ import annotations

import secrets
from typing import Any


class MarketoApiError(Exception):
    """Raise from a route to answer HTTP 200 with `success:false` and one error (Marketo's convention)."""

    def __init__(self, code: int | str, message: str, *, asset_api: bool = False) -> None:
        super().__init__(f"{code} {message}")
        self.code = str(code)
        self.message = message
        self.asset_api = asset_api


def request_id() -> str:
    """Marketo's `<hex>#<hex>` request id."""
    return f"{secrets.token_hex(2)}#{secrets.token_hex(6)[:11]}"


def ok(result: list[Any] | None = None, *, asset_api: bool = False, **extra: Any) -> dict[str, Any]:
    """A success envelope. `result=None` omits `result` (activities with nothing, end of asset browse)."""
    body: dict[str, Any] = {"requestId": request_id(), "success": True}
    if asset_api:
        body["errors"] = []
        body["warnings"] = extra.pop("warnings", [])
    if result is not None:
        body["result"] = result
    body.update(extra)
    return body


def error(code: int | str, message: str, *, asset_api: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "requestId": request_id(),
        "success": False,
        "errors": [{"code": str(code), "message": message}],
    }
    if asset_api:
        body["warnings"] = []
    return body


def asset_timestamp(value: Any) -> str:
    """Asset API timestamps carry the odd `…Z+0000` suffix seen on the wire (docs/marketo.md §1)."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ+0000")


def lead_timestamp(value: Any) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")
