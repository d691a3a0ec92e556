"""Benchmark freshness end to end: how long after its change in Marketo each changed record is in the lake.

A production-like loop on the sandbox's virtual clock (MOLEQULE_VIRTUAL_CLOCK), under its `marketo` latency
profile (minutes per bulk export), with default settings (a tick every 10 minutes, 10 REST pages per feed,
the default budget; bulk jobs polled every 60 s as against Marketo) and continuous churn at a daily rate (1%
of the people a day by default, in bench_scale's mix, one round a minute, also while runs are in progress):

* the sandbox runs in its own process (scripts/bench_scale.py's machinery). The churned day gets its
  churn in hourly rounds before the first sync (late that day), so the close at 01:02 exports a full day;
* the first sync runs as `molequle sync` runs it. Then the virtual clock moves 30 s at a time and, as the
  daemon does, the project's schedules whose cron fires (`marketo_sync_schedule`, `marketo_daily_schedule`),
  `marketo_tick_catch_up_sensor` and, every 2 minutes, `marketo_data_freshness_sensor` are evaluated
  against a real Dagster instance. A RunRequest becomes a run of its job, with its tags and run key, in a
  worker thread (so the schedules see it in progress); skips are printed with their reason; the freshness
  sensor's check results are recorded in the instance as the daemon records them;
* while a run is in progress the virtual clock moves with real time (and the run's bulk waits); runs
  execute their steps one after another (in process), so the daily close takes longer than under the
  daemon, where its exports run side by side: a pessimistic close;
* after each run, every changed record still pending is looked up in the lake; its lag is the virtual
  time at the end of that run minus its change time in Marketo (so a record is counted late, never early).
  People attributes are the churned fields the lake keeps (an edit of `unsubscribed` alone is not counted).

stdout: one JSON line per entity `{"entity", "p50_s", "p95_s", "max_s", "records"}`, then one line
`{"calls_per_day", "export_bytes_per_day"}`: the ticks' mean cost per slot times the slots of a day, plus one
daily close. Progress, data ages by high-water mark and the budget comparison go to stderr.

    .venv/bin/python scripts/bench_freshness.py                       # 100k people, 1%/day, 12 slots
    .venv/bin/python scripts/bench_freshness.py --people 20000 --ticks 8
    .venv/bin/python scripts/bench_freshness.py --burst 20000         # a big delta: REST switches to bulk
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import Sandbox, serve_sandbox, sync_environment, write_settings

from molequle_dagster.clock import VIRTUAL_CLOCK_ENV

CHURNED_FIELDS = ("title", "country", "leadScore", "lastName", "unsubscribed", "email")  # churn edits these
ENTITIES = (
    "people_attributes",
    "new_people",
    "email_changes",
    "deletions",
    "merges",
    "activities",
    "memberships",
    "programs",
)
SCHEDULES = ("marketo_sync_schedule", "marketo_daily_schedule")  # the tick first
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- the sandbox's side: churn with a record of every change ------------------------------------------------
def _churn_op(control: Any, command: dict[str, Any]) -> dict[str, Any]:
    """Apply exactly `counts` changes now; answer what changed, with each touched lead's fields after it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from molequle_dagster.sandbox.mutations import epoch_s

    state = control.state
    counts: dict[str, int] = command["counts"]
    people, members = max(state.people.num_rows, 1), max(state.memberships.num_rows, 1)
    # churn takes fractions and makes at least one change of a positive one: exact counts become fractions
    rates = {
        "new_people": counts["new_people"] / people,
        "attribute_updates": counts["attribute_updates"] / people,
        "email_changes": counts["email_changes"] / people,
        "merges": counts["merges"] / people,
        "deletions": counts["deletions"] / people,
        "new_activities_per_person": counts["activities"] / people,
        "program_status_changes": counts["memberships"] / members,
        "new_programs": counts["programs"],
        "status_renames": 0,
        "campaign_updates": 0,
    }
    fields = ["id", *command["fields"]]
    with state.lock:
        earlier = state.people
    before = epoch_s(control.clock.now())
    report = control.apply_churn(rates, seed=command["seed"])
    after = epoch_s(control.clock.now())
    touched = pa.array(sorted({*report.new_lead_ids, *report.updated_lead_ids, *report.email_changed_ids}))
    with state.lock:
        now_rows, acts = state.people, state.activities

    def values(people: pa.Table) -> dict[int, list[Any]]:
        rows = people.filter(pc.is_in(people["id"], value_set=touched.cast(pa.int64()))).select(fields)
        return {r["id"]: [r[f] for f in fields[1:]] for r in rows.to_pylist()}

    snapshot, previous = values(now_rows), values(earlier)
    # An edit of a field the sync does not keep (unsubscribed) changes nothing in the lake: not counted.
    updated = [i for i in report.updated_lead_ids if i in snapshot and snapshot[i] != previous.get(i)]
    dates = pc.cast(acts["activityDate"], pa.int64())
    fresh = acts.filter(pc.and_(pc.greater_equal(dates, before), pc.less_equal(dates, after)))
    return {
        "at": before,  # the change happened at or after this second: lags are counted from it
        "snapshot": {str(k): v for k, v in snapshot.items()},
        "new": report.new_lead_ids,
        "updated": updated,
        "email": report.email_changed_ids,
        "deleted": report.deleted_lead_ids,
        "merges": report.merges,
        "statuses": report.status_changes,
        "programs": report.new_program_ids,
        "activities": [
            [str(g), int(t)]
            for g, t in zip(
                fresh["marketoGUID"].to_pylist(), fresh["activityTypeId"].to_pylist(), strict=True
            )
        ],
        "people": state.people.num_rows,
        "memberships": state.memberships.num_rows,
    }


