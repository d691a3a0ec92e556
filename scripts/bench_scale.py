"""Benchmark a sync at scale: an initial sync of N people, then one tick per churn level.

The sandbox runs in its own process, and so does each sync phase, so the peak RSS reported is the sync's
alone. Calls, exports and export bytes are counted by the sandbox (exports: bulk jobs our client created;
bytes: their fileSize, what Marketo meters). One JSON line per phase on stdout:

    {"phase": "initial"|"tick", "people", "churn", "wall_s", "cpu_s", "calls", "exports", "export_bytes",
     "peak_rss_mib", "lake_files_written", "lake_bytes_written", "lake_bytes", ...}

`lake_bytes_written` counts the files a phase created or replaced in the lake (what a tick rewrites).

    .venv/bin/python scripts/bench_scale.py --people 100000 --history-days 62 --churn 0,0.001,0.01
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

OUR_CLIENT = "molequle-sandbox"


def churn_rates(churn: float) -> dict[str, float]:
    """The churn mix of scripts/bench_sync.py, scaled: a fraction of people changed before a tick."""
    if churn <= 0:
        return {}
    return {
        "new_people": churn,
        "attribute_updates": churn,
        "email_changes": churn / 5,
        "merges": churn / 10,
        "deletions": churn / 10,
        "new_activities_per_person": churn * 5,
        "program_status_changes": churn,
        "new_programs": 1,
    }


# --- the sandbox's own process: commands as JSON lines on stdin --------------------------------------------
Op = Callable[[Any, dict[str, Any]], Any]  # (SandboxControl, command) -> JSON-able answer


def serve_sandbox(
    people: int,
    activities_per_person: float,
    seed: int,
    export_quota_mb: int,
    profile: str = "fast",
    start_at: datetime | None = None,
    ops: dict[str, Op] | None = None,
) -> None:
    """Serve a sandbox and answer commands; `ops` adds commands (scripts/bench_freshness.py). With
    `start_at` the virtual clock starts frozen there (the data is generated as of then)."""
    from molequle_dagster.sandbox.config import SandboxConfig
    from molequle_dagster.sandbox.server import SandboxServer

    config = SandboxConfig.for_profile(profile)  # type: ignore[arg-type]
    config.data.people = people
    config.data.activities_per_person = activities_per_person
    config.data.seed = seed
    # A big first sync spans several days of Marketo's 500 MB export quota (bench_first_sync.py measures
    # that); this benchmark is about what comes after, so the quota is lifted for the first sync.
    config.bulk.daily_export_bytes = export_quota_mb * 1024 * 1024
    started = time.monotonic()
    with SandboxServer(config, port=0, now=start_at) as sandbox:
        control = sandbox.control
        state = control.state
        print(
            json.dumps(
                {
                    "base_url": sandbox.base_url,
                    "generate_s": round(time.monotonic() - started, 1),
                    "people": state.people.num_rows,
                    "activities": state.activities.num_rows,
                    "memberships": state.memberships.num_rows,
                }
            ),
            flush=True,
        )
        for line in sys.stdin:
            command = json.loads(line)
            if command["op"] == "churn":
                report = control.apply_churn(command["rates"], seed=command["seed"])
                answer: Any = report.counts()
            elif command["op"] == "reset":
                control.reset_counters()
                answer = {"jobs": len(control.export_jobs())}
            elif command["op"] == "counts":
                jobs = [
                    j
                    for j in control.export_jobs()[command["since_jobs"] :]
                    if j["apiUser"] != "other@sandbox"
                ]
                answer = {
                    "calls": sum(control.call_counts().values()),
                    "by_endpoint": control.call_counts(),
                    "exports": len(jobs),
                    "export_bytes": sum(int(j.get("fileSize") or 0) for j in jobs),
                }
            elif command["op"] == "jobs":  # our export jobs as Marketo timed them (bench_first_sync.py)
                keep = ("entity", "status", "queuedAt", "startedAt", "finishedAt", "fileSize", "filter")
                answer = [
                    {k: j.get(k) for k in keep}
                    for j in control.export_jobs()
                    if j["apiUser"] != "other@sandbox"
                ]
            elif ops and command["op"] in ops:
                answer = ops[command["op"]](control, command)
            else:
                answer = {"error": f"unknown op {command['op']!r}"}
            print(json.dumps(answer, default=str), flush=True)


def quota_arguments(export_quota_mb: int, profile: str) -> list[str]:
    """This script's sandbox options for its `--serve-sandbox` process."""
    return ["--export-quota-mb", str(export_quota_mb), "--profile", profile]


class Sandbox:
    """The sandbox process and its stdin/stdout pipe; `ask` is safe from several threads."""

    def __init__(self, args: argparse.Namespace, script: str = __file__, extra: Sequence[str] = ()) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                script,
                "--serve-sandbox",
                "--people",
                str(args.people),
                "--activities-per-person",
                str(args.activities_per_person),
                "--seed",
                str(args.seed),
                *extra,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lock = threading.Lock()  # one command at a time on the pipe
        self.info = json.loads(self._line())

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("the sandbox process ended before answering")
        return line

    def ask(self, **command: Any) -> Any:
        assert self.process.stdin is not None
        with self._lock:
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
            return json.loads(self._line())

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=60)


