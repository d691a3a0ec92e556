"""Benchmark the Marketo client's bulk path: sandbox export -> HTTP stream -> Arrow -> Parquet, beside
pyarrow parsing the same file from local disk (same column types), and peak RSS as the export grows.

    PYTHONPATH=. .venv/bin/python scripts/bench_client_bulk.py --rows 100000 --scale 10

For each size (rows, rows*scale) the sandbox (this process, a thread) serves one activities export; the
client run and the local-disk run each happen in a fresh subprocess so their peak RSS is their own.
Goals: client >= 50% of local parse speed; peak RSS at scale x rows < 1.5x the RSS at 1x.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.control import empty_state
from molequle_dagster.sandbox.model import ACTIVITIES_SCHEMA
from molequle_dagster.sandbox.server import SandboxServer

NOW = datetime(2026, 3, 10, tzinfo=UTC)
START = NOW - timedelta(days=30)
TYPES = np.array([1, 2, 6, 7, 10, 11, 12], np.int32)  # kept by the sandbox's retention rules
REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
from pathlib import Path
import pyarrow.parquet as pq
mode, out = sys.argv[1], sys.argv[2]
started = time.perf_counter()
rows = 0
if mode == "client":
    from molequle_dagster.marketo import BulkConfig, MarketoClient, MarketoConfig, PacingConfig
    base_url, store, start, end = sys.argv[3:7]
    config = MarketoConfig(base_url=base_url, bulk=BulkConfig(poll_interval_s=0),
                           pacing=PacingConfig(calls_per_20s=100, window_s=0.01))
    client = MarketoClient(config, "molequle-sandbox", "sandbox-secret", store=store)
    result = client.bulk_export("activities", fields=None,
                                filter={"createdAt": {"startAt": start, "endAt": end}})
    started = time.perf_counter()  # the job itself is the server's time; measure download+parse+write
    batches, size, export_id = result.batches(), result.file_size, result.export_id
else:
    import pyarrow.csv as pacsv
    from molequle_dagster.marketo.csvstream import FALSE_VALUES, NULL_LITERALS, TRUE_VALUES
    from molequle_dagster.marketo.schema import ACTIVITY_COLUMN_TYPES
    path = sys.argv[3]
    size, export_id = Path(path).stat().st_size, None
    batches = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 20, use_threads=False),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types=ACTIVITY_COLUMN_TYPES, null_values=NULL_LITERALS,
            strings_can_be_null=True, quoted_strings_can_be_null=False, true_values=TRUE_VALUES,
            false_values=FALSE_VALUES))
writer = None
for batch in batches:
    if writer is None:
        writer = pq.ParquetWriter(out, batch.schema)
    writer.write_batch(batch)
    rows += batch.num_rows
writer.close()
seconds = time.perf_counter() - started
# VmHWM, not ru_maxrss: Linux folds the *parent's* RSS at fork into the child's ru_maxrss, and the parent
# here is the sandbox holding the export.
hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"rows": rows, "bytes": size, "seconds": seconds, "export_id": export_id,
                  "max_rss_mb": hwm_kb / 1024}))
"""


def activities(rows: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, 29 * 86400, rows))
    dates = pa.array((int(START.timestamp()) + seconds).astype("datetime64[s]"), pa.timestamp("s", tz="UTC"))
    pav_ids = rng.integers(1000, 1100, rows)
    names = pa.array([f"Program {i}.Email {i % 7}" for i in range(100)])
    return pa.Table.from_arrays(
        [
            pa.array(np.arange(1, rows + 1, dtype=np.int64)),
            pa.array(rng.integers(1, 200_000, rows)),
            dates,
            pa.array(TYPES[rng.integers(0, len(TYPES), rows)]),
            pa.array(np.where(rng.random(rows) < 0.5, rng.integers(1, 5000, rows), 0)).cast(pa.int64()),
            pa.array(pav_ids),
            names.take(pa.array(pav_ids - 1000)),
            pa.array(rng.integers(0, 2**62, rows)),
            pa.nulls(rows, pa.string()),
        ],
        schema=ACTIVITIES_SCHEMA,
    )


def child(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=REPO, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=1800)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_size(rows: int, workdir: Path) -> tuple[dict, dict]:
    state = empty_state(1, NOW)
    state.activities = activities(rows)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    with SandboxServer(SandboxConfig.for_profile("fast"), now=NOW, state=state) as sandbox:
        state_dir = workdir / f"state-{rows}"
        client_run = child("client", str(workdir / f"client-{rows}.parquet"), sandbox.base_url,
                           str(state_dir), START.strftime(fmt), NOW.strftime(fmt))
        # The same file on local disk, fetched once with the client's own transport.
        from molequle_dagster.marketo import MarketoClient, MarketoConfig

        local = workdir / f"export-{rows}.csv"
        config = MarketoConfig(base_url=sandbox.base_url)
        with MarketoClient(config, "molequle-sandbox", "sandbox-secret", store=state_dir) as client:
            resp = client._transport.open_download(
                f"/bulk/v1/activities/export/{client_run['export_id']}/file.json")
            with local.open("wb") as f:
                for chunk in resp.iter_content(4 << 20):
                    f.write(chunk)
    local_run = child("local", str(workdir / f"local-{rows}.parquet"), str(local))
    local.unlink()
    return client_run, local_run


def describe(label: str, run: dict) -> str:
    return (f"{label:>6}: {run['rows']:>10,} rows {run['bytes'] / 1e6:8.1f} MB in {run['seconds']:6.2f}s = "
            f"{run['rows'] / run['seconds']:>10,.0f} rows/s {run['bytes'] / 1e6 / run['seconds']:6.1f} MB/s, "
            f"peak RSS {run['max_rss_mb']:6.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--scale", type=int, default=10)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rows in (args.rows, args.rows * args.scale):
            t = time.perf_counter()
            client_run, local_run = run_size(rows, Path(tmp))
            results[rows] = (client_run, local_run)
            print(f"--- {rows:,} activities ({time.perf_counter() - t:.0f}s total)")
            print(describe("client", client_run))
            print(describe("local", local_run))
            ratio = (client_run["bytes"] / client_run["seconds"]) / (
                local_run["bytes"] / local_run["seconds"])
            print(f"client speed = {ratio:.0%} of local parse (goal >= 50%)")
    small, big = results[args.rows][0], results[args.rows * args.scale][0]
    growth = big["max_rss_mb"] / small["max_rss_mb"]
    print(f"client peak RSS {small['max_rss_mb']:.0f} MB -> {big['max_rss_mb']:.0f} MB at {args.scale}x rows "
          f"= {growth:.2f}x (goal < 1.5x)")


if __name__ == "__main__":
    main()