def _meter_op(control: Any, command: dict[str, Any]) -> dict[str, int]:
    """Calls so far, and the export bytes Marketo metered for our API user's jobs so far."""
    ours = [j for j in control.export_jobs() if j["apiUser"] != "other@sandbox"]
    return {
        "calls": sum(control.call_counts().values()),
        "exports": len(ours),
        "export_bytes": sum(int(j.get("fileSize") or 0) for j in ours),
    }


def _clock_op(control: Any, command: dict[str, Any]) -> dict[str, Any]:
    if command.get("advance_to"):
        target = datetime.fromisoformat(command["advance_to"])
        ahead = (target - control.clock.now()).total_seconds()
        if ahead > 0:
            control.advance(ahead)
    if command.get("unfreeze"):
        control.unfreeze()
    return {"now": control.clock.now().isoformat()}


OPS = {"churn_record": _churn_op, "meter": _meter_op, "clock": _clock_op}


# --- what changed, and when it shows in the lake -----------------------------------------------------------
@dataclass
class Pending:
    """Changes not yet visible in the lake, by entity, each with its Marketo change time (epoch s)."""

    fields: tuple[str, ...]  # the churned lead fields the lake keeps
    leads: dict[int, list[tuple[int, str, tuple]]] = field(default_factory=dict)  # id -> (t, entity, fields)
    new_people: dict[int, int] = field(default_factory=dict)
    deletions: dict[int, int] = field(default_factory=dict)
    merges: dict[int, int] = field(default_factory=dict)  # loser -> t
    memberships: dict[tuple[int, int], list[tuple[int, str]]] = field(default_factory=dict)
    programs: dict[int, int] = field(default_factory=dict)
    activities: dict[str, tuple[int, str]] = field(default_factory=dict)  # guid -> (t, day)
    lags: dict[str, list[float]] = field(default_factory=lambda: {e: [] for e in ENTITIES})

    def add(self, change: dict[str, Any], synced_types: set[int]) -> None:
        at = int(change["at"])
        snapshot = {int(k): tuple(v) for k, v in change["snapshot"].items()}
        gone = set(change["deleted"]) | {loser for _, losers in change["merges"] for loser in losers}
        for lead in gone:  # a removed lead's pending field and status changes can never show: dropped
            self.leads.pop(lead, None)
            self.new_people.pop(lead, None)
        for key in [k for k in self.memberships if k[1] in gone]:
            del self.memberships[key]
        for entity, ids in (("people_attributes", change["updated"]), ("email_changes", change["email"])):
            for lead in ids:
                if lead in snapshot:
                    self.leads.setdefault(lead, []).append((at, entity, snapshot[lead]))
        for lead in change["new"]:
            if lead in snapshot:
                self.new_people[lead] = at
        for lead in change["deleted"]:
            self.deletions[lead] = at
        for _, losers in change["merges"]:
            for loser in losers:
                self.merges[loser] = at
        for program, lead, status in change["statuses"]:
            if lead not in gone:
                self.memberships.setdefault((program, lead), []).append((at, status))
        for program in change["programs"]:
            self.programs[program] = at
        day = datetime.fromtimestamp(at, UTC).date().isoformat()
        for guid, type_id in change["activities"]:
            if type_id in synced_types:  # only the types the sync keeps (configured + 32 + 104)
                self.activities[guid] = (at, day)

    def check(self, lake: Any, visible_at: float) -> None:
        """Move every change the lake now shows into `lags`, counted up to `visible_at`."""

        def seen(entity: str, at: int) -> None:
            self.lags[entity].append(max(visible_at - at, 0.0))

        if self.leads or self.new_people or self.deletions or self.merges:
            people = lake.read_current("people", ["id", *self.fields])
            rows = {r["id"]: tuple(r[f] for f in self.fields) for r in (people.to_pylist() if people else [])}
            for lead, chain in list(self.leads.items()):
                current = rows.get(lead)
                # the newest change whose values the lake shows: it and every older one are visible
                hits = [i for i, (_, _, values) in enumerate(chain) if values == current]
                if hits:
                    for at, entity, _ in chain[: hits[-1] + 1]:
                        seen(entity, at)
                    del chain[: hits[-1] + 1]
                if not chain:
                    del self.leads[lead]
            for name, table, present in (
                ("new_people", self.new_people, True),
                ("deletions", self.deletions, False),
                ("merges", self.merges, False),  # the merged-away lead is gone from people
            ):
                for lead, at in list(table.items()):
                    if (lead in rows) == present:
                        seen(name, at)
                        del table[lead]
        if self.memberships:
            members = lake.read_current("memberships", ["program_id", "lead_id", "status_name"])
            status = {
                (r["program_id"], r["lead_id"]): r["status_name"]
                for r in (members.to_pylist() if members else [])
            }
            for key, chain in list(self.memberships.items()):
                hits = [i for i, (_, name) in enumerate(chain) if name == status.get(key)]
                if hits:
                    for at, _ in chain[: hits[-1] + 1]:
                        seen("memberships", at)
                    del chain[: hits[-1] + 1]
                if not chain:
                    del self.memberships[key]
        if self.programs:
            programs = lake.read_current("marketo_programs", ["id"])
            known = set(programs["id"].to_pylist()) if programs is not None else set()
            for program, at in list(self.programs.items()):
                if program in known:
                    seen("programs", at)
                    del self.programs[program]
        if self.activities:
            days = sorted({day for _, day in self.activities.values()})
            table = lake.days("marketo_activities").read_days(days, ["marketoGUID"])
            known = set(table["marketoGUID"].to_pylist()) if table is not None else set()
            for guid, (at, _) in list(self.activities.items()):
                if guid in known:
                    seen("activities", at)
                    del self.activities[guid]

    def unseen(self, older_than: int) -> dict[str, list[int]]:
        """Change times of the changes still not visible that a finished tick should have read."""
        out: dict[str, list[int]] = {e: [] for e in ENTITIES}
        for chain in self.leads.values():
            for at, entity, _ in chain:
                out[entity].append(at)
        for entity, table in (
            ("new_people", self.new_people),
            ("deletions", self.deletions),
            ("merges", self.merges),
            ("programs", self.programs),
        ):
            out[entity].extend(table.values())
        out["memberships"].extend(at for chain in self.memberships.values() for at, _ in chain)
        out["activities"].extend(at for at, _ in self.activities.values())
        return {e: [t for t in times if t < older_than] for e, times in out.items()}


