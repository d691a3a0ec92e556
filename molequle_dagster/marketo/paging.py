"""The three paging styles: nextPageToken (lead database), moreResult with empty pages (activity feeds),
offset/maxReturn (asset browse)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from molequle_dagster.marketo.errors import MalformedResponseError, PagingError
from molequle_dagster.marketo.timeutil import parse_marketo_datetime

Fetch = Callable[[dict[str, Any]], dict[str, Any]]  # params -> success envelope
NO_ASSETS_WARNING = "no assets found"


def token_pages(fetch: Fetch, params: Mapping[str, Any], *, endpoint: str = "") -> Iterator[list[Any]]:
    """Lead-database queries: the last page carries no nextPageToken."""
    query = dict(params)
    seen: set[str] = set()
    while True:
        envelope = fetch(query)
        yield list(envelope.get("result") or [])
        token = envelope.get("nextPageToken")
        if not token:
            return
        _check_token(token, endpoint, envelope)
        if token in seen:
            raise PagingError(
                "nextPageToken repeated; paging would never end",
                endpoint=endpoint,
                request_id=envelope.get("requestId"),
            )
        seen.add(token)
        query["nextPageToken"] = token


def activity_pages(
    fetch: Fetch,
    params: Mapping[str, Any],
    *,
    until: datetime | None = None,
    max_empty_pages: int = 200,
    endpoint: str = "",
) -> Iterator[list[dict[str, Any]]]:
    """Activity-style feeds: loop while moreResult; pages may be empty; stop after `until`.

    Records dated after `until` are dropped and end the feed. More than `max_empty_pages` empty pages in
    a row raise `PagingError` (never a silent stop that would look like "no more data").
    """
    query = dict(params)
    empty_in_a_row = 0
    while True:
        envelope = fetch(query)
        items = list(envelope.get("result") or [])
        past_end = False
        if until is not None:
            kept = [a for a in items if not _after(a, until)]
            past_end = len(kept) < len(items)
            items = kept
        if items:
            yield items
        if past_end or not envelope.get("moreResult"):
            return
        empty_in_a_row = empty_in_a_row + 1 if not envelope.get("result") else 0
        if empty_in_a_row > max_empty_pages:
            raise PagingError(
                f"{empty_in_a_row} empty pages in a row with moreResult:true (cap {max_empty_pages})",
                endpoint=endpoint,
                request_id=envelope.get("requestId"),
            )
        token = envelope.get("nextPageToken")
        if not token:
            raise PagingError(
                "moreResult:true without a nextPageToken",
                endpoint=endpoint,
                request_id=envelope.get("requestId"),
            )
        _check_token(token, endpoint, envelope)
        query["nextPageToken"] = token


def _check_token(token: Any, endpoint: str, envelope: Mapping[str, Any]) -> None:
    if not isinstance(token, str):
        raise MalformedResponseError(
            f"nextPageToken is a {type(token).__name__}, not text",
            endpoint=endpoint,
            request_id=envelope.get("requestId"),
        )


def _after(activity: Mapping[str, Any], until: datetime) -> bool:
    raw = activity.get("activityDate")
    if not isinstance(raw, str):
        return False
    try:
        return parse_marketo_datetime(raw) > until
    except ValueError:
        raise MalformedResponseError(f"activityDate {raw[:40]!r} is not a Marketo datetime") from None


def asset_pages(
    fetch: Fetch, params: Mapping[str, Any], *, max_return: int = 200, endpoint: str = ""
) -> Iterator[list[Any]]:
    """Asset browse: offset/maxReturn, ending on the "No assets found" warning or a short page."""
    if not 1 <= max_return <= 200:
        raise ValueError(f"max_return: expected 1..200, got {max_return}")
    offset = 0
    while True:
        envelope = fetch({**params, "offset": offset, "maxReturn": max_return})
        items = list(envelope.get("result") or [])
        if items:
            yield items
        if not items or len(items) < max_return or _no_assets(envelope):
            return
        offset += len(items)


def _no_assets(envelope: Mapping[str, Any]) -> bool:
    for warning in envelope.get("warnings") or []:
        text = warning.get("message", "") if isinstance(warning, Mapping) else str(warning)
        if NO_ASSETS_WARNING in text.lower():
            return True
    return False
