"""The reliability matrix: the sync through `molequle_dagster.sync_runner` (the daemon's plan, in its own
process), against the sandbox in its own process, under each fault the sandbox offers, compared with the
fault-free run.

A scenario is an initial sync, then churn and a tick, twice. Every configuration runs the same scenario on
a fresh sandbox generated at the same instant `t0`, each phase starting at the same virtual time; the sync
follows the sandbox's virtual clock (`MOLEQULE_VIRTUAL_CLOCK`), so a retry's back-off moves virtual time
instead of waiting and every fault-free run sees the very same Marketo. What a row checks:

* the lake: every table equal, row for row, to the fault-free run's, ignoring only columns that carry the
  time of the run (`RUN_TIME_COLUMNS`);
* exports paid once: no export request (entity, fields, filter) created again after a job of the same
  request completed (from the sandbox's own job list);
* no orphans: none of our jobs left Created, Queued or Processing on the sandbox;
* every phase succeeded at its first attempt, except where the row itself stopped it: a kill -9, or a
  quota stop Marketo asked for (the row then lifts the stop as midnight would, without moving the clock,
  and the phase runs again);
* the fault fired (`fired`, from the sandbox's rule counters).

`scripts/fault_matrix.py` runs the whole matrix and writes docs/reliability.md;
`test_fault_matrix.py` runs a fast subset in CI.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.process import SandboxProcess

REPO = Path(__file__).resolve().parents[2]
OUR_USER = "molequle@sandbox"
PHASE_GAP = timedelta(hours=3)  # virtual time between phase starts (a stuck job's 2 h timeout fits inside)
# Columns whose values are the time a run happened, not data (when we synced a row, recorded a
# tombstone or merge, first saw a unified cluster, retired an id): they differ between any two runs.
RUN_TIME_COLUMNS = frozenset({"_synced_at", "synced_at", "recorded_at", "first_seen_at", "retired_at"})
TIMEOUT_S = 5.0  # the client's HTTP timeout in every row; `slow` holds an answer a little longer
SLOW_S = 5.5
UNFINISHED = ("Created", "Queued", "Processing")
PHASE_TIMEOUT_S = 900.0
STUCK_JOB_TIMEOUT_S = 1800.0

CREATE = "POST /bulk/v1/*/export/create.json"
ENQUEUE = "POST /bulk/v1/*/export/{id}/enqueue.json"
STATUS = "GET /bulk/v1/*/export/{id}/status.json"
FILE = "GET /bulk/v1/*/export/{id}/file.json"


@dataclass(frozen=True)
class Fault:
    """One sandbox fault rule (`control.inject_fault`)."""

    endpoint: str
    kind: str
    rate: float | None = None
    nth: int | None = None
    times: int | None = 1
    seconds: float = SLOW_S
    seed: int = 7

    def inject(self, sandbox: SandboxProcess) -> None:
        sandbox.control.inject_fault(
            self.endpoint, self.kind, self.nth, self.rate, self.times, seconds=self.seconds, seed=self.seed
        )


@dataclass(frozen=True)
class Kill:
    """kill -9 of the sync process in phase `phase` (0: the initial sync), either once fault rule `hold`
    (a `slow` answer the sandbox holds) has fired, so the process dies at that exact point of its work,
    or the moment it creates a temp file in the lake directory `watch` (a commit under way)."""

    point: str  # what the process was doing: mid-enqueue, mid-export, mid-download, mid-commit
    hold: int | None = None
    watch: str | None = None
    phase: int = 0


@dataclass(frozen=True)
class Configuration:
    name: str
    faults: tuple[Fault, ...] = ()
    kill: Kill | None = None
    note: str = ""


@dataclass(frozen=True)
class Scenario:
    people: int = 1000
    programs: int = 12
    history_days: int = 40  # two 31-day activity windows, so bulk calls come in pairs
    ticks: int = 2
    churn: float = 0.01
    seed: int = 42


@dataclass
class Outcome:
    """What one configuration left: the lake (canonical rows per table), the sandbox's jobs, the rules."""

    tables: dict[str, list[str]]
    jobs: list[dict[str, Any]]
    rules: list[dict[str, Any]]
    phases: list[dict[str, Any]]
    seconds: float


@dataclass
class Row:
    name: str
    fired: int = 0
    lake: str = ""  # "identical" or what differs
    exported_twice: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    failed_phases: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    exports: int = 0

    @property
    def ok(self) -> bool:
        clean = not (self.exported_twice or self.orphans or self.failed_phases)
        return self.lake == "identical" and clean