# --- continuous churn at a daily rate ----------------------------------------------------------------------
class Churn:
    """Rounds of churn every `step_s` of virtual time; each round's counts are the daily rate's share,
    rounded at random so the day's totals come out right."""

    def __init__(self, sandbox: Sandbox, daily: float, step_s: int, seed: int, people: int, members: int):
        self.sandbox, self.daily, self.step_s = sandbox, daily, step_s
        self.fields: tuple[str, ...] = ()  # the lead fields the lake keeps, compared after each change
        self.rng = np.random.default_rng(seed)
        self.people, self.members = people, members
        self.seed = seed
        self.rounds = 0

    def counts(self, seconds: float) -> dict[str, int]:
        share = seconds / 86_400
        per_day = {
            "new_people": self.daily * self.people,
            "attribute_updates": self.daily * self.people,
            "email_changes": self.daily / 5 * self.people,
            "merges": self.daily / 10 * self.people,
            "deletions": self.daily / 10 * self.people,
            "activities": self.daily * 5 * self.people,
            "memberships": self.daily * self.members,
            "programs": 24.0,  # one an hour, so a few land in the hours measured
        }
        out = {}
        for name, rate in per_day.items():
            expected = rate * share
            out[name] = int(expected) + int(self.rng.random() < expected - int(expected))
        return out

    def round(self, seconds: float | None = None, burst: int = 0) -> dict[str, Any]:
        """One round; `burst` adds that many activities at once (a campaign sent to many people)."""
        self.rounds += 1
        counts = self.counts(seconds or self.step_s)
        counts["activities"] += burst
        change = self.sandbox.ask(
            op="churn_record",
            fields=list(self.fields),
            counts=counts,
            seed=self.seed * 100_003 + self.rounds,
        )
        self.people, self.members = change["people"], change["memberships"]
        return change


