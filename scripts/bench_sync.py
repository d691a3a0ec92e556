"""Benchmark the sync end to end: initial sync of N people and their activities, then a tick at 1% churn.

The sandbox runs in this process (a thread); each sync phase runs in a child process so its peak RSS is
the sync's own. Prints wall time, API calls (counted by the sandbox), bulk exports and bytes, peak RSS.

    .venv/bin/python scripts/bench_sync.py --people 100000 --activities-per-person 20
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def _phase(args: argparse.Namespace) -> None:
    """Child: run one sync (initial or tick) against the sandbox at --base-url; print figures as JSON."""
    import dagster as dg

    from molequle_dagster.definitions import build_definitions
    from molequle_dagster.settings import load_settings
    from molequle_dagster.sync_runner import run_sync

    started = time.monotonic()
    defs = build_definitions(load_settings())
    with dg.DagsterInstance.get() as instance:
        report = run_sync(defs, instance)
    print(
        json.dumps(
            {
                "kind": report.kind,
                "success": report.success,
                "failures": report.failures[:3],
                "seconds": round(time.monotonic() - started, 1),
                "runs": len(report.runs),
                "exports": report.exports,
                "bulk_bytes": report.bulk_bytes,
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


def _settings_file(root: Path, history_days: int) -> Path:
    from molequle_dagster.settings import default_settings_path

    data = yaml.safe_load(default_settings_path().read_text())
    data["marketo"]["bulk"]["poll_interval_s"] = 0
    data["sync"]["history_days"] = history_days
    path = root / "settings.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--activities-per-person", type=float, default=20.0)
    parser.add_argument("--history-days", type=int, default=730)
    parser.add_argument(
        "--churn", type=float, default=0.01, help="fraction of people changed before the tick"
    )
    parser.add_argument(
        "--neighbours", type=float, default=0.0, help="other integrations' load on the sandbox, 0..1"
    )
    parser.add_argument("--phase", choices=["initial", "tick"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        _phase(args)
        return

    from molequle_dagster.sandbox.config import SandboxConfig
    from molequle_dagster.sandbox.server import SandboxServer

    root = Path(tempfile.mkdtemp(prefix="molequle-bench-"))
    config = SandboxConfig.for_profile("fast")
    config.data.people = args.people
    config.data.activities_per_person = args.activities_per_person
    config.neighbours.level = args.neighbours  # they share every Marketo limit with the sync
    t0 = time.monotonic()
    with SandboxServer(config, port=0) as sandbox:
        generated = time.monotonic() - t0
        state = sandbox.control.state
        print(
            f"sandbox: {state.people.num_rows:,} people, {state.activities.num_rows:,} activities "
            f"generated in {generated:.1f} s"
        )
        env = dict(
            os.environ,
            MARKETO_BASE_URL=sandbox.base_url,
            MARKETO_CLIENT_ID=config.clients[0].client_id,
            MARKETO_CLIENT_SECRET=config.clients[0].client_secret,
            MOLEQULE_SETTINGS=str(_settings_file(root, args.history_days)),
            MOLEQULE_LAKE_URI=str(root / "lake"),
            DAGSTER_HOME=str(root / "home"),
        )
        (root / "home").mkdir()
        for phase in ("initial", "tick"):
            if phase == "tick":
                report = sandbox.control.apply_churn(
                    {
                        "new_people": args.churn,
                        "attribute_updates": args.churn,
                        "email_changes": args.churn / 5,
                        "merges": args.churn / 10,
                        "deletions": args.churn / 10,
                        "new_activities_per_person": args.churn * 5,
                        "program_status_changes": args.churn,
                        "new_programs": 1,
                    },
                    seed=11,
                )
                print(f"churn: {report.counts()}")
            sandbox.control.reset_counters()
            child = subprocess.run(
                [sys.executable, __file__, "--phase", phase],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
            if child.returncode or not lines:
                print(child.stderr[-3000:])
                raise SystemExit(f"{phase} failed")
            figures = json.loads(lines[-1])
            counts = sandbox.control.call_counts()
            figures["api_calls"] = sum(counts.values())
            figures["bulk_creates"] = sum(v for k, v in counts.items() if k.endswith("/export/create.json"))
            print(f"{phase}: {json.dumps(figures)}")


if __name__ == "__main__":
    main()
