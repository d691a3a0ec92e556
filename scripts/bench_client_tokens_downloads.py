"""Client figures: identity calls per REST call near token expiry, bulk download speed with the download
holding an in-flight slot (on a SQLite and, with DAGSTER_PG_URL, a PostgreSQL coordination store), and
the sandbox's 413 on a large chunked body.

    PYTHONPATH=. .venv/bin/python scripts/bench_client_tokens_downloads.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import requests

from molequle_dagster.marketo import BulkConfig, MarketoClient, MarketoConfig, PacingConfig
from molequle_dagster.sandbox.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.fixtures import sandbox_access_token

CALLS = 200
PACING = PacingConfig(calls_per_20s=100, window_s=0.01, max_in_flight=2)  # no pacing wait to speak of
BULK = BulkConfig(poll_interval_s=0.0)


def client(server: SandboxServer, store: str | Path) -> MarketoClient:
    config = MarketoConfig(base_url=server.base_url, pacing=PACING, bulk=BULK)
    return MarketoClient(config, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, store=store)


def token_near_expiry(state: str | Path) -> None:
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
    print(f"token near expiry ({store_kind(state)}): {CALLS} calls, {identity} identity calls, "
          f"{CALLS / seconds:,.0f} calls/s")


def bulk_download(state: str | Path) -> None:
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
    megabytes = result.file_size / 1e6
    print(f"bulk download ({store_kind(state)}, slot held while streaming): {rows:,} rows, {megabytes:.1f} MB"
          f" in {seconds:.2f}s = {rows / seconds:,.0f} rows/s, {megabytes / seconds:.1f} MB/s")


def chunked_413() -> None:
    config = SandboxConfig.for_profile("fast")
    config.data.people = 50
    with SandboxServer(config, port=0) as server:
        token = sandbox_access_token(server.base_url)
        piece = b"x" * 65536
        size_mb = 16
        started = time.perf_counter()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        answer = requests.post(f"{server.base_url}/rest/v1/leads.json", timeout=60,
                               data=(piece for _ in range(size_mb * 16)), headers=headers)
        seconds = time.perf_counter() - started
    print(f"chunked {size_mb} MB body: HTTP {answer.status_code} in {seconds:.2f}s")


def store_kind(store: str | Path) -> str:
    return "PostgreSQL store" if str(store).startswith("postgresql") else "SQLite store"


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        stores: list[str | Path] = [Path(tmp) / "a"]
        if os.environ.get("DAGSTER_PG_URL"):
            stores.append(os.environ["DAGSTER_PG_URL"])
        for store in stores:
            token_near_expiry(store)
            bulk_download(store)
        chunked_413()