# --- the loop ----------------------------------------------------------------------------------------------
def cron_matches(cron: str | Sequence[str], at: datetime) -> bool:
    """Whether a five-field cron (numbers, `*`, `*/n`, `a-b`, lists), or any of several, fires at this
    minute."""
    if not isinstance(cron, str):
        return any(cron_matches(one, at) for one in cron)
    values = (at.minute, at.hour, at.day, at.month, at.isoweekday() % 7)
    return all(
        any(_part_matches(part, value) for part in spec.split(","))
        for spec, value in zip(cron.split(), values, strict=True)
    )


def _part_matches(part: str, value: int) -> bool:
    base, _, step = part.partition("/")
    if base == "*":
        low, high = 0, 59
    elif "-" in base:
        low, high = (int(x) for x in base.split("-"))
    else:
        low = high = int(base)
    return low <= value <= high and (value - low) % int(step or 1) == 0


@dataclass
class RunOutcome:
    origin: str  # the schedule or sensor that asked for it
    kind: str
    run_id: str = ""
    success: bool = False
    started_at: float = 0.0  # virtual epoch seconds
    ended_at: float = 0.0
    calls: int = 0
    exports: int = 0
    export_bytes: int = 0
    failure: str = ""


class Runner:
    """One run at a time in a worker thread, so the schedules see it in progress in the instance."""

    def __init__(self, defs: Any, instance: Any, sandbox: Sandbox) -> None:
        self.defs, self.instance, self.sandbox = defs, instance, sandbox
        self.thread: threading.Thread | None = None
        self.done = threading.Event()
        self.outcome: RunOutcome | None = None
        self.recorded = False

    def busy(self) -> bool:
        return self.thread is not None and not self.done.is_set()

    def take_finished(self) -> bool:
        """True once for each run that ended."""
        if self.thread is None or not self.done.is_set() or self.recorded:
            return False
        self.recorded = True
        return True

    def start(self, origin: str, job_name: str, request: Any, kind: str) -> None:
        if self.busy():
            raise SystemExit(f"{origin} asked for a run while another runs: the runs would overlap")
        outcome = RunOutcome(origin, kind)
        self.outcome, self.done, self.recorded = outcome, threading.Event(), False
        job = self.defs.resolve_job_def(job_name)
        tags = {**request.tags, "dagster/run_key": request.run_key}  # as the daemon tags them

        def work() -> None:
            before = self.sandbox.ask(op="meter")
            outcome.started_at = virtual_now(self.sandbox).timestamp()
            try:
                result = job.execute_in_process(
                    instance=self.instance,
                    tags=tags,
                    partition_key=request.partition_key,
                    run_config=QUIET,
                    raise_on_error=False,
                )
                outcome.run_id, outcome.success = result.run_id, result.success
                if not result.success:
                    failure = result.get_run_failure_event()
                    outcome.failure = failure.message if failure else "failed"
            finally:
                outcome.ended_at = virtual_now(self.sandbox).timestamp()
                after = self.sandbox.ask(op="meter")
                outcome.calls = after["calls"] - before["calls"]
                outcome.exports = after["exports"] - before["exports"]
                outcome.export_bytes = after["export_bytes"] - before["export_bytes"]
                self.done.set()

        self.thread = threading.Thread(target=work, name=f"run-{kind}", daemon=True)
        self.thread.start()


