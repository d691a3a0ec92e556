"""REST reads and the three writes against the sandbox over real HTTP, checked against its ground truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from molequle_dagster.marketo import errors as E
from molequle_dagster.marketo.timeutil import parse_marketo_datetime


def test_sync_leads_update_by_id_gives_typed_results_in_input_order(sb, make_client) -> None:
    client, _ = make_client(sb)
    ids = [p["id"] for p in sb.control.truth_people(["id"])[:301]]
    records = [{"id": i, "title": f"Title {i}"} for i in ids] + [{"id": 99_999_999, "title": "ghost"}]
    results = client.sync_leads_update_by_id(records)
    assert [r.index for r in results] == list(range(len(records)))
    assert all(r.ok and r.status == "updated" and r.lead_id == i for r, i in zip(results, ids, strict=False))
    ghost = results[-1]
    assert ghost.status == "skipped" and ghost.reasons[0].code == "1004"
    truth = {p["id"]: p["title"] for p in sb.control.truth_people(["title"])}
    assert all(truth[i] == f"Title {i}" for i in ids)
    assert client.stats.snapshot()["calls"]["POST /rest/v1/leads.json"] == 2  # 302 records, 300 per call


def test_sync_leads_rejects_records_without_an_integer_id(sb, make_client) -> None:
    client, _ = make_client(sb)
    with pytest.raises(ValueError, match=r"records\[1\]\.id: expected an integer"):
        client.sync_leads_update_by_id([{"id": 1}, {"email": "x@y.z"}])


def test_request_campaign_batches_100_and_sends_my_tokens(sb, make_client) -> None:
    client, _ = make_client(sb)
    campaign = client.smart_campaign_by_name("Molequle Welcome Trigger")
    assert campaign and campaign["isRequestable"]
    ids = [p["id"] for p in sb.control.truth_people(["id"])[:150]]
    before = len(sb.control.campaign_requests())
    calls = client.request_campaign(campaign["id"], ids,
                                    {"Welcome Message": "Hello, world", "my.Offer URL": "https://x.test"})
    assert calls == 2
    sent = sb.control.campaign_requests()[before:]
    assert [len(r["leadIds"]) for r in sent] == [100, 50]
    assert sorted(lead for r in sent for lead in r["leadIds"]) == sorted(ids)
    assert "{{my.Welcome Message}}" in str(sent[0]["tokens"]) and "{{my.Offer URL}}" in str(sent[0]["tokens"])


def test_request_campaign_on_a_batch_campaign_is_fatal(sb, make_client) -> None:
    client, _ = make_client(sb)
    batch = client.smart_campaign_by_name("Molequle Quarterly Newsletter")
    with pytest.raises(E.MarketoFatalError, match="code=1003"):
        client.request_campaign(batch["id"], [1])


def test_schedule_campaign_sends_one_request_with_its_tokens(sb, make_client) -> None:
    client, _ = make_client(sb)
    batch = client.smart_campaign_by_name("Molequle Quarterly Newsletter")
    before = len(sb.control.campaign_requests())
    client.schedule_campaign(batch["id"], run_at=datetime.now(UTC) + timedelta(hours=1),
                             tokens={"Edition": "Q9"})
    sent = sb.control.campaign_requests()[before:]
    assert len(sent) == 1 and sent[0]["kind"] == "schedule" and "Q9" in str(sent[0]["tokens"])


def test_asset_browse_and_lookups(sb, make_client) -> None:
    client, _ = make_client(sb)
    programs = list(client.programs())
    assert programs and len({p["id"] for p in programs}) == len(programs)
    cutoff = max(parse_marketo_datetime(p["updatedAt"]) for p in programs) - timedelta(days=1)
    recent = list(client.programs(earliest_updated_at=cutoff, latest_updated_at=datetime.now(UTC)))
    assert {p["id"] for p in recent} <= {p["id"] for p in programs}
    assert client.program(programs[0]["id"])["name"] == programs[0]["name"]
    channels = list(client.channels())
    assert {p["channel"] for p in programs} <= {c["name"] for c in channels}
    smart_list = next(iter(client.smart_lists()))
    assert client.smart_list(smart_list["id"])["name"] == smart_list["name"]
    assert client.smart_list_by_name(smart_list["name"])["id"] == smart_list["id"]
    static = next(iter(client.static_lists()))
    members = list(client.static_list_leads(static["id"], ["id", "email"]))
    assert members and all("id" in lead for lead in members)
    campaign = next(iter(client.smart_campaigns()))
    assert client.smart_campaign(campaign["id"])["id"] == campaign["id"]


def test_asset_browse_pages_by_offset(sb, make_client, monkeypatch) -> None:
    from molequle_dagster.marketo import paging

    client, _ = make_client(sb)
    everything = list(client.programs())
    original = paging.asset_pages
    monkeypatch.setattr(paging, "asset_pages", lambda f, p, **kw: original(f, p, max_return=2, **{
        k: v for k, v in kw.items() if k != "max_return"}))
    with client.stats.measure() as delta:
        assert [p["id"] for p in client.programs()] == [p["id"] for p in everything]
    assert delta["calls"]["GET /rest/asset/v1/programs.json"] >= len(everything) // 2


def test_lead_database_reads_split_filter_values_and_return_every_match(sb, make_client) -> None:
    client, _ = make_client(sb)
    people = sb.control.truth_people(["id", "email", "externalCompanyId"])
    ids = [p["id"] for p in people][:350]  # more than 300 filter values: two calls
    assert sorted(r["id"] for r in client.leads_by_filter("id", ids, ["id", "email"])) == sorted(ids)
    ext = sorted({p["externalCompanyId"] for p in people if p["externalCompanyId"]})[:5]
    assert {c["externalCompanyId"] for c in client.companies("externalCompanyId", ext)} == set(ext)
    assert list(client.named_accounts("name", ["no such account"])) == []
    describe2 = client.describe_leads2()
    assert any(f["name"] == "email" for f in describe2[0]["fields"])
    assert client.usage()[0]["total"] > 0
    assert {t["id"] for t in client.activity_types()} >= {1, 2, 6, 12}


def test_activity_feeds_respect_the_window(sb, make_client) -> None:
    client, _ = make_client(sb)
    since = datetime.now(UTC) - timedelta(days=30)
    until = datetime.now(UTC) - timedelta(days=10)
    acts = list(client.activities_since(since, [1, 2, 6, 7, 10, 11, 12], until=until))
    assert acts and all(since <= parse_marketo_datetime(a["activityDate"]) <= until for a in acts)
    changes = list(client.lead_changes_since(since, ["email", "title"]))
    assert changes and all(c["activityTypeId"] in (12, 13) for c in changes)
    victim = sb.control.truth_people(["id"])[-1]["id"]
    client._transport.request("POST", "/rest/v1/leads/delete.json", json_body={"input": [{"id": victim}]})
    deleted = list(client.deleted_leads_since(since))
    assert victim in [d["leadId"] for d in deleted]
    assert all(parse_marketo_datetime(d["activityDate"]) >= since for d in deleted)
    with pytest.raises(ValueError, match="activity_type_ids: expected at least one"):
        list(client.activities_since(since, []))
