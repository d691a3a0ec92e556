"""The sandbox's control surface: `SandboxControl` in Python and the same operations over HTTP under
`/_sandbox/` (clock, faults, counters, request log, ground truth, churn). Never counted as Marketo calls."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from molequle_dagster.sandbox import churn, model, mutations
from molequle_dagster.sandbox.clock import SandboxClock, Sleepers
from molequle_dagster.sandbox.config import NeighbourSettings
from molequle_dagster.sandbox.context import SandboxContext
from molequle_dagster.sandbox.model import InstanceState
from molequle_dagster.sandbox.truth import people_truth


def empty_state(seed: int, now: datetime) -> InstanceState:
    """An instance with no data (tests fill in what they need)."""
    return InstanceState(
        seed=seed,
        people=model.PEOPLE_SCHEMA.empty_table(),
        companies=model.COMPANIES_SCHEMA.empty_table(),
        named_accounts=model.NAMED_ACCOUNTS_SCHEMA.empty_table(),
        activities=model.ACTIVITIES_SCHEMA.empty_table(),
        programs=model.PROGRAMS_SCHEMA.empty_table(),
        memberships=model.MEMBERSHIPS_SCHEMA.empty_table(),
        deleted_leads=model.DELETED_LEADS_SCHEMA.empty_table(),
        merges=model.MERGES_SCHEMA.empty_table(),
        created_at=now,
    )


class SandboxControl:
    def __init__(self, ctx: SandboxContext) -> None:
        self._ctx = ctx

    # --- clock ------------------------------------------------------------------------------------------

    @property
    def clock(self) -> SandboxClock:
        return self._ctx.clock

    @property
    def state(self) -> InstanceState:
        return self._ctx.state

    def freeze(self, at: datetime | None = None) -> datetime:
        return self._ctx.clock.freeze(at)

    def advance(self, seconds: float) -> datetime:
        return self._ctx.clock.advance(seconds)

    def unfreeze(self) -> None:
        self._ctx.clock.unfreeze()

    # --- data changes ------------------------------------------------------------------------------------

    def apply_churn(self, rates: dict[str, float] | None = None, seed: int = 0) -> Any:
        """One round of churn at the current virtual time; returns churn's report."""
        return churn.apply_churn(self.state, self.clock.now(), rates=rates, seed=seed)

    def rename_status(self, channel: str, old: str, new: str) -> None:
        mutations.rename_status(self.state, channel, old, new, now=self.clock.now())

    # --- faults and limits ---------------------------------------------------------------------------------

    def inject_fault(
        self,
        endpoint: str,
        kind: str,
        nth: int | None = None,
        rate: float | None = None,
        times: int | None = 1,
        *,
        seconds: float = 35.0,
        seed: int = 0,
    ) -> dict:
        return self._ctx.faults.inject(
            endpoint, kind, nth=nth, rate=rate, times=times, seconds=seconds, seed=seed
        ).describe()

    def clear_faults(self) -> None:
        self._ctx.faults.clear()

    def faults(self) -> list[dict]:
        return self._ctx.faults.rules()

    def wait_for_fault(self, index: int, fired: int = 1, timeout: float = 120.0) -> bool:
        """Block until fault rule `index` (0 = the first injected) has fired `fired` times; False on
        timeout. A caller in another process uses it to act while the faulty call is under way."""
        return self._ctx.faults.wait_fired(index, fired, timeout)

    def exhaust_daily_quota(self) -> None:
        self._ctx.limiter.exhaust_daily_quota()

    def expire_tokens(self) -> None:
        """Every live access token goes stale now: the next use answers 602, later ones 601."""
        self._ctx.tokens.expire_all()

    def wait_for_exports(self, timeout: float = 120.0) -> bool:
        """Block until no bulk export file is being written (renders run off the request path), including
        jobs that start meanwhile; False on timeout. With a frozen clock, call this before advancing it or
        reading a status, and job progress is deterministic."""
        return self._ctx.bulk.wait_for_renders(timeout)

    def wait_for_in_flight(self, count: int, timeout: float = 5.0) -> bool:
        return self._ctx.limiter.wait_for_in_flight(count, timeout)

    def usage(self) -> list[dict]:
        return self._ctx.limiter.usage(1)

    def export_jobs(self) -> list[dict]:
        """Every bulk export job as it really is now (all users), e.g. to sum the bytes a sync exported."""
        return self._ctx.bulk.jobs_truth()

    # --- neighbours: the other integrations on the subscription ---------------------------------------------

    def set_neighbours(self, level: float, **settings: Any) -> dict:
        """Turn the simulated other integrations on (`level` 0..1 of their full load; 0 turns them off),
        optionally changing their other settings (`config.NeighbourSettings`); returns their load now."""
        current = self._ctx.config.neighbours.model_dump()
        self._ctx.config.neighbours = NeighbourSettings.model_validate(
            {**current, **settings, "level": level}
        )
        return self.neighbours()

    def neighbours(self) -> dict:
        """Their settings and their share of every limit at the current virtual time."""
        return {
            "settings": self._ctx.config.neighbours.model_dump(),
            "load": self._ctx.neighbours.snapshot(self.clock.now()),
        }

    def calls_by_user(self) -> dict[str, int]:
        """Calls counted today per API user, ours and the neighbours' (what stats/usage.json reports)."""
        (today,) = self._ctx.limiter.usage(1)
        return {row["userId"]: row["count"] for row in today["users"]}

    def peak_calls_in_window(self) -> dict[str, int]:
        """Per API user, the most calls the sandbox saw from it in one rate window (since the last reset)."""
        return self._ctx.limiter.peak_calls_in_window()

    # --- what arrived ---------------------------------------------------------------------------------------

    def call_counts(self) -> dict[str, int]:
        return dict(self._ctx.call_counts)

    def request_log(self) -> list[dict]:
        return list(self._ctx.request_log)

    def internal_errors(self) -> list[dict]:
        """Sandbox bugs (unhandled exceptions) that were answered 611 System error, with their tracebacks."""
        return list(self._ctx.internal_errors)

    def reset_counters(self) -> None:
        """Forget call counts, the request log and the limiter's windows (not the data)."""
        self._ctx.call_counts.clear()
        self._ctx.request_log.clear()
        self._ctx.limiter.reset()

    def campaign_requests(self) -> list[dict]:
        with self.state.lock:
            return [dict(item) for item in self.state.campaign_requests]

    def leads_written(self) -> list[dict]:
        with self.state.lock:
            return [dict(item) for item in self.state.leads_written]

    def truth_people(self, fields: list[str] | None = None) -> list[dict]:
        """The people table as plain dicts (id always included), for assertions against a mirror."""
        names = [f for f in (fields or self.state.people.column_names) if not f.startswith("_")]
        return people_truth(self.state, list(dict.fromkeys(["id", *names]))).to_pylist()


