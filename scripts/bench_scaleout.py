"""Scale-out figures (docs/benchmarks.md, "Scale-out (issue 15)"): the first sync and a tick after churn on
one Celery worker beside two, same data, side by side, with the lake on moto's S3 server and the Dagster
instance and coordination store on PostgreSQL (molequle_dagster_tests/scaleout/cluster.py; needs root for
PostgreSQL and Debian's redis-server).

    .venv/bin/python scripts/bench_scaleout.py --rounds 3

Prints one JSON line per cluster run, then a Markdown table of medians. Durations are wall-clock seconds of
each `dagster job execute` (process start to exit); calls, exports and bytes are the sandbox's own counts.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--people", type=int, default=300)
    args = parser.parse_args()
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
