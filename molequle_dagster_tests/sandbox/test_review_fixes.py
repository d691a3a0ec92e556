"""Review fixes in the sandbox over real HTTP: 413 for chunked bodies, the 2026 `listId` size rule, and the
UNCONFIRMED/CONFLICT behaviours that are now settings (nurtureCadence spelling, scheduling a trigger
campaign, unknown bulk field code, activity export `fields`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
import requests

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.sandbox.conftest import NOW, authorized_session, fast_config, rest_get, rest_post

BEFORE_CUTOFF = datetime(2026, 9, 29, 12, 0, tzinfo=UTC)
AFTER_CUTOFF = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
JAN = {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-20T00:00:00Z"}


@pytest.fixture(scope="module")
def sandbox_config() -> SandboxConfig:
    return fast_config(enforce_limits=False, people=150, activities_per_person=3, programs=6)


@pytest.fixture
def at_now(sandbox: SandboxServer) -> Iterator[SandboxServer]:
    """Tests that move the clock put it back for the next one."""
    yield sandbox
    sandbox.control.freeze(NOW)


def bulk_create(sandbox: SandboxServer, api: requests.Session, entity: str, body: dict) -> dict:
    return api.post(f"{sandbox.base_url}/bulk/v1/{entity}/export/create.json", json=body, timeout=10).json()


def code(envelope: dict) -> str | None:
    return None if envelope["success"] else envelope["errors"][0]["code"]


# --- F: 413 counts the bytes of a chunked body --------------------------------------------------------


def _chunked(size: int) -> Iterator[bytes]:
    body = b'{"action":"updateOnly","lookupField":"id","input":[{"id":1,"firstName":"' + b"x" * size + b'"}]}'
    for start in range(0, len(body), 4096):
        yield body[start : start + 4096]  # a generator body: requests sends it chunked, no Content-Length


def test_chunked_body_over_the_limit_gets_413_and_is_not_counted(
    sandbox: SandboxServer, api: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox.config.limits, "max_body_bytes", 20_000)
    sandbox.control.reset_counters()
    url = f"{sandbox.base_url}/rest/v1/leads.json"
    headers = {"Content-Type": "application/json"}
    refused = api.post(url, data=_chunked(50_000), headers=headers, timeout=10)
    assert refused.status_code == 413 and refused.content == b"Request Entity Too Large"
    assert "POST /rest/v1/leads.json" not in sandbox.control.call_counts()  # the gateway refused it
    small = api.post(url, data=_chunked(1_000), headers=headers, timeout=10)
    assert small.status_code == 200 and small.json()["success"] is True  # the replayed body reached the route
    assert small.json()["result"][0]["id"] == 1
    assert sandbox.control.call_counts()["POST /rest/v1/leads.json"] == 1


# --- G: from the cut-off date, a listId of too many members answers 1003 ------------------------------


def _list_sizes(sandbox: SandboxServer) -> tuple[tuple[int, int], tuple[int, int]]:
    """(id, members) of the largest and the smallest static list."""
    sizes = sorted((len(s["lead_ids"]), s["id"]) for s in sandbox.control.state.static_lists)
    (small_n, small_id), (big_n, big_id) = sizes[0], sizes[-1]
    assert small_n < big_n
    return (big_id, big_n), (small_id, small_n)


def _activities(sandbox: SandboxServer, api: requests.Session, list_id: int) -> dict:
    token = rest_get(sandbox, api, "activities/pagingtoken.json", sinceDatetime="2026-01-01T00:00:00Z")
    return rest_get(sandbox, api, "activities.json", nextPageToken=token["nextPageToken"],
                    activityTypeIds="1,2", listId=list_id)


def _lead_changes(sandbox: SandboxServer, api: requests.Session, list_id: int) -> dict:
    token = rest_get(sandbox, api, "activities/pagingtoken.json", sinceDatetime="2026-01-01T00:00:00Z")
    return rest_get(sandbox, api, "activities/leadchanges.json", nextPageToken=token["nextPageToken"],
                    fields="email", listId=list_id)


def test_big_list_id_is_refused_from_the_cutoff_date(at_now: SandboxServer, monkeypatch) -> None:
    sandbox = at_now
    (big_id, big_n), (small_id, _) = _list_sizes(sandbox)
    monkeypatch.setattr(sandbox.config.behaviour, "list_id_member_limit", big_n)  # big list is at the limit
    sandbox.control.freeze(AFTER_CUTOFF)
    api = authorized_session(sandbox)  # the clock jumped months: a token from now
    for call in (_activities, _lead_changes):
        refused = call(sandbox, api, big_id)
        assert code(refused) == "1003"
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
    assert code(_activities(sandbox, api, big_id)) == "1003"  # the cut-off day itself counts


# --- H: one spelling of "paused" for the PM nurtureCadence filter ------------------------------------


def _pm_cadence(sandbox: SandboxServer, api: requests.Session, cadence: str) -> dict:
    program_id = sandbox.control.state.programs.column("id").to_pylist()[0]
    body = {"fields": ["leadId"], "filter": {"programId": program_id, "nurtureCadence": cadence}}
    return bulk_create(sandbox, api, "program/members", body)


def test_nurture_cadence_accepts_only_the_configured_spelling(
    sandbox: SandboxServer, api: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _pm_cadence(sandbox, api, "paus")["success"] is True  # swagger's spelling by default
    assert _pm_cadence(sandbox, api, "norm")["success"] is True
    refused = _pm_cadence(sandbox, api, "pause")
    assert code(refused) == "1003"
    assert refused["errors"][0]["message"] == "filter.nurtureCadence: expected 'paus' or 'norm', got 'pause'"
    monkeypatch.setattr(sandbox.config.bulk, "nurture_cadence_pause", "pause")  # the docs' spelling
    assert _pm_cadence(sandbox, api, "pause")["success"] is True
    assert code(_pm_cadence(sandbox, api, "paus")) == "1003"


# --- I: the other UNCONFIRMED behaviours are settings ------------------------------------------------


def test_scheduling_a_trigger_campaign_answers_the_configured_code(
    sandbox: SandboxServer, api: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    trigger = next(c for c in sandbox.control.state.campaigns if c["type"] == "trigger")
    path = f"campaigns/{trigger['id']}/schedule.json"
    assert code(rest_post(sandbox, api, path, None)) == "1003"
    monkeypatch.setattr(sandbox.config.behaviour, "schedule_trigger_campaign_error_code", "1013")
    refused = rest_post(sandbox, api, path, None)
    assert code(refused) == "1013" and "trigger campaign" in refused["errors"][0]["message"]
    assert sandbox.control.campaign_requests() == []  # nothing was scheduled either way


def test_unknown_bulk_field_answers_the_configured_code(
    sandbox: SandboxServer, api: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"fields": ["id", "shoeSize"], "filter": {"createdAt": JAN}}
    default = bulk_create(sandbox, api, "leads", body)
    assert default["errors"][0] == {"code": "1006", "message": "Field 'shoeSize' not found"}
    monkeypatch.setattr(sandbox.config.bulk, "unknown_field_error_code", "1003")
    for entity, fields in (("leads", ["id", "shoeSize"]), ("activities", ["leadId", "shoeSize"])):
        refused = bulk_create(sandbox, api, entity, {"fields": fields, "filter": {"createdAt": JAN}})
        assert refused["errors"][0] == {"code": "1003", "message": "Field 'shoeSize' not found"}


def test_activity_export_fields_optional_or_required(
    sandbox: SandboxServer, api: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_fields = {"filter": {"createdAt": JAN}}
    assert bulk_create(sandbox, api, "activities", no_fields)["success"] is True  # docs: optional (default)
    monkeypatch.setattr(sandbox.config.bulk, "activity_fields", "required")  # swagger: required
    refused = bulk_create(sandbox, api, "activities", no_fields)
    assert refused["errors"][0] == {"code": "1002",
                                    "message": "Missing value for the required parameter 'fields'"}
    with_fields = {"fields": ["leadId", "activityDate"], "filter": {"createdAt": JAN}}
    assert bulk_create(sandbox, api, "activities", with_fields)["success"] is True