# --- the configurations -------------------------------------------------------------------------------------
def _generic_kinds() -> list[str]:
    from molequle_dagster.sandbox.faults import ENVELOPE_FAULTS, HTTP_FAULTS, WIRE_FAULTS

    return sorted(ENVELOPE_FAULTS) + sorted(HTTP_FAULTS) + sorted(WIRE_FAULTS)


def _bulk_kinds() -> list[str]:
    from molequle_dagster.sandbox.faults import BULK_ONLY_FAULTS

    return sorted(BULK_ONLY_FAULTS)


# Scripted positions for the rare call families, so each bulk-family fault really fires: (family, nth).
SCRIPTED_PLACES: dict[str, tuple[str, ...]] = {
    "queue_full": (CREATE, ENQUEUE),
    "export_quota": (CREATE, ENQUEUE),
    "job_failed": (CREATE, ENQUEUE, STATUS),
    "job_stuck": (CREATE, ENQUEUE),
    "truncated_body": (FILE,),
}
QUOTA_KINDS = frozenset({"daily_quota", "export_quota"})
# Generic kinds on the bulk families too: a create's or enqueue's answer lost is the costly case (was the
# job made? queued?), a download's the long one.
SCRIPTED_GENERIC = (
    ("slow", CREATE), ("slow", ENQUEUE), ("slow", FILE), ("connection_reset", CREATE),
    ("connection_reset", FILE), ("http_503", ENQUEUE), ("token_invalid", FILE), ("malformed_json", CREATE),
)


def kill_configurations() -> list[Configuration]:
    """kill -9 of the initial sync at each phase of an export: each held by a `slow` answer."""
    activities_file = FILE.replace("*", "activities")
    leads_file = FILE.replace("*", "leads")
    return [
        Configuration(
            "kill -9 mid-enqueue", (Fault(ENQUEUE, "slow", nth=1, seconds=600),), Kill("mid-enqueue", 0),
            "the first enqueue is held; the job stays Created",
        ),
        Configuration(
            "kill -9 mid-export", (Fault(STATUS, "slow", nth=1, seconds=600),), Kill("mid-export", 0),
            "the first status poll is held; the job is queued on Marketo",
        ),
        Configuration(
            "kill -9 mid-download",
            (
                Fault(activities_file, "truncated_body", nth=1),
                Fault(activities_file, "slow", nth=2, seconds=600),
            ),
            Kill("mid-download", 1),
            "an activities file is cut halfway and its Range resume held; day files are half written",
        ),
        Configuration(
            "kill -9 mid-download (population)",
            (Fault(leads_file, "truncated_body", nth=1), Fault(leads_file, "slow", nth=2, seconds=600)),
            Kill("mid-download", 1),
            "the population file is cut halfway and its resume held",
        ),
        Configuration(
            "kill -9 mid-commit", (), Kill("mid-commit", watch="people/data", phase=1),
            "the first tick is killed the moment it starts writing a data file of `people`",
        ),
    ]


def full_configurations() -> list[Configuration]:
    """Kills and scripted positions first (where defects hide), then each kind at 10% and at 1%."""
    rows = kill_configurations()
    for kind, places in SCRIPTED_PLACES.items():
        for place in places:
            rows.append(Configuration(f"{kind} on {_family(place)} #2", (Fault(place, kind, nth=2),)))
    for kind, place in SCRIPTED_GENERIC:
        rows.append(Configuration(f"{kind} on {_family(place)} #1", (Fault(place, kind, nth=1),)))
    for rate in (0.10, 0.01):
        for kind in [*_generic_kinds(), *_bulk_kinds()]:
            # A quota error means the day's quota is gone: it comes once, then the sync waits for the reset.
            times = 1 if kind in QUOTA_KINDS else None
            rows.append(Configuration(f"{kind} at {rate:.0%}", (Fault("*", kind, rate=rate, times=times),)))
    return rows


def ci_configurations() -> list[Configuration]:
    """A handful that covers each family of failure: auth, a lost answer, the bulk kinds, a kill."""
    return [
        Configuration(
            "mixed: 601 at 10%, 503 at 10%, queue_full/truncated/timeout on the bulk calls",
            (
                Fault("*", "token_invalid", rate=0.10, times=None),
                Fault("*", "http_503", rate=0.10, times=None, seed=8),
                Fault(CREATE, "queue_full", nth=2),
                Fault(ENQUEUE, "slow", nth=1),
                Fault(STATUS, "job_failed", nth=1),
                Fault(FILE, "truncated_body", nth=1),
            ),
        ),
        kill_configurations()[2],
    ]


