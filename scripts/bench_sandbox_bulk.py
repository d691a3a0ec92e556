"""Benchmark the sandbox's Bulk Extract: file rendering (rows/s, MB/s), file serving over loopback (MB/s), and
how fast create/enqueue/status answer while a big file is written (they must not wait for it).

    .venv/bin/python scripts/bench_sandbox_bulk.py --rows 3000000
    .venv/bin/python scripts/bench_sandbox_bulk.py --rows 0 --people 1000000

Builds an instance with `--rows` activities in one 31-day window (attributes rendered from seeds by
attributes.render_attributes, as for generated data), exports them over real HTTP through SandboxServer
and downloads the file several times, whole and with a Range. With `--people`, also generates an instance
of that many people and exports everyone on the all-people smart list with 30 lead fields (most of them
derived per row at render time), timing the answers of enqueue and status while the file is written.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import requests

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.control import empty_state
from molequle_dagster.sandbox.model import ACTIVITIES_SCHEMA
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.fixtures import sandbox_access_token

NOW = datetime(2026, 3, 10, tzinfo=UTC)
START = NOW - timedelta(days=30)
TYPES = np.array([1, 2, 6, 7, 10, 11, 12], np.int32)  # web, forms, email: all kept by retention


def _activities(rows: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, 29 * 86400, rows))
    dates = pa.array((int(START.timestamp()) + seconds).astype("datetime64[s]"), pa.timestamp("s", tz="UTC"))
    type_ids = TYPES[rng.integers(0, len(TYPES), rows)]
    lead_ids = rng.integers(1, 200_000, rows)
    pav_ids = rng.integers(1000, 1100, rows)
    names = pa.array([f"Program {i}.Email {i % 7}" for i in range(100)])
    return pa.Table.from_arrays(
        [
            pa.array(np.arange(1, rows + 1, dtype=np.int64)),
            pa.array(lead_ids),
            dates,
            pa.array(type_ids),
            pa.array(np.where(rng.random(rows) < 0.5, rng.integers(1, 5000, rows), 0)).cast(pa.int64()),
            pa.array(pav_ids),
            names.take(pa.array(pav_ids - 1000)),
            pa.array(rng.integers(0, 2**62, rows)),
            pa.nulls(rows, pa.string()),
        ],
        schema=ACTIVITIES_SCHEMA,
    )


_token = sandbox_access_token


def _download(
    session: requests.Session, url: str, headers: dict[str, str] | None = None
) -> tuple[int, float]:
    started = time.perf_counter()
    size = 0
    with session.get(url, stream=True, timeout=120, headers=headers or {}) as response:
        response.raise_for_status()
        for chunk in response.iter_content(4 * 1024 * 1024):
            size += len(chunk)
    return size, time.perf_counter() - started


LEAD_FIELDS = [  # what a client syncing a wide lead table asks for: stored and derived fields mixed
    *("id", "email", "firstName", "lastName", "title", "company", "country", "leadScore", "updatedAt"),
    *("site", "billingStreet", "billingCity", "billingCountry", "mainPhone", "annualRevenue"),
    *("numberOfEmployees", "industry", "sicCode", "phone", "city", "state", "postalCode", "personTimeZone"),
    *("leadSource", "leadStatus", "mktoName", "cookies", "originalSourceType", "acquisitionProgramId"),
]


def _timed(call) -> tuple[dict, float]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    body = call()
    return body, (time.perf_counter() - started) * 1000


def leads_at_scale(people: int) -> None:
    """Enqueue and status answer at once while a file of wide lead rows is written off the request path."""
    from molequle_dagster.sandbox.catalog import ALL_PEOPLE_SMART_LIST
    from molequle_dagster.sandbox.config import DataSettings
    from molequle_dagster.sandbox.generator import generate

    built = time.perf_counter()
    state = generate(DataSettings(people=people, activities_per_person=1.0), NOW)
    print(f"instance: {people:,} people generated in {time.perf_counter() - built:.1f}s")
    smart_list = next(s["id"] for s in state.smart_lists if s["name"] == ALL_PEOPLE_SMART_LIST)
    with SandboxServer(SandboxConfig.for_profile("fast"), now=NOW, state=state) as sandbox:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {_token(sandbox.base_url)}"
        base = f"{sandbox.base_url}/bulk/v1/leads/export"
        body = {"fields": LEAD_FIELDS, "filter": {"smartListId": smart_list}}
        created, create_ms = _timed(
            lambda: session.post(f"{base}/create.json", json=body, timeout=600).json()
        )
        export_id = created["result"][0]["exportId"]
        started = time.perf_counter()
        queued, enqueue_ms = _timed(
            lambda: session.post(f"{base}/{export_id}/enqueue.json", timeout=600).json()
        )
        polls = []
        while True:
            job, poll_ms = _timed(lambda: session.get(f"{base}/{export_id}/status.json", timeout=600).json())
            polls.append(poll_ms)
            if job["result"][0]["status"] == "Completed":
                break
            sandbox.control.wait_for_exports(timeout=1.0)  # poll about once a second while it renders
        ready_s = time.perf_counter() - started
        job = job["result"][0]
        print(
            f"lead export: {job['numberOfRecords']:,} rows x {len(LEAD_FIELDS)} fields, "
            f"{job['fileSize'] / 1e6:,.1f} MB ready in {ready_s:.1f}s "
            f"({job['numberOfRecords'] / ready_s:,.0f} rows/s); create {create_ms:.0f} ms, "
            f"enqueue {enqueue_ms:.0f} ms ({queued['result'][0]['status']}), "
            f"status polls while rendering: median {sorted(polls)[len(polls) // 2]:.0f} ms, "
            f"max {max(polls):.0f} ms over {len(polls)} polls"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--downloads", type=int, default=3)
    parser.add_argument("--people", type=int, default=0, help="also time a lead export of this many people")
    args = parser.parse_args()
    if args.people:
        leads_at_scale(args.people)
    if not args.rows:
        return

    state = empty_state(1, NOW)
    built = time.perf_counter()
    state.activities = _activities(args.rows)
    print(f"instance: {args.rows:,} activities built in {time.perf_counter() - built:.1f}s")

    with SandboxServer(SandboxConfig.for_profile("fast"), now=NOW, state=state) as sandbox:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {_token(sandbox.base_url)}"
        base = f"{sandbox.base_url}/bulk/v1/activities/export"
        window = {
            "startAt": START.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "endAt": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        export_id = session.post(
            f"{base}/create.json", json={"filter": {"createdAt": window}}, timeout=30
        ).json()["result"][0]["exportId"]
        rendering = time.perf_counter()  # with a free slot the job starts on enqueue, rendered by a thread
        session.post(f"{base}/{export_id}/enqueue.json", timeout=600)
        sandbox.control.wait_for_exports(timeout=3600)
        job = session.get(f"{base}/{export_id}/status.json", timeout=600).json()["result"][0]
        seconds = time.perf_counter() - rendering
        size_mb = job["fileSize"] / 1e6
        print(
            f"render: {job['numberOfRecords']:,} rows, {size_mb:,.1f} MB in {seconds:.2f}s = "
            f"{job['numberOfRecords'] / seconds:,.0f} rows/s, {size_mb / seconds:,.1f} MB/s "
            f"(status {job['status']})"
        )

        url = f"{base}/{export_id}/file.json"
        for attempt in range(args.downloads):
            size, took = _download(session, url)
            print(
                f"serve #{attempt + 1}: {size / 1e6:,.1f} MB in {took:.2f}s = {size / 1e6 / took:,.0f} MB/s"
            )
        half = job["fileSize"] // 2
        size, took = _download(session, url, {"Range": f"bytes={half}-"})
        print(
            f"serve range bytes={half}-: {size / 1e6:,.1f} MB in {took:.2f}s = {size / 1e6 / took:,.0f} MB/s"
        )


if __name__ == "__main__":
    main()
