"""UNCONFIRMED/CONFLICT behaviours are settings: the nurtureCadence spelling, scheduling a trigger campaign,
the unknown bulk field code, whether an activity export needs `fields`."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.sandbox.conftest import (
    bulk_create,
    error_code,
    export_csv,
    fast_config,
    rest_post,
)

ISO = "%Y-%m-%dT%H:%M:%SZ"
HOUR = timedelta(hours=1)
JAN = {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-20T00:00:00Z"}


@pytest.fixture(scope="module")
def sandbox_config() -> SandboxConfig:
    return fast_config(enforce_limits=False, people=150, activities_per_person=3, programs=6)


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
    assert error_code(refused) == "1003"
    assert refused["errors"][0]["message"] == "filter.nurtureCadence: expected 'paus' or 'norm', got 'pause'"
    monkeypatch.setattr(sandbox.config.bulk, "nurture_cadence_pause", "pause")  # the docs' spelling
    assert _pm_cadence(sandbox, api, "pause")["success"] is True
    assert error_code(_pm_cadence(sandbox, api, "paus")) == "1003"


def test_scheduling_a_trigger_campaign_answers_the_configured_code(
    sandbox: SandboxServer, api: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    trigger = next(c for c in sandbox.control.state.campaigns if c["type"] == "trigger")
    path = f"campaigns/{trigger['id']}/schedule.json"
    assert error_code(rest_post(sandbox, api, path, None)) == "1003"
    monkeypatch.setattr(sandbox.config.behaviour, "schedule_trigger_campaign_error_code", "1013")
    refused = rest_post(sandbox, api, path, None)
    assert error_code(refused) == "1013" and "trigger campaign" in refused["errors"][0]["message"]
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
    assert refused["errors"][0] == {
        "code": "1002",
        "message": "Missing value for the required parameter 'fields'",
    }
    with_fields = {"fields": ["leadId", "activityDate"], "filter": {"createdAt": JAN}}
    assert bulk_create(sandbox, api, "activities", with_fields)["success"] is True


def test_delete_lead_in_an_activity_export_is_refused_or_exports_nothing(
    sandbox: SandboxServer, api: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"filter": {"createdAt": JAN, "activityTypeIds": [37, 12]}}
    refused = bulk_create(sandbox, api, "activities", body)  # default: refused at create
    assert error_code(refused) == "1003" and "Delete Lead (37)" in refused["errors"][0]["message"]
    monkeypatch.setattr(sandbox.config.bulk, "delete_lead_in_activity_export", "no_rows")
    report = sandbox.control.apply_churn({"deletions": 0.05}, seed=2)  # leads deleted now
    assert report.deleted_lead_ids
    now = sandbox.control.clock.now()
    around_now = {"startAt": (now - HOUR).strftime(ISO), "endAt": (now + HOUR).strftime(ISO)}
    body = {"filter": {"createdAt": around_now, "activityTypeIds": [37, 12]}}
    _job, text = export_csv(sandbox, api, "activities", body)
    assert text.splitlines()[0].startswith("marketoGUID,")
    assert all(line.split(",")[3] != "37" for line in text.splitlines()[1:])  # no Delete Lead rows
