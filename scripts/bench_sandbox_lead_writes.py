"""Benchmark: latency of the sandbox's lead-DB writes and membership reads on a big generated instance,
over loopback HTTP through the full gate (one call = one full batch).

    PYTHONPATH=. .venv/bin/python scripts/bench_sandbox_lead_writes.py [--people 100000] [--rounds 5]

Measures, per round, on a fresh set of leads: Delete Leads (300 ids), Merge Leads (1 winner + 25 losers),
add 300 leads to a static list and remove them again, a 300-lead page of Get Leads by Program, and Get
Programs / Lists by Lead. Deletes and merges rewrite the activities table (Arrow filter / column swap), so
their cost grows with activities; the reads should stay flat.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import requests

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.fixtures import sandbox_access_token

NOW = datetime(2026, 3, 10, 15, 0, 0, tzinfo=UTC)


def timed(session: requests.Session, method: str, url: str, **kwargs: Any) -> float:
    start = time.perf_counter()
    response = session.request(method, url, timeout=300, **kwargs)
    elapsed = time.perf_counter() - start
    body = response.json()
    assert body["success"] is True, body
    return elapsed * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--activities-per-person", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    config = SandboxConfig.for_profile("fast")
    config.limits.enforce = False  # measure the server, not Marketo's rate limit
    config.data.people = args.people
    config.data.activities_per_person = args.activities_per_person
    started = time.perf_counter()
    with SandboxServer(config, now=NOW) as server:
        state = server.control.state
        print(
            f"instance: {state.people.num_rows:,} people, {state.activities.num_rows:,} activities, "
            f"{state.memberships.num_rows:,} memberships (generated in {time.perf_counter() - started:.1f} s)"
        )
        base = server.base_url
        token = sandbox_access_token(base)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        ids = state.people["id"].to_pylist()
        program_id = state.memberships["programId"][0].as_py()
        list_id = state.static_lists[0]["id"]
        timings: dict[str, list[float]] = {}

        def record(name: str, ms: float) -> None:
            timings.setdefault(name, []).append(ms)

        for round_no in range(args.rounds):
            chunk = ids[round_no * 627 : (round_no + 1) * 627]
            doomed, winner, losers, listed = chunk[:300], chunk[300], chunk[301:326], chunk[326:626]
            record(
                "delete 300",
                timed(
                    session,
                    "POST",
                    f"{base}/rest/v1/leads/delete.json",
                    json={"input": [{"id": i} for i in doomed]},
                ),
            )
            record(
                "merge 1+25",
                timed(
                    session,
                    "POST",
                    f"{base}/rest/v1/leads/{winner}/merge.json",
                    params={"leadIds": ",".join(map(str, losers))},
                ),
            )
            body = {"input": [{"id": i} for i in listed]}
            record(
                "list add 300",
                timed(session, "POST", f"{base}/rest/v1/lists/{list_id}/leads.json", json=body),
            )
            record(
                "list remove 300",
                timed(session, "DELETE", f"{base}/rest/v1/lists/{list_id}/leads.json", json=body),
            )
            record(
                "leads by program page",
                timed(session, "GET", f"{base}/rest/v1/leads/programs/{program_id}.json"),
            )
            record(
                "programs of lead",
                timed(session, "GET", f"{base}/rest/v1/leads/{winner}/programMembership.json"),
            )
            record(
                "lists of lead", timed(session, "GET", f"{base}/rest/v1/leads/{winner}/listMembership.json")
            )

    print(f"{'call':<24}{'median ms':>12}{'max ms':>10}")
    for name, values in timings.items():
        print(f"{name:<24}{statistics.median(values):>12.1f}{max(values):>10.1f}")


if __name__ == "__main__":
    main()
