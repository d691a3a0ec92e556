"""Request parsing shared by every REST route module: list params in both wire forms, JSON bodies
(612/609), batch sizes, dates, opaque position tokens and `nextPageToken` pages."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from molequle_dagster.sandbox.envelope import MarketoApiError, ok
from molequle_dagster.sandbox.limits import MAX_BATCH

# --- responses -------------------------------------------------------------------------------------------


def respond(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json;charset=UTF-8")


# --- query parameters --------------------------------------------------------------------------------------


def list_param(request: Request, name: str) -> list[str]:
    """`a=1,2` and `a=1&a=2` both give ['1', '2'] (docs/marketo.md §1: clients send both forms)."""
    return [
        part.strip()
        for value in request.query_params.getlist(name)
        for part in value.split(",")
        if part.strip()
    ]


def int_list_param(
    request: Request,
    name: str,
    *,
    maximum: int | None = None,
    too_many_code: str = "1003",
    asset_api: bool = False,
) -> list[int]:
    values = list_param(request, name)
    try:
        ints = [int(v) for v in values]
    except ValueError as exc:
        bad = next(v for v in values if not v.lstrip("-").isdigit())
        raise MarketoApiError(
            1001, f"Invalid value '{bad}'. Required of type 'integer'", asset_api=asset_api
        ) from exc
    if maximum is not None and len(ints) > maximum:
        raise MarketoApiError(
            too_many_code, f"{name}: at most {maximum} values allowed, got {len(ints)}", asset_api=asset_api
        )
    return ints


def required_param(request: Request, name: str, *, asset_api: bool = False) -> str:
    value = request.query_params.get(name, "").strip()
    if not value:
        raise MarketoApiError(701, f"{name} cannot be blank", asset_api=asset_api)
    return value


def int_param(
    request: Request,
    name: str,
    default: int,
    *,
    minimum: int = 0,
    maximum: int | None = None,
    asset_api: bool = False,
) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise MarketoApiError(
            1001, f"Invalid value '{raw}'. Required of type 'integer'", asset_api=asset_api
        ) from exc
    if value < minimum or (maximum is not None and value > maximum):
        limit = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise MarketoApiError(1003, f"{name}: expected {limit}, got {value}", asset_api=asset_api)
    return value


def batch_size(request: Request) -> int:
    return int_param(request, "batchSize", MAX_BATCH, minimum=1, maximum=MAX_BATCH)


def bool_param(request: Request, name: str, *, asset_api: bool = False) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise MarketoApiError(1001, f"Invalid value '{raw}'. Required of type 'boolean'", asset_api=asset_api)


def parse_datetime(raw: str, name: str, *, asset_api: bool = False) -> datetime:
    """ISO-8601 with `Z`, `±hh:mm` or `±hhmm`; no offset means GMT (docs/marketo.md §1)."""
    text = raw.strip().replace(" ", "+")  # an unencoded '+' arrives as a space
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = f"{text[:-2]}:{text[-2:]}"
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise MarketoApiError(704, f"Invalid date format for {name}: '{raw}'", asset_api=asset_api) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- JSON bodies -------------------------------------------------------------------------------------------


async def json_body(request: Request, *, required: bool = True) -> dict[str, Any]:
    """The JSON object body of a write: 612 on a wrong content type, 609 when it does not parse."""
    raw = await request.body()
    if not raw.strip():
        if required:
            raise MarketoApiError(609, "Invalid JSON")
        return {}
    if not request.headers.get("content-type", "").lower().startswith("application/json"):
        raise MarketoApiError(612, "Invalid Content Type")
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise MarketoApiError(609, "Invalid JSON")
    return body


def parse_json(raw: bytes) -> Any:
    """A request body as JSON, or 609. The bytes must be strict UTF-8: Python's json would let through a
    surrogate encoded in UTF-8 (b"\\xed\\xa0\\x80") that no UTF-8 decoder on Marketo's side accepts. A lone
    surrogate written as the JSON escape "\\ud800" is valid JSON: the routes refuse it where it is stored."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MarketoApiError(609, "Invalid JSON") from exc


