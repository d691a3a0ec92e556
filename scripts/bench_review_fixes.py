"""Figures for the review fixes: identity calls per REST call near token expiry, bulk download speed with
the download holding an in-flight slot, and the sandbox's 413 on a large chunked body.

    .venv/bin/python scripts/bench_review_fixes.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import requests

from molequle_dagster.marketo import BulkConfig, MarketoClient, PacingConfig
from molequle_dagster.sandbox.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer

CALLS = 200
PACING = PacingConfig(calls_per_window=100_000, window_s=1.0, max_in_flight=2)
BULK = BulkConfig(poll_interval_s=0.0)


def client(server: SandboxServer, state: Path) -> MarketoClient:
    return MarketoClient(server.base_url, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, state_dir=state,
                         pacing=PACING, bulk=BULK)


def token_near_expiry(state: Path) -> None:
    config = SandboxConfig.for_profile("fast")
    config.data.people = 200
    config.tokens.lifetime_s = 50  # every token is inside the client's 60-s refresh margin
    config.limits.enforce = False
    with SandboxServer(config, port=0) as server, client(server, state) as c:
        started = time.perf_counter()
        for _ in range(CALLS):
            c.activity_types()
        seconds = time.perf_counter() - started
        identity = sum(n for k, n in server.control.call_counts().items() if "identity" in k)
    print(f"token near expiry: {CALLS} calls, {identity} identity calls, {CALLS / seconds:,.0f} calls/s")


def bulk_download(state: Path) -> None:
    config = SandboxConfig.for_profile("fast")
    config.data.people = 20_000
    config.data.activities_per_person = 20
    config.limits.enforce = False
    with SandboxServer(config, port=0) as server, client(server, state) as c:
        end = server.control.clock.now().replace(microsecond=0)
        flt = {"createdAt": {"startAt": (end.replace(day=1)).strftime("%Y-%m-%dT00:00:00Z"),
                             "endAt": end.strftime("%Y-%m-%dT%H:%M:%SZ")}}
        result = c.bulk_export("activities", fields=None, filter=flt)
        started = time.perf_counter()
        rows = sum(batch.num_rows for batch in result.batches())
        seconds = time.perf_counter() - started
    print(f"bulk download (slot held while streaming): {rows:,} rows, {result.file_size / 1e6:.1f} MB in "
          f"{seconds:.2f}s = {rows / seconds:,.0f} rows/s, {result.file_size / 1e6 / seconds:.1f} MB/s")


def chunked_413() -> None:
    config = SandboxConfig.for_profile("fast")
    config.data.people = 50
    with SandboxServer(config, port=0) as server:
        token = requests.post(f"{server.base_url}/identity/oauth/token", timeout=10, data={
            "grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET}).json()["access_token"]
        piece = b"x" * 65536
        size_mb = 16
        started = time.perf_counter()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        answer = requests.post(f"{server.base_url}/rest/v1/leads.json", timeout=60,
                               data=(piece for _ in range(size_mb * 16)), headers=headers)
        seconds = time.perf_counter() - started
    print(f"chunked {size_mb} MB body: HTTP {answer.status_code} in {seconds:.2f}s")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        token_near_expiry(Path(tmp) / "a")
        bulk_download(Path(tmp) / "b")
        chunked_413()
