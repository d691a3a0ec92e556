"""REST and Asset reads the sync needs, as record iterators (paging handled, filter values chunked)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from molequle_dagster.marketo import paging
from molequle_dagster.marketo.batching import batched
from molequle_dagster.marketo.errors import MarketoFatalError
from molequle_dagster.marketo.timeutil import format_marketo_datetime
from molequle_dagster.marketo.transport import Transport

FILTER_VALUES_MAX = 300
ACTIVITY_TYPES_PER_CALL = 10
BATCH_SIZE = 300


class MarketoReads:
    def __init__(self, transport: Transport, *, max_empty_pages: int = 200) -> None:
        self._t = transport
        self._max_empty_pages = max_empty_pages

    def _get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._t.request("GET", path, params=params)

    def _fetcher(self, path: str) -> paging.Fetch:
        return lambda params: self._get(path, params)

    def _records(self, pages: Iterable[list[Any]]) -> Iterator[dict[str, Any]]:
        for page in pages:
            yield from page

    # --- metadata -----------------------------------------------------------------------------------
    def usage(self) -> list[dict[str, Any]]:
        return list(self._get("/rest/v1/stats/usage.json").get("result") or [])

    def activity_types(self) -> list[dict[str, Any]]:
        return list(self._records(paging.token_pages(self._fetcher("/rest/v1/activities/types.json"), {})))

    def describe_leads(self) -> list[dict[str, Any]]:
        return list(self._get("/rest/v1/leads/describe.json").get("result") or [])

    def describe_leads2(self) -> list[dict[str, Any]]:
        return list(self._get("/rest/v1/leads/describe2.json").get("result") or [])

    def describe_program_members(self) -> list[dict[str, Any]]:
        return list(self._get("/rest/v1/programs/members/describe.json").get("result") or [])

    # --- filter queries -----------------------------------------------------------------------------
    def _filter_query(
        self,
        path: str,
        filter_type: str,
        values: Sequence[Any],
        fields: Sequence[str] | None,
        extra: dict[str, Any] | None = None,
    ) -> Iterator[dict]:
        if not filter_type:
            raise ValueError("filter_type: expected a searchable field name")
        for _, chunk in batched(values, FILTER_VALUES_MAX):
            params: dict[str, Any] = {
                "filterType": filter_type,
                "filterValues": ",".join(str(v) for v in chunk),
                "batchSize": BATCH_SIZE,
                **(extra or {}),
            }
            if fields:
                params["fields"] = ",".join(fields)
            yield from self._records(paging.token_pages(self._fetcher(path), params, endpoint=path))

    def leads_by_filter(
        self, filter_type: str, values: Sequence[Any], fields: Sequence[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        return self._filter_query("/rest/v1/leads.json", filter_type, values, fields)

    def companies(
        self, filter_type: str, values: Sequence[Any], fields: Sequence[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        return self._filter_query("/rest/v1/companies.json", filter_type, values, fields)

    def named_accounts(
        self, filter_type: str, values: Sequence[Any], fields: Sequence[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        return self._filter_query("/rest/v1/namedaccounts.json", filter_type, values, fields)

    # --- activity feeds -----------------------------------------------------------------------------
    def paging_token(self, since: datetime) -> str:
        envelope = self._get(
            "/rest/v1/activities/pagingtoken.json", {"sinceDatetime": format_marketo_datetime(since)}
        )
        token = envelope.get("nextPageToken")
        if not isinstance(token, str) or not token:
            raise MarketoFatalError(
                "paging token answer has no nextPageToken",
                endpoint="GET /rest/v1/activities/pagingtoken.json",
                request_id=envelope.get("requestId"),
            )
        return token

    def _feed(
        self, path: str, since: datetime, until: datetime | None, params: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        query = {"nextPageToken": self.paging_token(since), "batchSize": BATCH_SIZE, **params}
        yield from self._records(
            paging.activity_pages(
                self._fetcher(path), query, until=until, max_empty_pages=self._max_empty_pages, endpoint=path
            )
        )

    def activities_since(
        self,
        since: datetime,
        activity_type_ids: Sequence[int],
        *,
        until: datetime | None = None,
        lead_ids: Sequence[int] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """REST activities from `since` (up to `until`), ≤10 type ids per feed (one feed per group)."""
        if not activity_type_ids:
            raise ValueError("activity_type_ids: expected at least one activity type id")
        if lead_ids is not None and len(lead_ids) > 30:
            raise ValueError(f"lead_ids: at most 30 per call, got {len(lead_ids)}")
        for _, group in batched(activity_type_ids, ACTIVITY_TYPES_PER_CALL):
            params: dict[str, Any] = {"activityTypeIds": ",".join(str(int(t)) for t in group)}
            if lead_ids:
                params["leadIds"] = ",".join(str(int(i)) for i in lead_ids)
            yield from self._feed("/rest/v1/activities.json", since, until, params)

    def lead_changes_since(
        self, since: datetime, fields: Sequence[str], *, until: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        if not fields:
            raise ValueError("fields: expected at least one lead field to report changes for")
        return self._feed("/rest/v1/activities/leadchanges.json", since, until, {"fields": ",".join(fields)})

    def deleted_leads_since(self, since: datetime, *, until: datetime | None = None) -> Iterator[dict]:
        return self._feed("/rest/v1/activities/deletedleads.json", since, until, {})

    # --- assets -------------------------------------------------------------------------------------
    def _browse(self, path: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        return self._records(paging.asset_pages(self._fetcher(path), params or {}, endpoint=path))

    def programs(
        self, *, earliest_updated_at: datetime | None = None, latest_updated_at: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {}
        if earliest_updated_at is not None:
            params["earliestUpdatedAt"] = format_marketo_datetime(earliest_updated_at)
        if latest_updated_at is not None:
            params["latestUpdatedAt"] = format_marketo_datetime(latest_updated_at)
        return self._browse("/rest/asset/v1/programs.json", params)

    def program(self, program_id: int) -> dict[str, Any] | None:
        return _first(self._get(f"/rest/asset/v1/program/{int(program_id)}.json"))

    def channels(self) -> Iterator[dict[str, Any]]:
        return self._browse("/rest/asset/v1/channels.json")

    def smart_lists(self) -> Iterator[dict[str, Any]]:
        return self._browse("/rest/asset/v1/smartLists.json")

    def smart_list(self, smart_list_id: int) -> dict[str, Any] | None:
        return _first(self._get(f"/rest/asset/v1/smartList/{int(smart_list_id)}.json"))

    def smart_list_by_name(self, name: str) -> dict[str, Any] | None:
        return _first(self._get("/rest/asset/v1/smartList/byName.json", {"name": name}))

    def smart_campaigns(self, *, is_active: bool | None = None) -> Iterator[dict[str, Any]]:
        params = {} if is_active is None else {"isActive": json.dumps(is_active)}
        return self._browse("/rest/asset/v1/smartCampaigns.json", params)

    def smart_campaign(self, campaign_id: int) -> dict[str, Any] | None:
        return _first(self._get(f"/rest/asset/v1/smartCampaign/{int(campaign_id)}.json"))

    def smart_campaign_by_name(self, name: str) -> dict[str, Any] | None:
        return _first(self._get("/rest/asset/v1/smartCampaign/byName.json", {"name": name}))

    def static_lists(self) -> Iterator[dict[str, Any]]:
        return self._browse("/rest/asset/v1/staticLists.json")

    def static_list_leads(self, list_id: int, fields: Sequence[str] | None = None) -> Iterator[dict]:
        params: dict[str, Any] = {"batchSize": BATCH_SIZE}
        if fields:
            params["fields"] = ",".join(fields)
        path = f"/rest/v1/lists/{int(list_id)}/leads.json"
        return self._records(paging.token_pages(self._fetcher(path), params, endpoint=path))


def _first(envelope: dict[str, Any]) -> dict[str, Any] | None:
    """Single-object gets answer a 1-element array, or no result plus a "not found" warning."""
    result = envelope.get("result") or []
    return result[0] if result else None