# --- opaque position tokens --------------------------------------------------------------------------------


def encode_token(kind: str, *parts: object) -> str:
    """A base32 token Marketo-style (upper case, '=' padded); the kind guards against cross-use."""
    return base64.b32encode("|".join([kind, *map(str, parts)]).encode()).decode()


def decode_token(token: str, kind: str) -> list[str]:
    try:
        text = base64.b32decode(token.strip(), casefold=True).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise MarketoApiError(1003, f"Invalid nextPageToken '{token[:40]}'") from exc
    parts = text.split("|")
    if parts[0] != kind:
        raise MarketoApiError(1003, f"Invalid nextPageToken '{token[:40]}' for this endpoint")
    return parts[1:]


def page_offset(request: Request, kind: str) -> int:
    token = request.query_params.get("nextPageToken")
    if not token:
        return 0
    parts = decode_token(token, kind)
    try:
        return int(parts[0])
    except (IndexError, ValueError) as exc:
        raise MarketoApiError(1003, "Invalid nextPageToken") from exc


def paged(items: list[Any], offset: int, size: int, kind: str, **extra: Any) -> dict[str, Any]:
    """A nextPageToken page. `moreResult` and the token appear only when more data exists: the captured
    empty lead query carries neither (real_grouparoo__leads_by_email_empty_result)."""
    body = ok(items[offset : offset + size], **extra)
    if offset + size < len(items):
        body["moreResult"] = True
        body["nextPageToken"] = encode_token(kind, offset + size)
    return body


# --- strictness shared by the newer routes ------------------------------------------------------------------

ALWAYS_ALLOWED_PARAMS = frozenset({"access_token", "_method"})  # the gate's own concerns, never a typo


def allow_params(request: Request, *names: str, asset_api: bool = False) -> None:
    """1003 naming the first query parameter the endpoint does not know: Marketo silently ignores a typo
    such as `batchsize`, the sandbox makes it visible."""
    unknown = sorted(set(request.query_params) - set(names) - ALWAYS_ALLOWED_PARAMS)
    if unknown:
        raise MarketoApiError(
            1003,
            f"Unknown parameter '{unknown[0]}'; expected some of {sorted(names)}",
            asset_api=asset_api,
        )


def lead_id_input(request: Request, body: dict[str, Any], *, maximum: int = MAX_BATCH) -> list[int]:
    """Lead ids from `id=` query values (both wire forms) or a JSON `{"input": [{"id": …}, …]}` body."""
    from_query = int_list_param(request, "id")
    if from_query and body.get("input") is not None:
        raise MarketoApiError(1003, "id and input: send lead ids either as id= values or as input, not both")
    if not from_query:
        return body_lead_ids(body, maximum=maximum, also="id= values or ")
    if len(from_query) > maximum:
        raise MarketoApiError(1003, f"id: at most {maximum} lead ids allowed, got {len(from_query)}")
    return from_query


def body_lead_ids(body: dict[str, Any], *, maximum: int = MAX_BATCH, also: str = "") -> list[int]:
    """The ids of a JSON `{"input": [{"id": …}, …]}` body: 1 to `maximum` integers."""
    raw = body.get("input")
    if not isinstance(raw, list) or not raw:
        raise MarketoApiError(1003, f'{also}input: expected 1 to {maximum} lead ids as {{"id": <leadId>}}')
    if len(raw) > maximum:
        raise MarketoApiError(1003, f"input: at most {maximum} lead ids allowed, got {len(raw)}")
    ids = []
    for index, item in enumerate(raw):
        lead_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(lead_id, int) or isinstance(lead_id, bool):
            raise MarketoApiError(
                1003, f'input[{index}]: expected {{"id": <integer lead id>}}, got {repr(item)[:60]}'
            )
        ids.append(lead_id)
    return ids


def skipped(code: int, message: str, **key: Any) -> dict[str, Any]:
    """A record-level skip (docs/marketo.md §3.1, §3.4): the record key first, then status and reasons."""
    return {**key, "status": "skipped", "reasons": [{"code": str(code), "message": message}]}
