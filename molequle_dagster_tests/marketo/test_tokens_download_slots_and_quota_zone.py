"""Tokens, download slots and the quota zone, against the sandbox over real HTTP: the secret stays out of
URLs, no token re-fetch thrash near expiry, a bulk download holds an in-flight slot while it streams (and
leaves one for other calls), and the quota-reset zone is a setting."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from molequle_dagster.marketo import errors as E
from molequle_dagster.marketo.config import BulkConfig, ConfigError, MarketoConfig, PacingConfig
from molequle_dagster.sandbox.config import DEFAULT_CLIENT_SECRET
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.marketo.conftest import FAST_BULK, small_config, window

IDENTITY = "/identity/oauth/token"


def identity_calls(sb: SandboxServer) -> int:
    return sum(n for key, n in sb.control.call_counts().items() if key.endswith(IDENTITY))


@pytest.fixture
def short_token_sandbox() -> Iterator[SandboxServer]:
    """Tokens live 50 s: every token the client sees is already inside its 60-s refresh margin."""
    config = small_config()
    config.tokens.lifetime_s = 50
    with SandboxServer(config, port=0) as server:
        server.control.freeze()
        yield server


# --- the client secret never appears in a URL -----------------------------------------------------


def test_token_request_posts_the_secret_in_a_form_body(short_token_sandbox, make_client, caplog) -> None:
    sb = short_token_sandbox
    client, _ = make_client(sb)
    with caplog.at_level(logging.DEBUG, logger="urllib3"):
        client.activity_types()
    urls = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any(IDENTITY in line for line in urls)  # urllib3 logged the identity request line ...
    assert not any(DEFAULT_CLIENT_SECRET in line for line in urls)  # ... without the secret in it
    identity = [r for r in sb.control.request_log() if r["path"] == IDENTITY]
    assert [r["method"] for r in identity] == ["POST"] and identity[0]["status"] == 200


# --- no identity call per request near expiry -----------------------------------------------------


def test_token_inside_the_refresh_margin_is_kept_until_it_expires(short_token_sandbox, make_client) -> None:
    sb = short_token_sandbox
    client, _ = make_client(sb)
    for _ in range(10):
        client.activity_types()
    assert identity_calls(sb) <= 2  # before the fix: one per call
    first_token_calls = identity_calls(sb)
    sb.control.advance(51)  # the token really expires: the 602 path gets a new one
    with client.stats.measure() as delta:
        for _ in range(5):
            client.activity_types()
    assert delta["errors"] == {"602": 1}
    assert identity_calls(sb) == first_token_calls + 1


# --- a bulk download holds one in-flight slot until it is closed ----------------------------------


def test_open_download_holds_a_slot_and_leaves_one_for_other_calls(sb, make_client) -> None:
    pacing = PacingConfig(calls_per_20s=100, window_s=0.01, max_in_flight=2)
    state = "shared"  # one store: the slots are shared as between Dagster processes
    small_blocks = BulkConfig(poll_interval_s=0.0, job_timeout_s=600.0, block_size=2048)
    downloader, _ = make_client(sb, pacing=pacing, store=state, bulk=small_blocks)
    first, _ = make_client(sb, pacing=pacing, store=state)
    second, _ = make_client(sb, pacing=pacing, store=state)
    result = downloader.bulk_export("activities", fields=None, filter={"createdAt": window(31)})
    assert result.file_size > 64 * 1024  # far more than the parser reads ahead for its first batch
    batches = result.batches()
    next(batches)  # the download is open mid-file

    # The same process can still call while it holds the download (no deadlock on its own slot).
    assert downloader.activity_types()

    base = sb.context.limiter.in_flight
    sb.control.inject_fault("GET /rest/v1/activities/types.json", "slow", times=2, seconds=30.0)
    threads = [threading.Thread(target=c.activity_types) for c in (first, second)]
    try:
        for t in threads:
            t.start()
        assert sb.control.wait_for_in_flight(base + 1, timeout=5.0)
        # Download + one call = both slots: the other call waits on our side, never reaching Marketo.
        assert not sb.control.wait_for_in_flight(base + 2, timeout=0.5)
        batches.close()  # closing the download gives its slot back
        assert sb.control.wait_for_in_flight(base + 2, timeout=5.0)
    finally:
        sb.control.clear_faults()  # releases the held responses
        for t in threads:
            t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)


def test_download_completes_and_frees_its_slot(sb, make_client) -> None:
    pacing = PacingConfig(calls_per_20s=100, window_s=0.01, max_in_flight=2)
    client, _ = make_client(sb, pacing=pacing, store="s")
    for days in (3, 4):  # two downloads in a row: the first one's slot came back
        assert client.bulk_export("leads", fields=["id"], filter={"createdAt": window(days)}).read_all()
    assert client.activity_types()


def test_fewer_than_two_in_flight_slots_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"pacing\.max_in_flight: Input should be greater than or equal to 2"
                                          r" \(got 1\)"):
        PacingConfig.build({"max_in_flight": 1}, "pacing")


# --- the quota-reset zone is a client setting ----------------------------------------------------


def test_quota_reset_follows_the_configured_zone(sb, make_client) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    client, _ = make_client(sb, quota_timezone="Europe/Berlin", store="s")
    sb.control.inject_fault("GET /rest/v1/activities/types.json", "daily_quota", nth=1)
    with pytest.raises(E.DailyQuotaExceeded) as daily:
        client.activity_types()
    sb.control.inject_fault("POST /bulk/v1/leads/export/{export_id}/enqueue.json", "export_quota", nth=1)
    with pytest.raises(E.ExportQuotaExceeded) as export:
        client.bulk_export("leads", fields=["id"], filter={"createdAt": window(14)})
    for resets_at in (daily.value.resets_at, export.value.resets_at):
        assert resets_at.tzinfo == berlin and resets_at.timetz() == time(0, 0, tzinfo=berlin)
        assert resets_at > datetime.now(berlin)
    assert "+01:00" in str(daily.value) or "+02:00" in str(daily.value)  # Berlin's offset, not Chicago's


def test_quota_zone_defaults_to_chicago_and_rejects_unknown_zones(make_client, sb) -> None:
    assert MarketoConfig(base_url=sb.base_url).zone == ZoneInfo("America/Chicago")
    client, _ = make_client(sb, bulk=FAST_BULK)
    sb.control.inject_fault("GET /rest/v1/activities/types.json", "daily_quota", nth=1)
    with pytest.raises(E.DailyQuotaExceeded) as daily:
        client.activity_types()
    assert daily.value.resets_at.tzinfo == ZoneInfo("America/Chicago")
    with pytest.raises(ConfigError, match=r"marketo\.quota_timezone: must be an IANA time zone name"):
        MarketoConfig.build({"base_url": sb.base_url, "quota_timezone": "Central Standard Time"}, "marketo")
