"""Asset API routes over real HTTP (docs/marketo.md §5.8, §9, §10, §13): envelopes with errors/warnings,
`…Z+0000` timestamps, offset/maxReturn browsing to the "No assets found" end, filters, by-id/by-name;
shapes compared with Adobe doc examples and captured responses."""

from __future__ import annotations

import json
import re

import pytest
import requests

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.sandbox.conftest import fast_config, load_fixture

ASSET_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\+0000$")
NO_ASSETS = ["No assets found for the given search criteria."]


@pytest.fixture(scope="module")
def sandbox_config() -> SandboxConfig:
    return fast_config(enforce_limits=False, people=100, activities_per_person=2, programs=25)


def get(sandbox: SandboxServer, api: requests.Session, path: str, **params: object) -> dict:
    body = api.get(f"{sandbox.base_url}/rest/asset/v1/{path}", params=params, timeout=10).json()
    assert body["errors"] == [] or body["success"] is False
    assert isinstance(body["warnings"], list)  # asset envelopes always carry both
    return body


def fixture(path: str) -> dict:
    body = load_fixture(path)
    return body.get("responseBody", body)


def test_program_browse_pages_to_the_end_warning(sandbox: SandboxServer, api: requests.Session) -> None:
    seen: list[int] = []
    offset = 0
    while True:
        page = get(sandbox, api, "programs.json", offset=offset, maxReturn=10)
        if "result" not in page:
            assert page["success"] is True and page["warnings"] == NO_ASSETS
            break
        seen += [p["id"] for p in page["result"]]
        offset += 10
    assert sorted(seen) == sorted(sandbox.control.state.programs["id"].to_pylist())
    doc = fixture("programs/doc_programs__browse__response.json")
    first = get(sandbox, api, "programs.json", maxReturn=1)
    assert set(first) == set(doc)
    assert set(first["result"][0]) == set(doc["result"][0])
    assert set(first["result"][0]["folder"]) == set(doc["result"][0]["folder"])
    assert ASSET_TS.match(first["result"][0]["createdAt"]) and ASSET_TS.match(first["result"][0]["updatedAt"])


def test_programs_filter_by_id_and_by_created_or_updated_since(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    programs = sandbox.control.state.programs.to_pylist()
    wanted = [programs[0]["id"], programs[3]["id"]]
    by_id = get(sandbox, api, "programs.json", filterType="id", filterValues=",".join(map(str, wanted)))
    assert [p["id"] for p in by_id["result"]] == wanted
    cutoff = sorted(p["updatedAt"] for p in programs)[len(programs) // 2]
    recent = get(
        sandbox, api, "programs.json", maxReturn=200, earliestUpdatedAt=cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")
    )["result"]
    expected = {p["id"] for p in programs if p["updatedAt"] >= cutoff or p["createdAt"] >= cutoff}
    assert {p["id"] for p in recent} == expected
    assert get(sandbox, api, "programs.json", maxReturn=201)["errors"][0]["code"] == "1003"
    assert get(sandbox, api, "programs.json", filterType="colour", filterValues="x")["success"] is False


def test_program_by_id_and_name(sandbox: SandboxServer, api: requests.Session) -> None:
    program = sandbox.control.state.programs.to_pylist()[2]
    by_id = get(sandbox, api, f"program/{program['id']}.json")
    assert set(by_id["result"][0]) == set(fixture("programs/doc_programs__by-id__response.json")["result"][0])
    by_name = get(sandbox, api, "program/byName.json", name=program["name"])
    assert by_name["result"] == by_id["result"]
    missing = get(sandbox, api, "program/999999.json")
    assert missing["success"] is True and "result" not in missing and missing["warnings"] == NO_ASSETS


def test_channels_match_the_doc_shape_and_start_with_not_in_program(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    doc = fixture("channels/doc_channels__browse__response.json")["result"][0]
    channels = get(sandbox, api, "channels.json", maxReturn=200)["result"]
    assert set(channels[0]) == set(doc)
    assert set(channels[0]["progressionStatuses"][0]) == set(doc["progressionStatuses"][0])
    assert all(c["progressionStatuses"][0]["name"] == "Not in Program" for c in channels)
    named = get(sandbox, api, "channel/byName.json", name=channels[1]["name"])["result"]
    assert named == [channels[1]]
    assert get(sandbox, api, "channel/byName.json")["errors"][0]["code"] == "701"


def test_smart_lists_carry_rules_only_when_asked(sandbox: SandboxServer, api: requests.Session) -> None:
    doc = fixture("lists/doc_smart-lists__browse__response.json")["result"][0]
    items = get(sandbox, api, "smartLists.json")["result"]
    assert set(doc) <= set(items[0])
    assert "rule" not in items[0] and "rules" not in items[0]
    with_rules = get(sandbox, api, f"smartList/{items[0]['id']}.json", includeRules="true")["result"][0]
    assert set(with_rules["rules"]) == {"filterMatchType", "triggers", "filters"}
    named = get(sandbox, api, "smartList/byName.json", name="All People for Molequle")["result"]
    assert [s["name"] for s in named] == ["All People for Molequle"]


def test_static_lists_by_id_and_an_unknown_name_answers_the_captured_warning(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    doc = fixture("lists/doc_static-lists__browse__response.json")["result"][0]
    items = get(sandbox, api, "staticLists.json")["result"]
    assert set(doc) <= set(items[0]) and "lead_ids" not in items[0]
    assert get(sandbox, api, f"staticList/{items[0]['id']}.json")["result"] == [items[0]]
    missing = get(sandbox, api, "staticList/byName.json", name="(test) High Value")
    captured = fixture("lists/real_grouparoo__staticList_byName_not_found_warning.json")
    assert set(missing) == set(captured) and missing["warnings"] == captured["warnings"]


def test_smart_campaigns_filter_by_active_and_by_folder(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    doc = fixture("campaigns/doc_smart-campaigns__by-id__response.json")["result"][0]
    active = get(sandbox, api, "smartCampaigns.json", isActive="true", maxReturn=200)["result"]
    assert active and all(c["isActive"] for c in active)
    assert set(doc) <= set(active[0]) and "tokens" not in active[0]
    everything = get(sandbox, api, "smartCampaigns.json", maxReturn=200)["result"]
    assert len(everything) > len(active)
    one = get(sandbox, api, f"smartCampaign/{active[0]['id']}.json")["result"]
    assert one == [active[0]]
    assert get(sandbox, api, "smartCampaign/byName.json", name=active[0]["name"])["result"] == one
    folder = json.dumps(active[0]["folder"])
    in_folder = get(sandbox, api, "smartCampaigns.json", folder=folder, maxReturn=200)["result"]
    assert active[0]["id"] in {c["id"] for c in in_folder}
    assert get(sandbox, api, "smartCampaigns.json", folder="not json")["errors"][0]["code"] == "1003"


def test_folders_match_the_captured_shape_by_id_and_by_name(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    captured = load_fixture("folders/real_embulk__folder_records.json")[0]
    folders = get(sandbox, api, "folders.json", maxReturn=200)["result"]
    assert set(captured) == set(folders[0])
    assert get(sandbox, api, f"folder/{folders[0]['id']}.json")["result"] == [folders[0]]
    assert get(sandbox, api, "folder/byName.json", name=folders[0]["name"])["result"] == [folders[0]]
