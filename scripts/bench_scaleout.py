"""Scale-out figures (docs/benchmarks.md, "Scale-out (issue 15)"): the first sync and a tick after churn on
one Celery worker beside two, same data, side by side, with the lake on moto's S3 server and the Dagster
instance and coordination store on PostgreSQL (molequle_dagster_tests/scaleout/cluster.py; needs root for
PostgreSQL and Debian's redis-server).

    .venv/bin/python scripts/bench_scaleout.py --rounds 3
    .venv/bin/python scripts/bench_scaleout.py --rounds 3 --in-process   # the embedded engine instead

Prints one JSON line per cluster run, then a Markdown table of medians. Durations are wall-clock seconds of
each `dagster job execute` (process start to exit); calls, exports and bytes are the sandbox's own counts.
`--in-process` runs the same sync with `molequle sync`'s engine (`execute_in_process`, one process, SQLite
instance) on a local lake beside the S3 server, for the cost of the engine and of object storage.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from molequle_dagster.jobs import SYNC_JOB  # noqa: E402
from molequle_dagster.sync.plan import RANGE_END, RANGE_START, tick_range  # noqa: E402
from molequle_dagster.sync.run_kind import KIND_TAG, TICK  # noqa: E402
from molequle_dagster_tests.scaleout.cluster import open_cluster  # noqa: E402
from molequle_dagster_tests.scaleout.test_across_workers import SANDBOX, first_sync, partition_keys  # noqa: E402
from molequle_dagster_tests.truth_assertions import TICK_CHURN  # noqa: E402

# Our default share of Marketo (the packaged settings' 4 exports at once), the test's 90 calls per 20 s.
SETTINGS = {"marketo__bulk__poll_interval_s": 0.5}


def one(workers: int, people: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
        started = time.monotonic()
        with open_cluster(
            Path(tmp), workers=workers, people=people, settings_overrides=SETTINGS, sandbox_overrides=SANDBOX
        ) as cluster:
            up_s = time.monotonic() - started
            first_sync(cluster)
            control = cluster.sandbox.control
            first = {
                "calls": sum(v for k, v in control.call_counts().items() if "/identity/" not in k),
                "exports": len(cluster.sandbox.bulk_jobs()),
                "export_bytes": sum(j.get("fileSize") or 0 for j in cluster.sandbox.bulk_jobs()),
                "s3_requests": cluster.s3.log_text().count("HTTP/1.1"),
            }
            control.apply_churn(TICK_CHURN, seed=7)
            start, end = tick_range(cluster.lake, partition_keys(cluster))
            tick = cluster.run_job(SYNC_JOB, {KIND_TAG: TICK, RANGE_START: start, RANGE_END: end})
            assert tick.status == "SUCCESS", tick.log[-3000:]
            runs = cluster.runs
            return {
                "workers": workers,
                "people": people,
                "up_s": round(up_s, 1),
                "initial_s": round(runs[0].seconds, 1),
                "history_s": round(runs[1].seconds, 1),
                "first_sync_s": round(runs[0].seconds + runs[1].seconds, 1),
                "tick_s": round(tick.seconds, 1),
                "first_sync_calls": first["calls"],
                "first_sync_exports": first["exports"],
                "first_sync_export_bytes": first["export_bytes"],
                "first_sync_s3_requests": first["s3_requests"],
                "tick_calls": sum(v for k, v in control.call_counts().items() if "/identity/" not in k)
                - first["calls"],
                "tick_exports": len(cluster.sandbox.bulk_jobs()) - first["exports"],
                "peak_calls_in_20s": max(control.peak_calls_in_window().values()),
            }


def in_process(lake: str, people: int) -> dict[str, Any]:
    import dagster as dg
    import pytest

    from molequle_dagster.definitions import build_definitions
    from molequle_dagster.sandbox.config import SandboxConfig
    from molequle_dagster.sandbox.server import SandboxServer
    from molequle_dagster.settings import parse_settings
    from molequle_dagster.sync_runner import run_sync
    from molequle_dagster_tests.conftest import fast_settings_dict
    from molequle_dagster_tests.lake.s3_server import S3Server

    config = SandboxConfig.for_profile("fast")
    config.data.people = people
    config.bulk.job_overhead_s = SANDBOX["bulk"]["job_overhead_s"]
    with tempfile.TemporaryDirectory(prefix="bench-inprocess-") as tmp, pytest.MonkeyPatch.context() as mp:
        root = Path(tmp)
        with S3Server(root) as s3, SandboxServer(config, port=0) as sandbox:
            for name, value in s3.env.items():
                mp.setenv(name, value)
            s3.create_bucket("bench-lake")
            mp.setenv(
                "MOLEQULE_LAKE_URI", s3.uri("bench-lake", "lake") if lake == "s3" else str(root / "lake")
            )
            mp.setenv("MARKETO_CLIENT_ID", config.clients[0].client_id)
            mp.setenv("MARKETO_CLIENT_SECRET", config.clients[0].client_secret)
            defs = build_definitions(
                parse_settings(fast_settings_dict(marketo__base_url=sandbox.base_url, **SETTINGS))
            )
            with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
                started = time.monotonic()
                first = run_sync(defs, instance, log_level="WARNING")
                first_s = time.monotonic() - started
                assert first.success, first.failures
                s3_first = s3.log_text().count("HTTP/1.1")
                sandbox.control.apply_churn(TICK_CHURN, seed=7)
                started = time.monotonic()
                tick = run_sync(defs, instance, log_level="WARNING")
                assert tick.success, tick.failures
                return {
                    "engine": f"in-process, {lake} lake",
                    "first_sync_s": round(first_s, 1),
                    "tick_s": round(time.monotonic() - started, 1),
                    "first_sync_s3_requests": s3_first,
                    "tick_s3_requests": s3.log_text().count("HTTP/1.1") - s3_first,
                }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--in-process", action="store_true", help="the embedded engine, local lake beside S3")
    args = parser.parse_args()
    if args.in_process:
        for _ in range(args.rounds):
            for lake in ("local", "s3"):
                print(json.dumps(in_process(lake, args.people)), flush=True)
        return
    results: list[dict[str, Any]] = []
    for _ in range(args.rounds):
        for workers in (1, 2):  # side by side: both see the same machine load in each round
            result = one(workers, args.people)
            print(json.dumps(result), flush=True)
            results.append(result)
    keys = [k for k in results[0] if k not in ("workers", "people")]
    print("\n| figure | 1 worker | 2 workers |\n| --- | --- | --- |")
    for key in keys:
        medians = [statistics.median(r[key] for r in results if r["workers"] == w) for w in (1, 2)]
        print(f"| {key} | {medians[0]:g} | {medians[1]:g} |")


if __name__ == "__main__":
    main()