def virtual_now(sandbox: Sandbox) -> datetime:
    return datetime.fromisoformat(sandbox.ask(op="clock")["now"])


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else 0.0


def settings_file(root: Path, history_days: int) -> Path:
    """The packaged settings (interval, page budget, late margin, budget: all defaults), polling bulk jobs
    every 60 s as against Marketo (Marketo refreshes a job's status at most once a minute)."""

    def edit(data: dict[str, Any]) -> None:
        data["marketo"]["bulk"]["poll_interval_s"] = 60
        data["sync"]["history_days"] = history_days
        data["write_back"]["enabled"] = False  # pushes Molequle's values to Marketo: not the sync's cost

    return write_settings(root, edit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--churn", type=float, default=0.01, help="share of the people changed per day")
    parser.add_argument("--ticks", type=int, default=12, help="schedule slots after the first sync (≥ 8)")
    parser.add_argument("--churn-step-s", type=int, default=60, help="virtual seconds between churn rounds")
    parser.add_argument(
        "--first-sync-at", default="23:00", help="virtual UTC time of the first sync, on the churned day"
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=0,
        help="activities created at once 25 minutes into the ticks (past the REST page budget: bulk)",
    )
    parser.add_argument("--history-days", type=int, default=1)
    parser.add_argument("--activities-per-person", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--serve-sandbox", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sandbox:
        serve_sandbox(
            args.people,
            args.activities_per_person,
            args.seed,
            export_quota_mb=500,  # Marketo's default daily export quota
            profile="marketo",
            start_at=datetime.fromisoformat(args.start_at),
            ops=OPS,
        )
        return
    if args.ticks < 8:
        raise SystemExit(f"--ticks: at least 8 ticks make a measurement, got {args.ticks}")
    if not 0 < args.churn < 1:
        raise SystemExit(f"--churn: a share of the people per day in (0, 1), got {args.churn}")
    hour, minute = (int(x) for x in args.first_sync_at.split(":"))
    # The churned day (closed at 01:02 the day after) ends before today: the virtual clock stays in the past.
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="molequle-freshness-"))
    sandbox = Sandbox(args, script=__file__, extra=["--start-at", day.isoformat()])
    say(f"sandbox: {sandbox.info}")
    try:
        run_benchmark(args, sandbox, root, day.replace(hour=hour, minute=minute), started)
    finally:
        sandbox.close()


def run_benchmark(
    args: argparse.Namespace, sandbox: Sandbox, root: Path, first_sync: datetime, started: float
) -> None:
    base_url = sandbox.info["base_url"]
    os.environ.update(sync_environment(root, base_url, settings_file(root, args.history_days)))
    os.environ[VIRTUAL_CLOCK_ENV] = base_url  # the sync follows the sandbox's clock
    import dagster as dg

    from molequle_dagster.assets.activities import synced_type_groups
    from molequle_dagster.definitions import build_definitions
    from molequle_dagster.settings import load_settings
    from molequle_dagster.sync_runner import run_sync

    settings = load_settings()
    defs = build_definitions(settings)
    lake = defs.resources["lake"].lake
    churn = Churn(
        sandbox, args.churn, args.churn_step_s, args.seed, sandbox.info["people"], sandbox.info["memberships"]
    )
    kept = tuple(f for f in CHURNED_FIELDS if f in settings.people.export_fields)
    pending, churn.fields = Pending(kept), kept
    # The churned day up to the first sync: the daily rate in hourly rounds (the clock still frozen), so the
    # close exports a day of churn.
    while (at := virtual_now(sandbox) + timedelta(hours=1)) <= first_sync:
        sandbox.ask(op="clock", advance_to=at.isoformat())
        churn.round(3600)
    sandbox.ask(op="clock", advance_to=first_sync.isoformat(), unfreeze=True)
    with dg.DagsterInstance.get() as instance:
        report = run_sync(defs, instance, log_level="ERROR")
        if not report.success:
            raise SystemExit(f"first sync failed: {report.failures[:3]}")
        types = lake.read_current("marketo_activity_types")
        synced = set(synced_type_groups(settings, types))
        wall = time.monotonic() - started
        say(f"first sync done at {virtual_now(sandbox):%H:%M:%S} (virtual), wall {wall:.0f} s")
        runs, ages = loop(args, defs, instance, sandbox, churn, pending, lake, synced)
    report_figures(args, runs, ages, pending, settings, started)