def _family(endpoint: str) -> str:
    return {CREATE: "create", ENQUEUE: "enqueue", STATUS: "status", FILE: "file"}[endpoint]


# --- running one configuration ------------------------------------------------------------------------------
def default_t0(now: datetime | None = None) -> datetime:
    """08:00 UTC of the latest day whose whole scenario (three phases, two hours apart) lies in the past:
    the same quota day in Chicago and the same UTC day throughout, and close enough to real time that
    clocks the client reads from the store (real time) agree with the sandbox's within a day."""
    now = now or datetime.now(UTC)
    day = now.replace(hour=8, minute=0, second=0, microsecond=0)
    return day if day + 3 * PHASE_GAP <= now else day - timedelta(days=1)


def sandbox_config(scenario: Scenario) -> SandboxConfig:
    config = SandboxConfig.for_profile("fast")
    config.data.people = scenario.people
    config.data.programs = scenario.programs
    config.data.seed = scenario.seed
    return config


def settings_data(scenario: Scenario) -> dict[str, Any]:
    from molequle_dagster.settings import default_settings_path

    data = yaml.safe_load(default_settings_path().read_text())
    data["marketo"]["timeout_s"] = TIMEOUT_S
    data["marketo"]["pacing"]["calls_per_20s"] = 90
    data["sync"]["history_days"] = scenario.history_days
    # A stuck job is given up after 30 min, not 2 h: a row whose faults strand a job or two in one phase
    # stays inside its phase's 3 h of virtual time.
    data["marketo"]["bulk"]["job_timeout_s"] = STUCK_JOB_TIMEOUT_S
    return data


def churn_rates(churn: float) -> dict[str, float]:
    return {
        "new_people": churn,
        "attribute_updates": churn,
        "email_changes": churn / 5,
        "merges": churn / 5,
        "deletions": churn / 5,
        "new_activities_per_person": churn * 5,
        "program_status_changes": churn,
        "new_programs": 1,
    }


@contextmanager
def _sandbox(scenario: Scenario, t0: datetime) -> Iterator[SandboxProcess]:
    with SandboxProcess(config=sandbox_config(scenario), now=t0) as sandbox:
        yield sandbox


def run_configuration(
    config: Configuration, scenario: Scenario, t0: datetime, root: Path, log: Any = None
) -> Outcome:
    """The scenario under `config`'s faults, in a fresh sandbox and a fresh lake/instance under `root`."""
    started = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    (root / "home").mkdir(exist_ok=True)
    settings = root / "settings.yaml"
    settings.write_text(yaml.safe_dump(settings_data(scenario)))
    phases: list[dict[str, Any]] = []
    cleared: list[dict[str, Any]] = []  # rules a kill cleared to release what they held, as they stood
    with _sandbox(scenario, t0) as sandbox:
        env = _phase_env(sandbox, root, settings)
        for fault in config.faults:
            fault.inject(sandbox)
        for index in range(1 + scenario.ticks):
            at = t0 + index * PHASE_GAP
            now = sandbox.call("control", "freeze")
            if now > at:
                raise RuntimeError(f"phase {index}: the virtual clock is at {now}, past the phase start {at}")
            sandbox.control.freeze(at)
            if index:
                sandbox.control.apply_churn(churn_rates(scenario.churn), seed=100 + index)
            kill = config.kill if config.kill is not None and config.kill.phase == index else None
            phases.extend(_run_phase(sandbox, env, root, index, kill, cleared))
            sandbox.control.wait_for_exports()
        sandbox.control.freeze()
        sandbox.control.wait_for_exports()
        rules = cleared + sandbox.control.faults()
        jobs = sandbox.control.export_jobs()
    return Outcome(read_lake(root / "lake"), jobs, rules, phases, time.monotonic() - started)


def _phase_env(sandbox: SandboxProcess, root: Path, settings: Path) -> dict[str, str]:
    from molequle_dagster.clock import VIRTUAL_CLOCK_ENV

    return dict(
        os.environ,
        MARKETO_BASE_URL=sandbox.base_url,
        MARKETO_CLIENT_ID=sandbox.client_id,
        MARKETO_CLIENT_SECRET=sandbox.client_secret,
        MOLEQULE_SETTINGS=str(settings),
        MOLEQULE_LAKE_URI=str(root / "lake"),
        MOLEQULE_STATE_DIR=str(root / "state"),
        DAGSTER_HOME=str(root / "home"),
        PYTHONPATH=str(REPO),
        **{VIRTUAL_CLOCK_ENV: sandbox.base_url},
    )


