"""What today cost: Marketo's own count (all integrations, per API user) beside our record in the store
(calls our pacers admitted, bytes of our completed exports), asked of Marketo at most once a minute."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from molequle_dagster_tests.marketo.conftest import window


def test_usage_today_adds_our_record_to_marketos_count(sb, make_client, make_store) -> None:
    client, _ = make_client(sb, store="shared")
    other_process, _ = make_client(sb, store="shared")
    client.activity_types()
    other_process.activity_types()
    export = other_process.bulk_export("leads", fields=["id", "email"], filter={"createdAt": window(12)})
    export.read_all()
    usage = client.usage_today()
    ours = client.stats.snapshot()["total_calls"] + other_process.stats.snapshot()["total_calls"]
    chicago = ZoneInfo("America/Chicago")
    assert usage.day == datetime.now(chicago).date()
    assert usage.resets_at.timetz() == time(0, 0, tzinfo=chicago)
    # Our record: every call both processes' pacers admitted (identity calls are not paced), today.
    identity = sum(n for k, n in client.stats.snapshot()["calls"].items() if "identity" in k)
    identity += sum(n for k, n in other_process.stats.snapshot()["calls"].items() if "identity" in k)
    assert usage.our_calls == ours - identity
    assert usage.our_export_bytes == export.file_size > 0 and usage.our_exports == 1
    # Marketo's count covers the whole instance (the sandbox counts every test's calls), per API user.
    assert usage.instance_calls is not None and usage.instance_calls >= usage.our_calls
    assert usage.calls_by_user.get("molequle@sandbox", 0) >= usage.our_calls
    assert usage.instance_day == usage.day.isoformat()


def test_usage_today_asks_marketo_at_most_once_a_minute(sb, make_client) -> None:
    client, vt = make_client(sb)
    with client.stats.measure() as spent:
        first = client.usage_today()
        client.activity_types()
        again = client.usage_today()
        assert again is first  # cached: one step asks once
        vt.now += 61
        fresh = client.usage_today()
    assert spent["calls"]["GET /rest/v1/stats/usage.json"] == 2
    assert fresh.our_calls == first.our_calls + 2  # activity_types and the first stats call


def test_a_quota_stop_is_recorded_for_every_process(sb, make_client) -> None:
    from molequle_dagster.marketo import errors as E

    client, _ = make_client(sb, store="shared")
    other, _ = make_client(sb, store="shared")
    assert other.quota_stops() == {}
    sb.control.inject_fault("GET /rest/v1/activities/types.json", "daily_quota", nth=1)
    try:
        client.activity_types()
    except E.DailyQuotaExceeded as error:
        daily = error
    sb.control.inject_fault("POST /bulk/v1/leads/export/{export_id}/enqueue.json", "export_quota", nth=1)
    try:
        client.bulk_export("leads", fields=["id"], filter={"createdAt": window(4)})
    except E.ExportQuotaExceeded as error:
        exports = error
    stops = other.quota_stops()
    assert set(stops) == {"calls", "exports"}
    assert stops["calls"].resets_at == daily.resets_at.timestamp() and "607" in stops["calls"].reason
    assert stops["exports"].resets_at == exports.resets_at.timestamp() and "1029" in stops["exports"].reason
