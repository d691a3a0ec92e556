"""From the configured cut-off date, Get Lead Activities and Get Lead Changes refuse a `listId` of too many
members with 1003; the date and the size are settings ([CONFLICT] 30 Sep vs 30 Dec 2026)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
import requests

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.sandbox.conftest import NOW, authorized_session, error_code, fast_config, rest_get

BEFORE_CUTOFF = datetime(2026, 9, 29, 12, 0, tzinfo=UTC)
AFTER_CUTOFF = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sandbox_config() -> SandboxConfig:
    return fast_config(enforce_limits=False, people=150, activities_per_person=3, programs=6)


@pytest.fixture
def at_now(sandbox: SandboxServer) -> Iterator[SandboxServer]:
    """Tests that move the clock put it back for the next one."""
    yield sandbox
    sandbox.control.freeze(NOW)


def _list_sizes(sandbox: SandboxServer) -> tuple[tuple[int, int], tuple[int, int]]:
    """(id, members) of the largest and the smallest static list."""
    sizes = sorted((len(s["lead_ids"]), s["id"]) for s in sandbox.control.state.static_lists)
    (small_n, small_id), (big_n, big_id) = sizes[0], sizes[-1]
    assert small_n < big_n
    return (big_id, big_n), (small_id, small_n)


def _feed(sandbox: SandboxServer, api: requests.Session, path: str, list_id: int, **params: str) -> dict:
    token = rest_get(sandbox, api, "activities/pagingtoken.json", sinceDatetime="2026-01-01T00:00:00Z")
    return rest_get(sandbox, api, path, nextPageToken=token["nextPageToken"], listId=list_id, **params)


def _activities(sandbox: SandboxServer, api: requests.Session, list_id: int) -> dict:
    return _feed(sandbox, api, "activities.json", list_id, activityTypeIds="1,2")


def _lead_changes(sandbox: SandboxServer, api: requests.Session, list_id: int) -> dict:
    return _feed(sandbox, api, "activities/leadchanges.json", list_id, fields="email")


def test_big_list_id_is_refused_from_the_cutoff_date(at_now: SandboxServer, monkeypatch) -> None:
    sandbox = at_now
    (big_id, big_n), (small_id, _) = _list_sizes(sandbox)
    monkeypatch.setattr(sandbox.config.behaviour, "list_id_member_limit", big_n)  # big list is at the limit
    sandbox.control.freeze(AFTER_CUTOFF)
    api = authorized_session(sandbox)  # the clock jumped months: a token from now
    for call in (_activities, _lead_changes):
        refused = call(sandbox, api, big_id)
        assert error_code(refused) == "1003"
        message = refused["errors"][0]["message"]
        assert f"static list {big_id} has {big_n} members" in message and "2026-09-30" in message
        assert call(sandbox, api, small_id)["success"] is True  # below the threshold
    sandbox.control.freeze(BEFORE_CUTOFF)
    api = authorized_session(sandbox)
    assert _activities(sandbox, api, big_id)["success"] is True  # before the cut-off: no rule yet


def test_list_id_cutoff_date_is_a_setting(at_now: SandboxServer, monkeypatch) -> None:
    sandbox = at_now
    assert sandbox.config.behaviour.list_id_limit_from == date(2026, 9, 30)  # [CONFLICT] default
    assert SandboxConfig().behaviour.list_id_member_limit == 10_000
    (big_id, big_n), _ = _list_sizes(sandbox)
    monkeypatch.setattr(sandbox.config.behaviour, "list_id_member_limit", big_n)
    monkeypatch.setattr(sandbox.config.behaviour, "list_id_limit_from", date(2026, 12, 30))
    sandbox.control.freeze(AFTER_CUTOFF)
    api = authorized_session(sandbox)
    assert _activities(sandbox, api, big_id)["success"] is True  # 1 Oct < 30 Dec: allowed
    sandbox.control.freeze(datetime(2026, 12, 30, 0, 0, tzinfo=UTC))
    api = authorized_session(sandbox)
    assert error_code(_activities(sandbox, api, big_id)) == "1003"  # the cut-off day itself counts
