"""Benchmark the first sync of a big instance in Marketo time: both export slots, quota days, no manual step.

The sandbox runs in its own process (scripts/bench_scale.py's), with the `marketo` profile's latencies (120 s
per job before rows, status refreshed every 60 s, 50k rows/s) and Marketo's daily export quota
(`--quota-mb`, 500 by default). The sync runs in another process, on the sandbox's virtual clock
(MOLEQULE_VIRTUAL_CLOCK): real time passes as it does, every wait (bulk status polls, the daemon's sensor
interval, a quota pause until the reset) is skipped instantly, so days of Marketo time take minutes. It runs
the production path: the onboarding sensor's plan evaluated as the daemon would, each run it asks for
executed in-process through the same job (`run_sync`), pauses waited out exactly as the sensor does (it
skips until the reset). Every intervention a person would have made (a failed run to look at and
restart) counts as a manual step. Figures from the sandbox's own record of our export jobs:

    {"days", "exports", "export_bytes", "max_bytes_per_day", "quota_bytes_per_day", "manual_steps",
     "wall_s", "slot_floor_s", "wall_over_floor", "busy_wall_s", "bytes_per_day", "runs", ...}

`days`: quota days (midnight America/Chicago) from the start to the last export; `slot_floor_s`: the sum of
our exports' processing times (Marketo's startedAt → finishedAt) over its 2 slots; `busy_wall_s`: wall time
less the time paused for a quota reset (what the slots could have been used for).

    .venv/bin/python scripts/bench_first_sync.py --people 100000 --quota-mb 2000
    .venv/bin/python scripts/bench_first_sync.py --people 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import Sandbox, quota_arguments, sync_environment, write_settings  # the sandbox's process

from molequle_dagster.cli import EMBEDDED_DAGSTER_YAML

SENSOR_INTERVAL_S = 60.0  # marketo_onboarding_sensor's minimum interval: the daemon's gap between runs
MAX_RESTARTS = 3
QUOTA_ZONE = ZoneInfo("America/Chicago")


# --- the sync's own process ------------------------------------------------------------------------------
def run_phase() -> None:
    import dagster as dg

    from molequle_dagster import clock
    from molequle_dagster.sync.plan import Wait
    from molequle_dagster.sync_runner import run_sync

    started, real_started = clock.now(), time.monotonic()
    ended = started  # the end of the last run (the sensor interval after it is no part of the sync)
    paused_s = 0.0
    pauses: list[dict[str, Any]] = []

    def wait_for_reset(wait: Wait) -> bool:
        """What the daemon does: its sensor skips (reason, resume time) until the reset passes."""
        nonlocal paused_s
        if wait.resumes_at is None:
            return False
        seconds = max((wait.resumes_at - clock.now()).total_seconds(), 0.0) + SENSOR_INTERVAL_S
        pauses.append({"at": clock.now().isoformat(), "until": wait.resumes_at.isoformat(), **wait.plan})
        clock.sleep(seconds)
        paused_s += seconds
        return True

    def after_run() -> None:
        """What the daemon does between runs: its sensor's next evaluation a minute later."""
        nonlocal ended
        ended = clock.now()
        clock.sleep(SENSOR_INTERVAL_S)

    failures: list[str] = []
    runs = 0
    manual_steps = 0
    with dg.DagsterInstance.get() as instance:
        while True:
            # The package's definitions (from $MOLEQULE_SETTINGS), as `molequle sync` loads them: the first
            # sync's steps then run side by side, one process each, as under the daemon.
            report = run_sync(
                None,
                instance,
                log_level="ERROR",
                max_runs=1000,
                wait_for_reset=wait_for_reset,
                after_run=after_run,
                onboarding_only=True,
            )
            runs += len(report.runs)
            if report.success:
                break
            failures.extend(report.failures[:3])
            manual_steps += 1  # somebody would look at the failed run and start it again
            if manual_steps > MAX_RESTARTS:
                break
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "success": report.success,
                "failures": failures[:5],
                "manual_steps": manual_steps,
                "runs": runs,
                "started": started.isoformat(),
                "wall_s": round((ended - started).total_seconds(), 1),
                "paused_s": round(paused_s, 1),
                "pauses": pauses,
                "real_s": round(time.monotonic() - real_started, 1),
                "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            }
        )
    )