# --- HTTP surface ------------------------------------------------------------------------------------------


class BadControlInput(ValueError):
    pass


def control_routes(ctx: SandboxContext) -> list[BaseRoute]:
    control = SandboxControl(ctx)
    sleepers = Sleepers(ctx.clock)
    # A thread for each process asleep: the loop's shared pool (a few threads) would leave a sleeper
    # unheard, and the others would wait on it as if it were at work.
    asleep = ThreadPoolExecutor(max_workers=64, thread_name_prefix="sandbox-sleeper")

    async def body(request: Request) -> dict:
        raw = await request.body()
        if not raw:
            return {}
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BadControlInput(f"body: expected a JSON object ({exc.msg})") from exc
        if not isinstance(parsed, dict):
            raise BadControlInput("body: expected a JSON object")
        return parsed

    def handler(fn: Any) -> Any:
        async def endpoint(request: Request) -> JSONResponse:
            try:
                result = await fn(request)
            except (BadControlInput, ValueError, TypeError, ImportError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse(_jsonable(result if result is not None else {"ok": True}))

        return endpoint

    async def clock_get(request: Request) -> dict:
        if who := request.query_params.get("who"):
            sleepers.seen(who)  # the process is at work: time waits for it (see clock_sleep)
        return {"now": ctx.clock.now(), "frozen": ctx.clock.frozen}

    async def clock_freeze(request: Request) -> dict:
        at = (await body(request)).get("at")
        return {"now": control.freeze(_parse_at(at) if at else None)}

    async def clock_advance(request: Request) -> dict:
        data = await body(request)
        seconds = data.get("seconds")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            raise BadControlInput(f"seconds: expected a number of seconds, got {seconds!r}")
        if data.get("settle"):
            # Export files are written in real time: finish them first, or virtual time would run on
            # while a file is still being written and a job would look slower than Marketo's.
            await asyncio.to_thread(control.wait_for_exports)
        return {"now": control.advance(float(seconds))}

    async def clock_sleep(request: Request) -> dict:
        """A process's wait: the clock jumps once every process waiting on it is asleep (`Sleepers`)."""
        data = await body(request)
        seconds, who = data.get("seconds"), data.get("who")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            raise BadControlInput(f"seconds: expected a number of seconds ≥ 0, got {seconds!r}")
        if not isinstance(who, str) or not who:
            raise BadControlInput(f"who: expected the sleeping process's name, got {who!r}")
        settle = control.wait_for_exports if data.get("settle") else lambda: None
        loop = asyncio.get_running_loop()
        return {"now": await loop.run_in_executor(asleep, sleepers.sleep, who, float(seconds), settle)}

    async def clock_children(request: Request) -> dict:
        """A parent's live child processes (steps of a run): each is at work until it sleeps."""
        data = await body(request)
        who, children = data.get("who"), data.get("children")
        if not isinstance(who, str) or not who:
            raise BadControlInput(f"who: expected the parent process's name, got {who!r}")
        if not isinstance(children, list) or not all(isinstance(c, str) and c for c in children):
            raise BadControlInput(f"children: expected a list of process names, got {children!r}")
        sleepers.children(who, children)
        return {"now": ctx.clock.now()}

    async def clock_unfreeze(request: Request) -> dict:
        control.unfreeze()
        return {"now": ctx.clock.now()}

    async def faults_post(request: Request) -> dict:
        data = await body(request)
        allowed = {"endpoint", "kind", "nth", "rate", "times", "seconds", "seed"}
        extra = set(data) - allowed
        if extra:
            raise BadControlInput(
                f"{sorted(extra)[0]}: unknown fault field; expected some of {sorted(allowed)}"
            )
        for required in ("endpoint", "kind"):
            if not isinstance(data.get(required), str):
                raise BadControlInput(f"{required}: expected a string")
        return control.inject_fault(
            data["endpoint"],
            data["kind"],
            data.get("nth"),
            data.get("rate"),
            data.get("times", 1),
            seconds=float(data.get("seconds", 35.0)),
            seed=int(data.get("seed", 0)),
        )

    async def faults_get(request: Request) -> list:
        return control.faults()

    async def faults_clear(request: Request) -> None:
        control.clear_faults()

    async def counters_get(request: Request) -> dict:
        return {
            "calls": control.call_counts(),
            "in_flight": ctx.limiter.in_flight,
            "calls_in_window": ctx.limiter.calls_in_window(),
            "usage": control.usage(),
            "peak_calls_in_window": control.peak_calls_in_window(),
            "neighbours": control.neighbours()["load"],
        }

    async def neighbours_get(request: Request) -> dict:
        return control.neighbours()

    async def neighbours_post(request: Request) -> dict:
        data = await body(request)
        level = data.pop("level", None)
        if not isinstance(level, int | float) or isinstance(level, bool):
            raise BadControlInput(f"level: expected a number from 0 to 1, got {level!r}")
        try:
            return control.set_neighbours(float(level), **data)
        except ValidationError as exc:
            raise BadControlInput(str(exc)) from exc

    async def counters_reset(request: Request) -> None:
        control.reset_counters()

    async def requests_get(request: Request) -> list:
        return control.request_log()

    async def truth_people(request: Request) -> list:
        fields = [f for v in request.query_params.getlist("fields") for f in v.split(",") if f]
        return control.truth_people(fields or None)

    async def campaign_requests(request: Request) -> list:
        return control.campaign_requests()

    async def leads_written(request: Request) -> list:
        return control.leads_written()

    async def churn(request: Request) -> Any:
        data = await body(request)
        return {"result": control.apply_churn(data.get("rates"), int(data.get("seed", 0)))}

    async def rename_status(request: Request) -> None:
        data = await body(request)
        for name in ("channel", "old", "new"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise BadControlInput(f"{name}: expected a non-empty string")
        control.rename_status(data["channel"], data["old"], data["new"])

    async def exhaust_quota(request: Request) -> None:
        control.exhaust_daily_quota()

    async def expire_tokens(request: Request) -> None:
        control.expire_tokens()

    table = [
        ("/clock", clock_get, "GET"),
        ("/clock/freeze", clock_freeze, "POST"),
        ("/clock/advance", clock_advance, "POST"),
        ("/clock/sleep", clock_sleep, "POST"),
        ("/clock/children", clock_children, "POST"),
        ("/clock/unfreeze", clock_unfreeze, "POST"),
        ("/faults", faults_post, "POST"),
        ("/faults", faults_get, "GET"),
        ("/faults", faults_clear, "DELETE"),
        ("/faults/clear", faults_clear, "POST"),
        ("/counters", counters_get, "GET"),
        ("/counters/reset", counters_reset, "POST"),
        ("/requests", requests_get, "GET"),
        ("/truth/people", truth_people, "GET"),
        ("/campaign-requests", campaign_requests, "GET"),
        ("/leads-written", leads_written, "GET"),
        ("/churn", churn, "POST"),
        ("/rename-status", rename_status, "POST"),
        ("/quota/exhaust", exhaust_quota, "POST"),
        ("/tokens/expire", expire_tokens, "POST"),
        ("/neighbours", neighbours_get, "GET"),
        ("/neighbours", neighbours_post, "POST"),
    ]
    return [Route(path, handler(fn), methods=[method]) for path, fn, method in table]


def _parse_at(value: Any) -> datetime:
    if not isinstance(value, str):
        raise BadControlInput(f"at: expected an ISO-8601 datetime string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadControlInput(
            f"at: expected an ISO-8601 datetime such as 2026-01-31T12:00:00Z, got {value!r}"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    return value