# --- one sync phase in its own process ---------------------------------------------------------------------
def run_phase() -> None:
    import dagster as dg

    from molequle_dagster.definitions import build_definitions
    from molequle_dagster.settings import load_settings
    from molequle_dagster.sync_runner import run_sync

    started = time.monotonic()
    defs = build_definitions(load_settings())
    with dg.DagsterInstance.get() as instance:
        report = run_sync(defs, instance, log_level="ERROR")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "kind": report.kind,
                "success": report.success,
                "failures": report.failures[:3],
                "wall_s": round(time.monotonic() - started, 1),
                "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
                "runs": len(report.runs),
            }
        )
    )


def write_settings(root: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """The packaged settings with `edit` applied, as root/settings.yaml (for MOLEQULE_SETTINGS)."""
    from molequle_dagster.settings import default_settings_path

    data = yaml.safe_load(default_settings_path().read_text())
    edit(data)
    path = root / "settings.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def sync_environment(root: Path, base_url: str, settings: Path) -> dict[str, str]:
    """What the definitions read to sync the sandbox at `base_url` into a lake and a Dagster home
    under `root` (created here)."""
    (root / "home").mkdir(exist_ok=True)
    return {
        "MARKETO_BASE_URL": base_url,
        "MARKETO_CLIENT_ID": OUR_CLIENT,
        "MARKETO_CLIENT_SECRET": "sandbox-secret",
        "MOLEQULE_SETTINGS": str(settings),
        "MOLEQULE_LAKE_URI": str(root / "lake"),
        "DAGSTER_HOME": str(root / "home"),
    }


def settings_file(root: Path, history_days: int) -> Path:
    def edit(data: dict[str, Any]) -> None:
        data["marketo"]["bulk"]["poll_interval_s"] = 0
        data["sync"]["history_days"] = history_days
        data["budget"] = {"daily_export_mb": 100_000, "export_share": 1.0}  # see --export-quota-mb

    return write_settings(root, edit)


def lake_files(lake: Path) -> dict[str, tuple[int, int]]:
    """Every file of a local lake: (size, mtime) by path."""
    if not lake.exists():
        return {}
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in lake.rglob("*") if p.is_file()}


def written(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, int]:
    """What a phase wrote to the lake: files new or changed since `before`, and their bytes."""
    changed = [path for path, stamp in after.items() if before.get(path) != stamp]
    return {
        "lake_files_written": len(changed),
        "lake_bytes_written": sum(after[path][0] for path in changed),
        "lake_bytes": sum(size for size, _ in after.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--history-days", type=int, default=730)
    parser.add_argument("--churn", default="0,0.001,0.01", help="comma-separated churn levels, one tick each")
    parser.add_argument("--activities-per-person", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--export-quota-mb",
        type=int,
        default=100_000,
        help="the sandbox's daily export quota (lifted: this measures ticks, not the first sync)",
    )
    parser.add_argument("--profile", default="fast", help=argparse.SUPPRESS)  # the sandbox's latencies
    parser.add_argument("--serve-sandbox", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--phase", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sandbox:
        serve_sandbox(args.people, args.activities_per_person, args.seed, args.export_quota_mb, args.profile)
        return
    if args.phase:
        run_phase()
        return
    try:
        levels = [float(c) for c in args.churn.split(",") if c.strip()]
    except ValueError:
        raise SystemExit(
            f"--churn: expected comma-separated fractions such as 0,0.001,0.01, got {args.churn!r}"
        ) from None
    if any(not 0 <= c < 1 for c in levels):
        raise SystemExit(f"--churn: each level must be in [0, 1), got {args.churn!r}")
    root = Path(tempfile.mkdtemp(prefix="molequle-scale-"))
    sandbox = Sandbox(args, extra=quota_arguments(args.export_quota_mb, args.profile))
    print(json.dumps({"phase": "sandbox", **sandbox.info}), flush=True)
    settings = settings_file(root, args.history_days)
    env = dict(os.environ, **sync_environment(root, sandbox.info["base_url"], settings))
    try:
        for phase, churn in [("initial", 0.0), *(("tick", c) for c in levels)]:
            changed = sandbox.ask(op="churn", rates=churn_rates(churn), seed=11) if churn else {}
            before = sandbox.ask(op="reset")["jobs"]
            files_before = lake_files(root / "lake")
            child = subprocess.run(
                [sys.executable, __file__, "--phase"], env=env, capture_output=True, text=True
            )
            lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
            if child.returncode or not lines:
                sys.stderr.write(child.stderr[-3000:])
                raise SystemExit(f"{phase} failed")
            figures = json.loads(lines[-1])
            counted = sandbox.ask(op="counts", since_jobs=before)
            print(
                json.dumps(
                    {
                        "phase": phase,
                        "people": args.people,
                        "churn": churn,
                        "wall_s": figures["wall_s"],
                        "cpu_s": figures["cpu_s"],
                        "calls": counted["calls"],
                        "exports": counted["exports"],
                        "export_bytes": counted["export_bytes"],
                        "peak_rss_mib": figures["peak_rss_mib"],
                        **written(files_before, lake_files(root / "lake")),
                        "runs": figures["runs"],
                        "success": figures["success"],
                        "changed": changed,
                        "calls_by_endpoint": counted["by_endpoint"],
                    }
                ),
                flush=True,
            )
            if not figures["success"]:
                raise SystemExit(f"{phase}: {figures['failures']}")
    finally:
        sandbox.close()


if __name__ == "__main__":
    main()