# --- figures from the sandbox's record of our jobs -----------------------------------------------------
def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def job_figures(jobs: list[dict[str, Any]], started: datetime) -> dict[str, Any]:
    done = [j for j in jobs if j.get("status") == "Completed" and j.get("startedAt") and j.get("finishedAt")]
    by_day: dict[str, int] = defaultdict(int)
    processing = 0.0
    for job in done:
        finished, began = _moment(job["finishedAt"]), _moment(job["startedAt"])
        assert finished is not None and began is not None
        by_day[finished.astimezone(QUOTA_ZONE).date().isoformat()] += int(job.get("fileSize") or 0)
        processing += (finished - began).total_seconds()
    last = max((_moment(j["finishedAt"]) for j in done), default=started)
    assert last is not None
    first_day, last_day = started.astimezone(QUOTA_ZONE).date(), last.astimezone(QUOTA_ZONE).date()
    return {
        "days": (last_day - first_day).days + 1,
        "exports": len(done),
        "exports_not_completed": len(jobs) - len(done),
        "export_bytes": sum(by_day.values()),
        "max_bytes_per_day": max(by_day.values(), default=0),
        "bytes_per_day": dict(sorted(by_day.items())),
        "slot_floor_s": round(processing / 2, 1),
        "exports_by_entity": {
            e: sum(1 for j in done if j["entity"] == e) for e in sorted({j["entity"] for j in done})
        },
    }


# --- where the time went (py-spy) -------------------------------------------------------------------------
# Where the run's process is while its steps run in processes of their own (the side-by-side first sync).
EXECUTOR_WAIT = "_core/executor/multiprocess.py"
WAITING = "waiting for step processes"
PROCESS = re.compile(r'process \d+:"([^"]*)"(;|$)')  # a process not yet running Python has no frames


def _sample(line: str) -> tuple[list[str], bool, list[str], int] | None:
    """(process commands outermost first, whether it is a main thread, frames, count) of a raw line."""
    stack, _, number = line.rpartition(" ")
    if not number.isdigit():
        return None
    processes = []
    while found := PROCESS.match(stack):  # a command line may hold ";" (python -c "...; ...")
        processes.append(found.group(1))
        stack = stack[found.end() :]
    rest = stack.split(";")
    if rest and rest[0].startswith("thread ("):
        rest = rest[1:]  # `--threads`: the thread's id and name; a thread's first frame tells it as well
    main = bool(rest) and not rest[0].startswith(("Thread._bootstrap ", "_bootstrap "))
    return processes, main, rest, int(number)


def _kind(frames: list[str]) -> str:
    """`project`: inside our code (and what it waits on); `dagster`: Dagster around or under it."""
    ours = [i for i, f in enumerate(frames) if "molequle_dagster/" in f and "sync_runner.py" not in f]
    theirs = [i for i, f in enumerate(frames) if "(dagster/" in f or "/site-packages/dagster/" in f]
    if ours and not (theirs and max(theirs) > max(ours)):
        return "project"
    return "dagster" if theirs else "other"


def time_shares(raw: Path) -> dict[str, Any]:
    """Shares of the sync's wall time in a `py-spy record --subprocesses --idle -r N --format raw` file.
    The wall clock is the main thread of the sync's process (`--phase`): with `--idle` it has one sample
    per tick whatever it does. Where that thread waits for a run's steps running in processes of their
    own (the side-by-side first sync), its slice is split the way those step processes' main threads
    spent theirs. Other threads (HTTP pools, waits on locks), the sandbox and this script's parent are
    left out. `project` is time inside our code (assets, sync, lake, client, and what they wait on:
    Marketo's answers, pyarrow), `dagster` everything Dagster does around it (run creation, planned and
    materialization events, step orchestration, storage commits, step process start-up), also when our
    code called into it."""
    wall: dict[str, int] = defaultdict(int)
    steps: dict[str, int] = defaultdict(int)
    for line in raw.read_text().splitlines():
        sample = _sample(line)
        if sample is None:
            continue
        processes, main, frames, count = sample
        phase = [i for i, p in enumerate(processes) if "bench_first_sync.py" in p and "--phase" in p]
        if not main or not phase:
            continue  # another thread, the sandbox's process, this script's own wait
        inner = processes[phase[0] + 1 :]
        if not inner:
            wall[WAITING if any(EXECUTOR_WAIT in f for f in frames) else _kind(frames)] += count
        elif "spawn_main" in inner[-1] or (len(inner) == 2 and "forkserver" in inner[0]):
            # A step process, spawned or forked by the forkserver (not the forkserver itself, not
            # multiprocessing's resource tracker, not Dagster's orphan watcher).
            # No Python frames yet: the interpreter starting a step process, the executor's cost.
            steps[_kind(frames) if any(frames) else "dagster"] += count
    waiting = wall.pop(WAITING, 0)
    step_total = sum(steps.values())
    for kind, count in steps.items():
        wall[kind] += waiting * count / step_total
    if not step_total:
        wall["dagster"] += waiting  # nothing seen of the steps: the executor's own time
    total = sum(wall.values()) or 1
    shares = {k: round(v / total, 3) for k, v in sorted(wall.items())}
    return shares | {"wall_samples": round(total), "step_samples": step_total, "waiting_samples": waiting}