STEP = timedelta(seconds=30)  # the catch-up sensor's interval; schedules fire on whole minutes


@dataclass
class Ages:
    """What the freshness sensor saw: the oldest data age per table, and failed data_fresh checks."""

    oldest_s: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def loop(
    args: argparse.Namespace,
    defs: Any,
    instance: Any,
    sandbox: Sandbox,
    churn: Churn,
    pending: Pending,
    lake: Any,
    synced: set[int],
) -> tuple[list[RunOutcome], Ages]:
    """Move the virtual clock 30 s at a time and do what the daemon does at each moment: evaluate the
    schedules whose cron fires, the catch-up sensor, and every 2 minutes the freshness sensor."""
    import dagster as dg

    from molequle_dagster.conventions import HIGH_WATER_MARK

    schedules = [defs.resolve_schedule_def(name) for name in SCHEDULES]
    tick, catch_up = schedules[0], defs.resolve_sensor_def("marketo_tick_catch_up_sensor")
    freshness = defs.resolve_sensor_def("marketo_data_freshness_sensor")
    runner = Runner(defs, instance, sandbox)
    runs: list[RunOutcome] = []
    ages = Ages()
    now = virtual_now(sandbox)
    next_churn = now + timedelta(seconds=args.churn_step_s)
    burst_at = now + timedelta(minutes=25) if args.burst else None
    moment = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    slots = 0
    while slots < args.ticks:
        # Bring the clock to `moment`: a run in progress moves it (real time, and its bulk waits); with
        # none, jump. Churn rounds fall due on the way, also while a run is in progress.
        while True:
            now = virtual_now(sandbox)
            if runner.take_finished():
                finished(runner.outcome, runs, pending, lake)
            if next_churn <= moment and (now >= next_churn or not runner.busy()):
                if now < next_churn:
                    sandbox.ask(op="clock", advance_to=next_churn.isoformat())
                burst = args.burst if burst_at is not None and next_churn >= burst_at else 0
                if burst:
                    say(f"{next_churn:%H:%M:%S} burst: {burst:,} activities at once")
                    burst_at = None
                pending.add(churn.round(burst=burst), synced)
                next_churn += timedelta(seconds=args.churn_step_s)
            elif now >= moment:
                break
            elif runner.busy():
                runner.done.wait(0.2)  # real time passes: the run's progress moves the virtual clock
            else:
                sandbox.ask(op="clock", advance_to=moment.isoformat())
        answers: list[tuple[str, str, Any]] = []
        for schedule in schedules if moment.second == 0 else []:
            if cron_matches(schedule.cron_schedule, moment):
                slots += schedule is tick
                context = dg.build_schedule_context(instance=instance, scheduled_execution_time=moment)
                answers.append((schedule.name, schedule.job_name, schedule(context)))
        answers.append(
            (catch_up.name, catch_up.job_name, catch_up(dg.build_sensor_context(instance=instance)))
        )
        for name, job_name, answer in answers:
            if isinstance(answer, dg.RunRequest):
                say(f"{moment:%H:%M:%S} {name}: run {answer.run_key}")
                runner.start(name, job_name, answer, "daily" if job_name == schedules[1].job_name else "tick")
            elif name != catch_up.name:  # the sensor's skips are many and say the same
                say(f"{moment:%H:%M:%S} {name}: skipped: {answer.skip_message}")
        if moment.minute % 2 == 0 and moment.second == 0:
            result = freshness(dg.build_sensor_context(instance=instance))
            for event in result.asset_events:  # what the daemon does with a sensor's asset events
                instance.report_runless_asset_event(event)
                if not event.passed:
                    ages.failed.append(f"{moment:%H:%M} {event.asset_key.to_user_string()}")
            for table in ("people", "activities", "memberships", "accounts", "unified_people"):
                event = instance.get_latest_materialization_event(dg.AssetKey(table))
                mark = event.asset_materialization.metadata.get(HIGH_WATER_MARK) if event else None
                if mark is not None:
                    age = now.timestamp() - float(mark.value)
                    ages.oldest_s[table] = max(ages.oldest_s.get(table, 0.0), age)
        moment += STEP
    if runner.busy():
        runner.done.wait()
    if runner.take_finished():
        finished(runner.outcome, runs, pending, lake)
    return runs, ages


