"""What the coordination store adds to every Marketo call: one in-flight slot, one place in the rate
window (admit + finish, counted on today's usage record), on SQLite and, with DAGSTER_PG_URL, PostgreSQL.

    PYTHONPATH=. .venv/bin/python scripts/bench_client_coordination.py [--calls 2000] [--processes 1 4]

Prints one JSON line per backend and process count: calls, seconds, microseconds per call (per process).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
import uuid

from molequle_dagster.coordination import PostgresStore, SqliteStore
from molequle_dagster.marketo.config import PacingConfig
from molequle_dagster.marketo.pacing import CrossProcessPacer


def _store(where: str, schema: str):
    return PostgresStore(where, schema=schema) if schema else SqliteStore(where)


def _calls(where: str, schema: str, calls: int, queue: multiprocessing.Queue) -> None:
    store = _store(where, schema)
    unpaced = PacingConfig(calls_per_20s=100, window_s=0.001, max_in_flight=10)  # the store's cost alone
    pacer = CrossProcessPacer(store, "bench", unpaced, usage_day=lambda: "2026-01-01")
    started = time.perf_counter()
    for _ in range(calls):
        with pacer.call():
            pass
    queue.put(time.perf_counter() - started)
    store.close()


def run(where: str, schema: str, calls: int, processes: int) -> dict:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_calls, args=(where, schema, calls, queue))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    seconds = [queue.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    total = calls * processes
    return {"backend": "postgresql" if schema else "sqlite", "processes": processes, "calls": total,
            "seconds": round(max(seconds), 3), "us_per_call": round(1e6 * sum(seconds) / total)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    targets = [(tempfile.mkdtemp(prefix="molequle-bench-"), "")]
    if os.environ.get("DAGSTER_PG_URL"):
        targets.append((os.environ["DAGSTER_PG_URL"], f"bench_{uuid.uuid4().hex[:8]}"))
    for where, schema in targets:
        _store(where, schema).close()  # create the schema once, before the processes race for it
        for processes in args.processes:
            print(json.dumps(run(where, schema, args.calls, processes)), flush=True)
        if schema:
            import psycopg2

            conn = psycopg2.connect(where.replace("postgresql+psycopg2://", "postgresql://"))
            conn.autocommit = True
            conn.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
            conn.close()


if __name__ == "__main__":
    main()
