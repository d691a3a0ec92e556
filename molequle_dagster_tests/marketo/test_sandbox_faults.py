"""Every fault the sandbox can inject, against the client over real HTTP: each ends in the complete,
correct data or a clear exception — never partial data reported as success."""

from __future__ import annotations

import pytest

from molequle_dagster.marketo import errors as E
from molequle_dagster.marketo.config import RetryConfig
from molequle_dagster.sandbox.faults import ENVELOPE_FAULTS, HTTP_FAULTS
from molequle_dagster_tests.marketo.conftest import window

LEADS = "GET /rest/v1/leads.json"
RECOVERABLE = sorted(
    (set(HTTP_FAULTS) | {"connection_reset", "html_502", "malformed_json"} | set(ENVELOPE_FAULTS))
    - {"daily_quota"}
)


def lead_page(client, ids: list[int]) -> list[dict]:
    return sorted(client.leads_by_filter("id", ids, ["id", "email", "updatedAt"]), key=lambda r: r["id"])


@pytest.fixture
def some_ids(sb) -> list[int]:
    return [p["id"] for p in sb.control.truth_people(["id"])[:40]]


@pytest.mark.parametrize("kind", RECOVERABLE)
def test_recoverable_fault_ends_in_the_complete_answer(sb, make_client, some_ids, kind: str) -> None:
    client, vt = make_client(sb)
    expected = lead_page(client, some_ids)
    assert len(expected) == len(some_ids)
    sb.control.inject_fault(LEADS, kind, nth=1)
    assert lead_page(client, some_ids) == expected
    assert sb.control.faults()[0]["fired"] == 1
    if kind not in ("token_invalid", "token_expired"):
        assert vt.sleeps, "a retry must back off (virtual sleep)"


def test_slow_response_times_out_and_is_retried(sb, make_client, some_ids) -> None:
    client, _ = make_client(sb)
    client._transport.timeout_s = 0.5
    expected = lead_page(client, some_ids)
    sb.control.inject_fault(LEADS, "slow", nth=1, seconds=3.0)
    assert lead_page(client, some_ids) == expected


def test_daily_quota_stops_with_reset_time(sb, make_client, some_ids) -> None:
    client, vt = make_client(sb)
    sb.control.inject_fault(LEADS, "daily_quota", nth=1)
    with pytest.raises(E.DailyQuotaExceeded, match="daily quota exhausted, resets at") as info:
        lead_page(client, some_ids)
    assert info.value.resets_at.tzinfo is not None and "GET /rest/v1/leads.json" in str(info.value)
    assert vt.sleeps == []


@pytest.mark.parametrize("kind, error", [
    ("http_503", E.MarketoTransientError), ("html_502", E.MarketoTransientError),
    ("malformed_json", E.MalformedResponseError), ("timeout_604", E.MarketoTransientError),
    ("rate_limit", E.MarketoThrottleError), ("token_invalid", E.MarketoAuthError),
])
def test_persistent_fault_is_a_clear_error(sb, make_client, some_ids, kind: str, error: type) -> None:
    client, _ = make_client(sb, retry=RetryConfig(max_attempts=3, throttle_attempts=2))
    client.activity_types()  # token in hand
    sb.control.inject_fault(LEADS, kind, times=None)
    with pytest.raises(error) as info:
        lead_page(client, some_ids)
    assert "GET /rest/v1/leads.json" in str(info.value)
    assert "sandbox-secret" not in str(info.value)


def test_faults_on_the_activity_feed_keep_every_record(sb, make_client) -> None:
    from datetime import UTC, datetime, timedelta

    client, _ = make_client(sb)
    since = datetime.now(UTC) - timedelta(days=20)
    expected = [a["marketoGUID"] for a in client.activities_since(since, [1, 2, 6, 7, 10, 11, 12])]
    assert expected
    sb.control.inject_fault("GET /rest/v1/activities.json", "connection_reset", rate=0.3, times=5, seed=3)
    sb.control.inject_fault("GET /rest/v1/activities.json", "http_502", rate=0.3, times=5, seed=4)
    got = [a["marketoGUID"] for a in client.activities_since(since, [1, 2, 6, 7, 10, 11, 12])]
    assert got == expected