def _run_phase(
    sandbox: SandboxProcess, env: dict[str, str], root: Path, index: int, kill: Kill | None,
    cleared: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """One phase: the sync process to its end; after a kill or a quota stop, once more."""
    attempts: list[dict[str, Any]] = []
    for attempt in range(3):
        sandbox.control.unfreeze()
        child = subprocess.Popen(
            [sys.executable, "-m", "molequle_dagster_tests.reliability.matrix", "--phase"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        if kill is not None and attempt == 0:
            if kill.hold is not None:
                held = sandbox.control.wait_for_fault(kill.hold, 1, timeout=PHASE_TIMEOUT_S)
            else:
                assert kill.watch is not None
                held = wait_for_temp_file(root / "lake" / kill.watch, PHASE_TIMEOUT_S, child)
            child.send_signal(signal.SIGKILL)
            child.communicate(timeout=60)
            cleared.extend(sandbox.control.faults())
            sandbox.control.clear_faults()  # releases the held answer; the sandbox goes on serving
            attempts.append({"phase": index, "attempt": attempt, "killed": kill.point, "held": held,
                             "left": temp_files(root / "lake")})
            continue
        out, err = child.communicate(timeout=PHASE_TIMEOUT_S)
        sandbox.control.freeze()
        lines = [line for line in out.splitlines() if line.startswith("{")]
        report = json.loads(lines[-1]) if lines else {"success": False, "failures": [err[-2000:]]}
        attempts.append({"phase": index, "attempt": attempt, **report})
        if report["success"]:
            break
        if not _lift_quota_stops(sandbox, root):
            break
        attempts[-1]["quota_stop_lifted"] = True
    return attempts


def _lift_quota_stops(sandbox: SandboxProcess, root: Path) -> bool:
    """Expire the quota stops a run recorded, as the reset at midnight would (the clock stays put, so the
    lake stays comparable); True if there was one."""
    from molequle_dagster.coordination import open_store
    from molequle_dagster.marketo.client import scope_key

    store = open_store(str(root / "home" / "molequle"))
    try:
        key = scope_key(sandbox.base_url)
        lifted = False
        for kind in ("calls", "exports"):
            if (stop := store.quota_stop(key, kind)) is not None:
                store.set_quota_stop(key, kind, reason=stop.reason, resets_at=time.time() - 1)
                lifted = True
        return lifted
    finally:
        store.close()


IN_CREATE = 0x100
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)


def wait_for_temp_file(directory: Path, timeout_s: float, child: subprocess.Popen[str]) -> bool:
    """Block until a temp file (`.…tmp-…`) is created in `directory` (inotify: no polling, and the kill
    that follows lands while the writer is at it); False on timeout or if the child ended first."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0 or libc.inotify_add_watch(fd, str(directory).encode(), IN_CREATE) < 0:
        raise OSError(ctypes.get_errno(), f"inotify on {directory}")
    deadline = time.monotonic() + timeout_s
    try:
        while (left := deadline - time.monotonic()) > 0 and child.poll() is None:
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))  # 1 s: to notice the child's end
            if not ready:
                continue
            data, offset = os.read(fd, 65536), 0
            while offset < len(data):
                _, _, _, size = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size : offset + _EVENT.size + size].rstrip(b"\0")
                offset += _EVENT.size + size
                if name.startswith(b".") and b".tmp-" in name:
                    return True
        return False
    finally:
        os.close(fd)


def temp_files(lake: Path) -> list[str]:
    """Temp files a killed writer left in the lake (dot names with .tmp-)."""
    return sorted(str(p.relative_to(lake)) for p in lake.rglob(".*.tmp-*")) if lake.exists() else []


def read_lake(lake_dir: Path) -> dict[str, list[str]]:
    """Every table of the lake as sorted canonical JSON rows, run-time columns left out."""
    from molequle_dagster.lake import Lake

    lake = Lake(str(lake_dir))
    tables: dict[str, list[str]] = {}
    for entry in sorted(lake_dir.iterdir()) if lake_dir.exists() else []:
        if not entry.is_dir() or entry.name.startswith((".", "_")) or lake.kind(entry.name) is None:
            continue
        table = lake.read_table(entry.name)
        keep = [c for c in table.column_names if c not in RUN_TIME_COLUMNS]
        tables[entry.name] = sorted(
            json.dumps(row, sort_keys=True, default=str) for row in table.select(keep).to_pylist()
        )
    return tables


# --- judging a row -------------------------------------------------------------------------------------
def judge(config: Configuration, outcome: Outcome, baseline: Outcome) -> Row:
    row = Row(config.name, seconds=round(outcome.seconds, 1))
    row.fired = sum(int(r["fired"]) for r in outcome.rules)
    row.lake = compare_lakes(baseline.tables, outcome.tables)
    ours = [j for j in outcome.jobs if j["apiUser"] == OUR_USER]
    row.exports = len(ours)
    row.exported_twice = exported_twice(ours)
    row.orphans = [f"{j['exportId']} {j['entity']} {j['status']}" for j in ours if j["status"] in UNFINISHED]
    for attempt in outcome.phases:
        if "killed" in attempt:
            left = attempt["left"]
            row.notes.append(f"killed {attempt['killed']}" + (f", {len(left)} temp files" if left else ""))
        elif attempt.get("quota_stop_lifted"):
            row.notes.append(f"phase {attempt['phase']}: quota stop honoured, resumed after the reset")
        elif not attempt["success"] and attempt is _last_of_phase(outcome.phases, attempt["phase"]):
            row.failed_phases.append(f"phase {attempt['phase']}: {'; '.join(attempt['failures'])[:300]}")
    return row


def _last_of_phase(phases: Sequence[dict[str, Any]], index: int) -> dict[str, Any]:
    return [p for p in phases if p["phase"] == index][-1]


def compare_lakes(expected: dict[str, list[str]], actual: dict[str, list[str]]) -> str:
    differences = []
    for name in sorted(set(expected) | set(actual)):
        want, got = Counter(expected.get(name, [])), Counter(actual.get(name, []))
        if want != got:
            missing, extra = sum((want - got).values()), sum((got - want).values())
            differences.append(f"{name}: {missing} rows missing, {extra} unexpected")
    return "; ".join(differences) or "identical"


def exported_twice(jobs: Sequence[dict[str, Any]]) -> list[str]:
    """Requests created again after a job of the same request (entity, fields, filter) had completed."""
    completed: dict[str, str] = {}
    twice = []
    for job in sorted(jobs, key=lambda j: (j["createdAt"], j["exportId"])):
        request = json.dumps([job["entity"], job["fields"], job["filter"]], sort_keys=True, default=str)
        if request in completed and completed[request] <= job["createdAt"]:
            twice.append(f"{job['entity']} {json.dumps(job['filter'], default=str)[:120]}")
        if job["status"] == "Completed" and request not in completed:
            completed[request] = str(job.get("finishedAt") or job["createdAt"])
    return twice


# --- the whole matrix ----------------------------------------------------------------------------------
def run_matrix(
    configurations: Sequence[Configuration], scenario: Scenario, root: Path, jobs: int = 1,
    t0: datetime | None = None, progress: Any = None,
) -> tuple[Outcome, list[Row]]:
    t0 = t0 or default_t0()
    say = progress or (lambda _line: None)
    baseline = run_configuration(Configuration("fault-free"), scenario, t0, root / "baseline")
    failed = [p for p in baseline.phases if not p.get("success")]
    if failed:
        raise RuntimeError(f"the fault-free run failed: {failed}")
    say(f"fault-free: {len(baseline.tables)} tables, {sum(map(len, baseline.tables.values()))} rows, "
        f"{baseline.seconds:.0f} s")

    def one(item: tuple[int, Configuration]) -> Row:
        index, config = item
        try:
            row = judge(config, run_configuration(config, scenario, t0, root / f"row{index:03d}"), baseline)
        except Exception as exc:  # a row that crashes the harness is a failed row, not a lost matrix
            row = Row(config.name, lake=f"not compared: {type(exc).__name__}: {exc}"[:300])
        say(f"{'ok  ' if row.ok else 'FAIL'} {row.name}: fired {row.fired}, lake {row.lake}, "
            f"{row.seconds:.0f} s {'; '.join(row.notes + row.failed_phases + row.exported_twice)[:300]}")
        with (root / "rows.jsonl").open("a") as done:  # as they finish: a long matrix shows progress
            done.write(json.dumps({"index": index, "ok": row.ok, **row.__dict__}) + "\n")
        return row

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        rows = list(pool.map(one, enumerate(configurations)))
    return baseline, rows


def phase_main() -> None:
    """In the sync's own process: what `molequle sync` does, once; a JSON report on stdout."""
    import dagster as dg

    from molequle_dagster.definitions import build_definitions
    from molequle_dagster.settings import load_settings
    from molequle_dagster.sync_runner import run_sync

    defs = build_definitions(load_settings())
    with dg.DagsterInstance.get() as instance:
        report = run_sync(defs, instance, log_level="ERROR")
    print(json.dumps({"success": report.success, "kind": report.kind, "runs": len(report.runs),
                      "failures": report.failures[:3]}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--phase", action="store_true")
    if parser.parse_args().phase:
        phase_main()
