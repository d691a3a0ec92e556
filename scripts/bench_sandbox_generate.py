"""Benchmark: generate a sandbox instance at scale, then render activity attributes, read every lead field
(the 100-field catalogue, ~87 of them derived at read time) and apply churn.

Usage: PYTHONPATH=. .venv/bin/python scripts/bench_sandbox_generate.py [--people 1000000] [--churn]
Prints wall times, peak RSS (resource.getrusage), render_attributes and lead-field throughput.
"""

from __future__ import annotations

import argparse
import resource
import time
from datetime import UTC, datetime

from molequle_dagster.sandbox.attributes import render_attributes, visible_activities
from molequle_dagster.sandbox.churn import ChurnRates, apply_churn
from molequle_dagster.sandbox.config import DataSettings
from molequle_dagster.sandbox.generator import generate
from molequle_dagster.sandbox.lead_fields import NAMES
from molequle_dagster.sandbox.lead_view import LeadView

RENDER_BATCH = 1_000_000  # the bulk engine renders batch by batch; one StringArray must stay < 2 GiB


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--activities-per-person", type=float, default=20.0)
    parser.add_argument("--render-rows", type=int, default=5_000_000, help="rows to render for throughput")
    parser.add_argument("--lead-rows", type=int, default=1_000_000, help="people to read all lead fields of")
    parser.add_argument("--churn", action="store_true", help="also time one apply_churn with default rates")
    args = parser.parse_args()

    now = datetime(2026, 11, 1, tzinfo=UTC)
    started = time.perf_counter()
    state = generate(DataSettings(people=args.people, activities_per_person=args.activities_per_person), now)
    generate_s = time.perf_counter() - started
    print(
        f"generate: people={state.people.num_rows:,} activities={state.activities.num_rows:,} "
        f"memberships={state.memberships.num_rows:,} companies={state.companies.num_rows:,} "
        f"in {generate_s:.1f} s; peak RSS {peak_rss_gib():.2f} GiB"
    )

    rows = min(args.render_rows, state.activities.num_rows)
    started = time.perf_counter()
    rendered_bytes = 0
    for offset in range(0, rows, RENDER_BATCH):
        batch = state.activities.slice(offset, min(RENDER_BATCH, rows - offset))
        rendered_bytes += render_attributes(state, batch).nbytes
    render_s = time.perf_counter() - started
    print(
        f"render_attributes: {rows:,} rows in {render_s:.1f} s = {rows / render_s:,.0f} rows/s "
        f"({rendered_bytes / 1024**2:,.0f} MiB of JSON); peak RSS {peak_rss_gib():.2f} GiB"
    )

    started = time.perf_counter()
    view = LeadView(state)
    people = view.people.slice(0, min(args.lead_rows, view.people.num_rows))
    lead_bytes = sum(view.select(batch, NAMES).nbytes for batch in people.to_batches(64 * 1024))
    lead_s = time.perf_counter() - started
    print(
        f"lead fields: {people.num_rows:,} people x {len(NAMES)} fields in {lead_s:.1f} s = "
        f"{people.num_rows / lead_s:,.0f} rows/s ({lead_bytes / 1024**2:,.0f} MiB of Arrow); "
        f"peak RSS {peak_rss_gib():.2f} GiB"
    )

    started = time.perf_counter()
    visible = visible_activities(state, now, enforce_retention=True).num_rows
    print(f"visible_activities (retention): {visible:,} rows in {time.perf_counter() - started:.1f} s")

    if args.churn:
        started = time.perf_counter()
        report = apply_churn(state, now, ChurnRates(), seed=1)
        print(
            f"apply_churn (default rates): {report.counts()} in {time.perf_counter() - started:.1f} s; "
            f"peak RSS {peak_rss_gib():.2f} GiB"
        )


if __name__ == "__main__":
    main()