def test_bulk_endpoint_faults_still_give_the_whole_export(sb, make_client) -> None:
    fields = ["id", "email", "createdAt"]
    flt = {"createdAt": window(30)}
    expected = make_client(sb, store="clean")[0].bulk_export(
        "leads", fields=fields, filter=flt).read_all()
    assert expected.num_rows > 0
    for endpoint, kind in [
        ("POST /bulk/v1/leads/export/create.json", "http_500"),
        ("POST /bulk/v1/leads/export/{export_id}/enqueue.json", "connection_reset"),
        ("GET /bulk/v1/leads/export/{export_id}/status.json", "malformed_json"),
        ("GET /bulk/v1/leads/export/{export_id}/file.json", "html_502"),
        ("GET /bulk/v1/leads/export/{export_id}/file.json", "truncated_body"),
        ("GET /bulk/v1/leads/export/{export_id}/file.json", "rate_limit"),
    ]:
        sb.control.inject_fault(endpoint, kind, nth=1)
    client, _ = make_client(sb, store="faulty")  # its own ledger: a new export
    result = client.bulk_export("leads", fields=fields, filter=flt)
    assert result.reused is False
    assert result.read_all().equals(expected)
    assert all(rule["fired"] == 1 for rule in sb.control.faults())


TRIGGER = "POST /rest/v1/campaigns/{id}/trigger.json"


def test_trigger_is_retried_only_when_marketo_certainly_did_not_run_it(sb, make_client) -> None:
    client, _ = make_client(sb)
    campaign = client.smart_campaign_by_name("Molequle Welcome Trigger")
    endpoint = TRIGGER
    before = len(sb.control.campaign_requests())
    sb.control.inject_fault(endpoint, "rate_limit", nth=1)  # 606: not run, safe to retry
    client.request_campaign(campaign["id"], [1, 2])
    assert len(sb.control.campaign_requests()) == before + 1
    sb.control.inject_fault(endpoint, "connection_reset", nth=1)  # ambiguous: must not be repeated
    with pytest.raises(E.MarketoTransientError, match="may or may not have been applied"):
        client.request_campaign(campaign["id"], [3])
    rules = sb.control.faults()
    assert [r["fired"] for r in rules] == [1, 1]
    assert rules[-1]["seen"] == 1  # exactly one attempt reached the server


def test_expired_token_is_refreshed_transparently(sb, make_client, some_ids) -> None:
    client, _ = make_client(sb)
    expected = lead_page(client, some_ids)
    sb.control.expire_tokens()  # the cached token is now stale on the server: 602, then refresh
    with client.stats.measure() as delta:
        assert lead_page(client, some_ids) == expected
    assert delta["calls"]["POST /identity/oauth/token"] == 1
    assert delta["errors"] == {"602": 1}


def test_two_auth_errors_in_a_row_are_refreshed_again_not_fatal(sb, make_client) -> None:
    """Issue 16 item 1: a second 601 right after the refresh failed the run for good."""
    client, vt = make_client(sb)
    expected = client.activity_types()
    sb.control.inject_fault("GET /rest/v1/activities/types.json", "token_invalid", nth=1, times=2)
    with client.stats.measure() as spent:
        assert client.activity_types() == expected
    assert spent["errors"] == {"601": 2} and spent["calls"]["GET /rest/v1/activities/types.json"] == 3
    assert len([s for s in vt.sleeps if s > 0]) == 1  # the second refresh backs off first


def test_two_auth_errors_in_a_row_on_a_bulk_file_download(sb, make_client) -> None:
    client, _ = make_client(sb)
    flt = {"createdAt": window(9)}
    file = "GET /bulk/v1/leads/export/{export_id}/file.json"
    sb.control.inject_fault(file, "token_invalid", nth=1, times=2)
    table = client.bulk_export("leads", fields=["id"], filter=flt).read_all()
    assert table.num_rows > 0 and sb.control.faults()[0]["fired"] == 2


def test_bad_credentials_stay_fatal_at_once(sb, make_client) -> None:
    client, vt = make_client(sb, secret="not-the-secret")
    with pytest.raises(E.MarketoAuthError, match="identity endpoint rejected the client credentials") as info:
        client.activity_types()
    assert "not-the-secret" not in str(info.value) and vt.sleeps == []