def finished(outcome: RunOutcome, runs: list[RunOutcome], pending: Pending, lake: Any) -> None:
    runs.append(outcome)
    took = outcome.ended_at - outcome.started_at
    say(
        f"  {outcome.kind} run {outcome.run_id[:8]} {'ok' if outcome.success else 'FAILED'} in {took:.0f} s "
        f"(virtual), {outcome.calls} calls, {outcome.exports} exports, {outcome.export_bytes:,} bytes"
        + (f": {outcome.failure}" if outcome.failure else "")
    )
    if outcome.success:
        pending.check(lake, outcome.ended_at)


def report_figures(
    args: argparse.Namespace,
    runs: list[RunOutcome],
    ages: Ages,
    pending: Pending,
    settings: Any,
    started: float,
) -> None:
    failed = [r for r in runs if not r.success]
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed: {[r.failure for r in failed][:3]}")
    ticks = [r for r in runs if r.kind == "tick"]
    unseen = pending.unseen(int(max(r.started_at for r in ticks)))  # the last tick read all of these
    for entity in ENTITIES:
        lags = pending.lags[entity]
        late = [runs[-1].ended_at - at for at in unseen[entity]]  # never seen: at least this old
        if late:
            say(f"{entity}: {len(late)} change(s) a tick should have read are not in the lake")
        values = lags + late
        print(
            json.dumps(
                {
                    "entity": entity,
                    "p50_s": percentile(values, 50),
                    "p95_s": percentile(values, 95),
                    "max_s": round(max(values), 1) if values else 0.0,
                    "records": len(values),
                }
            ),
            flush=True,
        )
    per_day = 24 * 60 // settings.sync.interval_minutes
    daily = [r for r in runs if r.kind == "daily"]
    slots = max(args.ticks, 1)
    calls = sum(r.calls for r in ticks) / slots * per_day + sum(r.calls for r in daily[:1])
    exported = sum(r.export_bytes for r in ticks) / slots * per_day + sum(r.export_bytes for r in daily[:1])
    budget = settings.budget
    took = [r.ended_at - r.started_at for r in ticks]
    oldest = ", ".join(f"{t} {a:.0f} s" for t, a in ages.oldest_s.items())
    say(f"oldest data age by high-water mark (freshness sensor, every 2 min): {oldest}")
    say(f"data_fresh failures reported: {ages.failed or 'none'}")
    say(f"ticks: {len(ticks)} runs in {slots} slots, {np.mean(took):.0f} s mean, {max(took):.0f} s max")
    for close in daily:
        say(
            f"daily close: {close.ended_at - close.started_at:.0f} s, {close.calls} calls, "
            f"{close.exports} exports, {close.export_bytes:,} bytes"
        )
    say(
        f"budget: {calls:,.0f} of {budget.calls_limit:,} calls a day ({calls / budget.calls_limit:.1%}), "
        f"{exported / 1e6:,.1f} of {budget.export_bytes_limit / 1e6:,.1f} MB of exports "
        f"({exported / budget.export_bytes_limit:.1%}); wall {time.monotonic() - started:.0f} s"
    )
    print(json.dumps({"calls_per_day": math.ceil(calls), "export_bytes_per_day": math.ceil(exported)}))


if __name__ == "__main__":
    main()
