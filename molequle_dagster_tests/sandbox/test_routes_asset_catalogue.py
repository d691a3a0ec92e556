"""Emails, segmentations, My Tokens and smart campaign dates over real HTTP, checked against Adobe's OpenAPI
spec and the captured records in the fixtures: shapes, paging, the end-of-browse warning, filters, errors."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pyarrow.compute as pc
import pytest
import requests

from molequle_dagster.sandbox import churn
from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.fixtures import MARKETO_FIXTURES
from molequle_dagster_tests.sandbox.conftest import authorized_session, fast_config, load_fixture, rest_post

ASSET = "/rest/asset/v1"
NO_ASSETS = ["No assets found for the given search criteria."]
SWAGGER = "openapi/marketo-apis/swagger-asset.json"
SWAGGER_TYPES = {"integer": int, "string": str, "boolean": bool, "array": list, "object": dict}
ISO = "%Y-%m-%dT%H:%M:%SZ"


@pytest.fixture(scope="module")
def sandbox_config() -> SandboxConfig:
    return fast_config(enforce_limits=False, people=150, activities_per_person=3, programs=12)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_fixture(SWAGGER)["definitions"]


def get(sandbox: SandboxServer, api: requests.Session, path: str, **params: Any) -> dict:
    return api.get(f"{sandbox.base_url}{ASSET}/{path}", params=params, timeout=10).json()


def browse_all(sandbox: SandboxServer, api: requests.Session, path: str, **params: Any) -> list[dict]:
    """Every page of an asset browse, offset by offset, until the end-of-browse warning."""
    items: list[dict] = []
    while True:
        page = get(sandbox, api, path, offset=len(items), maxReturn=7, **params)
        assert page["success"] is True and page["errors"] == []
        if "result" not in page:
            assert page["warnings"] == NO_ASSETS
            return items
        assert page["warnings"] == [] and 1 <= len(page["result"]) <= 7
        items += page["result"]


def assert_fits(item: dict, definition: str, spec: dict[str, Any]) -> None:
    """Every required member of the swagger definition is there, and members it types have that type."""
    schema = spec[definition]
    missing = set(schema.get("required", [])) - set(item)
    assert not missing, f"{definition}: missing {sorted(missing)}"
    for name, member in schema.get("properties", {}).items():
        if item.get(name) is None:
            continue
        if "$ref" in member:
            assert isinstance(item[name], dict), (definition, name, item[name])
        elif member.get("type") in SWAGGER_TYPES:
            expected = SWAGGER_TYPES[member["type"]]
            value = item[name]
            assert isinstance(value, expected) and not (expected is int and isinstance(value, bool)), (
                definition,
                name,
                value,
            )


def asset_time(text: str) -> datetime:
    assert text.endswith("Z+0000"), text  # the asset API's odd form (docs/marketo.md §1)
    return datetime.fromisoformat(text.removesuffix("Z+0000") + "+00:00")


# --- emails ------------------------------------------------------------------------------------------------


def test_emails_browse_pages_to_the_end_warning_and_fit_the_spec(
    sandbox: SandboxServer, api: requests.Session, spec: dict[str, Any]
) -> None:
    emails = browse_all(sandbox, api, "emails.json")
    state = sandbox.control.state
    assert [e["id"] for e in emails] == [e["id"] for e in state.emails] and len(emails) == 3 * 12
    for email in emails:
        assert_fits(email, "EmailResponse", spec)
        assert_fits(email["subject"], "EmailHeaderField", spec)
        assert email["folder"]["type"] == "Program" and email["status"] in ("approved", "draft")
    default = get(sandbox, api, "emails.json")
    assert len(default["result"]) == 20  # maxReturn defaults to 20
    assert get(sandbox, api, "emails.json", maxReturn=200)["result"] == emails
    too_many = get(sandbox, api, "emails.json", maxReturn=201)
    assert too_many["success"] is False and too_many["errors"][0]["code"] == "1003"
    assert too_many["warnings"] == []


def test_email_ids_and_names_are_those_activities_point_at(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    emails = get(sandbox, api, "emails.json", maxReturn=200)["result"]
    shown = {e["id"]: f"{e['folder']['folderName']}.{e['name']}" for e in emails}
    sends = sandbox.control.state.activities.filter(
        pc.equal(sandbox.control.state.activities["activityTypeId"], 6)
    )
    pairs = set(
        zip(
            sends["primaryAttributeValueId"].to_pylist(),
            sends["primaryAttributeValue"].to_pylist(),
            strict=True,
        )
    )
    assert pairs and all(shown[email_id] == name for email_id, name in pairs)


def test_emails_filter_by_updated_window_status_and_folder(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    state = sandbox.control.state
    times = sorted(e["updatedAt"] for e in state.emails)
    low, high = times[5], times[20]
    window = browse_all(
        sandbox, api, "emails.json", earliestUpdatedAt=low.strftime(ISO), latestUpdatedAt=high.strftime(ISO)
    )
    expected = [e["id"] for e in state.emails if low <= e["updatedAt"] <= high]
    assert [e["id"] for e in window] == expected and 0 < len(expected) < len(state.emails)
    drafts = browse_all(sandbox, api, "emails.json", status="draft")
    assert {e["id"] for e in drafts} == {e["id"] for e in state.emails if e["status"] == "draft"}
    program = state.emails[4]["folder"]["value"]
    folder = json.dumps({"id": program, "type": "Program"})
    assert {e["folder"]["value"] for e in browse_all(sandbox, api, "emails.json", folder=folder)} == {program}
    bad = get(sandbox, api, "emails.json", status="published")
    assert bad["errors"][0]["code"] == "1003" and "approved" in bad["errors"][0]["message"]
    typo = get(sandbox, api, "emails.json", earliestUpdateAt="2026-01-01")
    assert typo["errors"][0]["code"] == "1003" and "earliestUpdateAt" in typo["errors"][0]["message"]


def test_email_by_id_and_by_name(sandbox: SandboxServer, api: requests.Session) -> None:
    first = sandbox.control.state.emails[0]
    (by_id,) = get(sandbox, api, f"email/{first['id']}.json")["result"]
    assert by_id["id"] == first["id"] and by_id["createdAt"].endswith("Z+0000")
    folder = json.dumps({"id": first["folder"]["value"], "type": "Program"})
    assert get(sandbox, api, "email/byName.json", name=first["name"], folder=folder)["result"] == [by_id]
    missing = get(sandbox, api, "email/99999999.json")
    assert missing["success"] is True and "result" not in missing and missing["warnings"] == NO_ASSETS


# --- segmentations ----------------------------------------------------------------------------------------


def test_segmentations_have_the_captured_shape(
    sandbox: SandboxServer, api: requests.Session, spec: dict[str, Any]
) -> None:
    captured = [
        json.loads(line)["data"] for line in _lines("programs/real_airbyte__segmentation_records.jsonl")
    ]
    items = get(sandbox, api, "segmentation.json")["result"]
    assert items and all(set(item) == set(captured[0]) for item in items)
    for item in items:
        assert_fits(item, "SegmentationResponse", spec)
        assert set(item["folder"]) == set(captured[0]["folder"])
        asset_time(item["createdAt"])
    approved = get(sandbox, api, "segmentation.json", status="approved")["result"]
    assert approved and {s["status"] for s in approved} == {"approved"} and len(approved) < len(items)


def test_segments_of_a_segmentation_page_like_every_asset_browse(
    sandbox: SandboxServer, api: requests.Session, spec: dict[str, Any]
) -> None:
    segmentation = sandbox.control.state.segmentations[0]
    segments = browse_all(sandbox, api, f"segmentation/{segmentation['id']}/segments.json")
    assert [s["name"] for s in segments] == [s["name"] for s in segmentation["segments"]]
    assert "Default" in [s["name"] for s in segments]
    for segment in segments:
        assert_fits(segment, "SegmentsResponse", spec)
        assert segment["segmentationId"] == segmentation["id"]
    unknown = get(sandbox, api, "segmentation/9999/segments.json")
    assert unknown["success"] is True and unknown["warnings"] == NO_ASSETS


# --- My Tokens ----------------------------------------------------------------------------------------------


def test_program_tokens_include_the_folders_and_the_nearest_wins(
    sandbox: SandboxServer, api: requests.Session, spec: dict[str, Any]
) -> None:
    state = sandbox.control.state
    welcome = next(c for c in state.campaigns if c["name"] == "Molequle Welcome Trigger")
    program_id = welcome["parentProgramId"]
    body = get(sandbox, api, f"folder/{program_id}/tokens.json", folderType="Program")
    assert body["success"] is True and body["errors"] == [] and body["warnings"] == []
    (result,) = body["result"]
    assert result["folder"] == {"type": "Program", "value": program_id}
    names = {t["name"]: t for t in result["tokens"]}
    assert {"Welcome Message", "Offer URL", "Company Name"} <= set(names)  # own and the folder's
    for token in result["tokens"]:
        assert_fits(token, "TokenDTO", spec) and set(token) == {"name", "type", "value", "computedUrl"}
    assert "#MF" in names["Company Name"]["computedUrl"] and names["Welcome Message"]["computedUrl"].endswith(
        f"{program_id}C3"
    )
    folder_id = state.programs.filter(pc.equal(state.programs["id"], program_id))["folderId"][0].as_py()
    folder = get(sandbox, api, f"folder/{folder_id}/tokens.json", folderType="Folder")["result"][0]
    assert {t["name"] for t in folder["tokens"]} < set(names)
    assert get(sandbox, api, f"folder/{folder_id}/tokens.json")["result"] == [folder]  # Folder is the default


def test_token_settings_and_errors(sandbox: SandboxServer, api: requests.Session, monkeypatch) -> None:
    program_id = int(sandbox.control.state.programs["id"][0].as_py())
    monkeypatch.setattr(sandbox.config.behaviour, "tokens_include_inherited", False)
    own = get(sandbox, api, f"folder/{program_id}/tokens.json", folderType="Program")["result"][0]["tokens"]
    assert "Company Name" not in {t["name"] for t in own}
    missing = get(sandbox, api, "folder/424242/tokens.json", folderType="Program")
    assert missing["success"] is False and missing["errors"][0]["code"] == "702" and missing["warnings"] == []
    monkeypatch.setattr(sandbox.config.behaviour, "unknown_token_folder_code", "warning")
    assert get(sandbox, api, "folder/424242/tokens.json", folderType="Program")["warnings"] == NO_ASSETS
    bad = get(sandbox, api, f"folder/{program_id}/tokens.json", folderType="Campaign")
    assert bad["errors"][0]["code"] == "1003"


def test_request_campaign_accepts_an_inherited_token(sandbox: SandboxServer, api: requests.Session) -> None:
    welcome = next(c for c in sandbox.control.state.campaigns if c["name"] == "Molequle Welcome Trigger")
    body = {"input": {"leads": [{"id": 1}], "tokens": [{"name": "{{my.Company Name}}", "value": "Acme"}]}}
    answer = rest_post(sandbox, api, f"campaigns/{welcome['id']}/trigger.json", body)
    assert answer["success"] is True, answer
    unknown = {"input": {"leads": [{"id": 1}], "tokens": [{"name": "{{my.Edition}}", "value": "Q9"}]}}
    assert rest_post(sandbox, api, f"campaigns/{welcome['id']}/trigger.json", unknown)["success"] is False


# --- smart campaign dates -----------------------------------------------------------------------------------


def test_campaign_dates_are_distinct_and_filter_by_updated_at(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    state = sandbox.control.state
    campaigns = browse_all(sandbox, api, "smartCampaigns.json")
    created = [asset_time(c["createdAt"]) for c in campaigns]
    updated = [asset_time(c["updatedAt"]) for c in campaigns]
    assert len(set(created)) > len(campaigns) // 2 and len(set(updated)) > len(campaigns) // 2
    assert all(u >= c for c, u in zip(created, updated, strict=True))
    middle = sorted(updated)[len(updated) // 2]
    recent = browse_all(sandbox, api, "smartCampaigns.json", earliestUpdatedAt=middle.strftime(ISO))
    assert {c["id"] for c in recent} == {c["id"] for c in state.campaigns if c["updatedAt"] >= middle}
    older = browse_all(sandbox, api, "smartCampaigns.json", latestUpdatedAt=middle.strftime(ISO))
    assert {c["id"] for c in older} == {c["id"] for c in state.campaigns if c["updatedAt"] <= middle}
    everything = browse_all(sandbox, api, "smartCampaigns.json", isActive="false")
    assert len(everything) == len(campaigns)  # isActive=false filters nothing (swagger: "Default false")


def test_churn_edits_campaigns_and_an_incremental_read_finds_exactly_them(sandbox: SandboxServer) -> None:
    sandbox.control.advance(3600)
    since = sandbox.control.clock.now()
    sandbox.control.advance(60)
    api = authorized_session(sandbox)  # an hour later: a fresh token
    report = sandbox.control.apply_churn({"campaign_updates": 0.2, "new_programs": 1}, seed=3)
    assert isinstance(report, churn.ChurnReport) and report.updated_campaign_ids
    changed = browse_all(sandbox, api, "smartCampaigns.json", earliestUpdatedAt=since.strftime(ISO))
    new_program = report.new_program_ids[0]
    new_campaigns = {c["id"] for c in sandbox.control.state.campaigns if c["parentProgramId"] == new_program}
    assert new_campaigns and {c["id"] for c in changed} == set(report.updated_campaign_ids) | new_campaigns
    later = since + timedelta(days=1)
    assert "result" not in get(sandbox, api, "smartCampaigns.json", earliestUpdatedAt=later.strftime(ISO))
    new_emails = browse_all(
        sandbox, api, "emails.json", folder=json.dumps({"id": new_program, "type": "Program"})
    )
    assert len(new_emails) == 3


def _lines(path: str) -> list[str]:
    return [line for line in (MARKETO_FIXTURES / path).read_text().splitlines() if line.strip()]