def settings_file(root: Path, args: argparse.Namespace) -> Path:
    """The packaged settings with the benchmark's history and quota; everything else as shipped."""

    def edit(data: dict[str, Any]) -> None:
        data["sync"]["history_days"] = args.history_days
        if args.profile == "marketo":
            # What the settings advise against Marketo (its status refreshes at most once a minute); the
            # packaged 1 s is for the instant sandbox.
            data["marketo"]["bulk"]["poll_interval_s"] = 60
        data.setdefault("budget", {})["daily_export_mb"] = args.quota_mb
        if args.export_share is not None:
            data["budget"]["export_share"] = args.export_share

    return write_settings(root, edit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--quota-mb", type=int, default=500, help="Marketo's daily export quota (MB)")
    parser.add_argument("--history-days", type=int, default=730)
    parser.add_argument(
        "--export-share", type=float, default=None, help="budget.export_share (default: the settings')"
    )
    parser.add_argument("--profile", default="marketo", choices=["marketo", "fast"])
    parser.add_argument("--activities-per-person", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="keep the lake and instance (path on stderr)")
    parser.add_argument("--phase", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--shares", type=Path, help="print the Dagster/project shares of a py-spy raw profile of this script"
    )
    args = parser.parse_args()
    if args.shares:
        print(json.dumps(time_shares(args.shares)))
        return
    if args.phase:
        run_phase()
        return
    if args.people < 1 or args.quota_mb < 10 or not 1 <= args.history_days <= 1130:
        raise SystemExit("--people ≥ 1, --quota-mb ≥ 10 and --history-days in 1..1130 expected")
    root = Path(tempfile.mkdtemp(prefix="molequle-first-sync-"))
    sandbox = Sandbox(args, extra=quota_arguments(args.quota_mb, args.profile))
    env = dict(
        os.environ,
        **sync_environment(root, sandbox.info["base_url"], settings_file(root, args)),
        MOLEQULE_VIRTUAL_CLOCK=sandbox.info["base_url"],
    )
    # The instance `molequle sync` makes: its concurrency pools (at most 2 bulk steps at once).
    (root / "home" / "dagster.yaml").write_text(EMBEDDED_DAGSTER_YAML)
    try:
        child = subprocess.run([sys.executable, __file__, "--phase"], env=env, capture_output=True, text=True)
        lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
        if child.returncode or not lines:
            sys.stderr.write(child.stderr[-4000:])
            raise SystemExit("the first sync's process failed")
        phase = json.loads(lines[-1])
        jobs = sandbox.ask(op="jobs")
        figures = job_figures(jobs, datetime.fromisoformat(phase["started"]))
        if args.keep:
            (root / "jobs.json").write_text(json.dumps({"phase": phase, "jobs": jobs}, indent=1))
    finally:
        sandbox.close()
    if args.keep:
        sys.stderr.write(f"lake and instance kept under {root}\n")
    wall = phase["wall_s"]
    busy = round(wall - phase["paused_s"], 1)
    floor = figures["slot_floor_s"]
    print(
        json.dumps(
            {
                "people": args.people,
                "activities": sandbox.info["activities"],
                "history_days": args.history_days,
                "profile": args.profile,
                **{k: figures[k] for k in ("days", "exports", "export_bytes", "max_bytes_per_day")},
                "quota_bytes_per_day": args.quota_mb * 1024 * 1024,
                "manual_steps": phase["manual_steps"],
                "wall_s": wall,
                "slot_floor_s": figures["slot_floor_s"],
                "wall_over_floor": round(wall / floor, 3) if floor else None,
                "busy_wall_s": busy,
                "busy_over_floor": round(busy / floor, 3) if floor else None,
                "runs": phase["runs"],
                "pauses": len(phase["pauses"]),
                "success": phase["success"],
                "failures": phase["failures"],
                "bytes_per_day": figures["bytes_per_day"],
                "exports_by_entity": figures["exports_by_entity"],
                "exports_not_completed": figures["exports_not_completed"],
                "real_s": phase["real_s"],
                "cpu_s": phase["cpu_s"],
                "peak_rss_mib": phase["peak_rss_mib"],
                "eta_first_pause": phase["pauses"][0].get("eta") if phase["pauses"] else None,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
