"""Benchmark: per-call latency of the sandbox's REST surface over loopback HTTP (target: median < 5 ms).

The server runs in its own process (as `molequle sandbox` would), the client is a keep-alive
`requests.Session`, and every call goes through the full gate: bearer check, limits, faults, counting.

    .venv/bin/python scripts/bench_sandbox_rest.py [--calls 2000] [--people 2000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from datetime import UTC, datetime

import requests

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.fixtures import sandbox_access_token

NOW = datetime(2026, 3, 10, 15, 0, 0, tzinfo=UTC)


def serve(people: int, ready: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    config = SandboxConfig.for_profile("fast")
    config.limits.enforce = False  # measure the server, not Marketo's 100-calls-per-20-s limit
    config.data.people = people
    with SandboxServer(config, now=NOW) as server:
        ready.put(server.base_url)
        stop.wait()


def measure(session: requests.Session, url: str, calls: int, **params: object) -> list[float]:
    timings = []
    for _ in range(calls):
        start = time.perf_counter()
        response = session.get(url, params=params, timeout=30)
        response.raise_for_status()
        assert response.json()["success"] is True
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--people", type=int, default=2000)
    args = parser.parse_args()
    ready: multiprocessing.Queue = multiprocessing.Queue()
    stop = multiprocessing.Event()
    process = multiprocessing.Process(target=serve, args=(args.people, ready, stop), daemon=True)
    process.start()
    base = ready.get(timeout=120)
    try:
        session = requests.Session()
        token = sandbox_access_token(base)
        session.headers["Authorization"] = f"Bearer {token}"
        paging = session.get(
            f"{base}/rest/v1/activities/pagingtoken.json",
            params={"sinceDatetime": "2025-01-01T00:00:00Z"},
            timeout=10,
        ).json()["nextPageToken"]
        cases = [
            ("GET stats/usage.json (gate overhead)", f"{base}/rest/v1/stats/usage.json", {}),
            ("GET lead/{id}.json", f"{base}/rest/v1/lead/7.json", {}),
            (
                "GET leads.json filterType=id x10",
                f"{base}/rest/v1/leads.json",
                {"filterType": "id", "filterValues": ",".join(str(i) for i in range(1, 11))},
            ),
            (
                "GET activities.json batchSize=300",
                f"{base}/rest/v1/activities.json",
                {"nextPageToken": paging, "activityTypeIds": "1,6,10,11,104"},
            ),
            ("GET asset programs.json maxReturn=20", f"{base}/rest/asset/v1/programs.json", {}),
        ]
        print(f"{args.calls} sequential keep-alive calls per endpoint, {args.people} people")
        for label, url, params in cases:
            measure(session, url, 50, **params)  # warm-up
            calls = args.calls if "activities" not in label else max(200, args.calls // 10)
            timings = sorted(measure(session, url, calls, **params))
            p95 = timings[int(len(timings) * 0.95) - 1]
            print(
                f"  {label:42s} median {statistics.median(timings):6.2f} ms   p95 {p95:6.2f} ms   (n={calls})"
            )
    finally:
        stop.set()
        process.join(timeout=20)


if __name__ == "__main__":
    main()
