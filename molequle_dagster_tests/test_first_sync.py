"""The first sync on the sandbox's virtual clock with Marketo's latencies (120 s a job, status refreshed
once a minute): two exports processing side by side and never three, Marketo's export quota pausing the
history (green runs, the resume time said) and the onboarding sensor resuming it by itself after the
reset, nothing exported twice, the newest days landing first."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from molequle_dagster import clock
from molequle_dagster.definitions import build_definitions
from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sensors import ONBOARDING_SENSOR
from molequle_dagster.sync.plan import Wait, export_sizes
from molequle_dagster.sync_runner import run_sync
from molequle_dagster_tests.conftest import fast_settings_dict, open_sync_env, parse_settings

CHICAGO = ZoneInfo("America/Chicago")
QUEUE_SHARE = 4  # marketo.bulk.max_queued_jobs (the packaged default)


def at(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """The largest number of [start, end) intervals overlapping at one moment."""
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    current = peak = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


@pytest.fixture
def marketo_latencies(tmp_path, monkeypatch):
    config = SandboxConfig.for_profile("marketo")
    config.data.people = 150
    config.data.programs = 3
    settings = fast_settings_dict(
        marketo__bulk__poll_interval_s=60, marketo__bulk__window_days=7, sync__history_days=40
    )
    with open_sync_env(tmp_path, config, settings) as env:
        monkeypatch.setenv(clock.VIRTUAL_CLOCK_ENV, env.sandbox.base_url)
        yield env


def test_history_keeps_two_exports_processing_pauses_on_the_quota_and_resumes_by_itself(
    marketo_latencies,
) -> None:
    env = marketo_latencies
    defs, instance, control = env.defs, env.instance, env.control
    first = run_sync(defs, instance, max_runs=1, onboarding_only=True, log_level="ERROR")
    assert first.success, first.failures
    # Marketo's export quota: what today used so far, plus a little: the history's first exports fit,
    # the ones after them meet "Export daily quota exceeded" (1029) and history pauses.
    bulk = env.sandbox.context.config.bulk
    bulk.daily_export_bytes = control._ctx.bulk.exported_bytes_today() + 1
    sensor = defs.resolve_sensor_def(ONBOARDING_SENSOR)
    pauses: list[Wait] = []

    def wait_for_reset(wait: Wait) -> bool:
        # While paused the daemon's sensor launches nothing and says why and until when.
        seen = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
        assert not seen.run_requests and seen.skip_reason is not None
        assert "paused until" in seen.skip_reason.skip_message
        assert json.loads(seen.cursor)["state"] == "paused"
        pauses.append(wait)
        assert wait.resumes_at is not None
        clock.sleep((wait.resumes_at - clock.now()).total_seconds() + 60)
        return True

    rest = run_sync(defs, instance, onboarding_only=True, wait_for_reset=wait_for_reset, log_level="ERROR")
    assert rest.success, rest.failures
    assert pauses, "the quota never stopped the history"
    stopped_at = clock.now()
    for wait in pauses:  # each pause lasts until midnight in Marketo's quota zone
        assert wait.resumes_at.astimezone(CHICAGO).time().isoformat() == "00:00:00"
    runs = instance.get_runs(dg.RunsFilter(tags={"molequle/kind": "history"}))
    assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)  # paused, never failed
    assert any("molequle/paused_until" in r.tags for r in runs)

    # Every day is in, and no day was exported twice.
    asset = defs.resolve_assets_def("marketo_activities")
    with dg.partition_loading_context(effective_dt=stopped_at):
        keys = asset.partitions_def.get_partition_keys()
    done = instance.get_materialized_partitions(dg.AssetKey("marketo_activities"))
    assert set(keys[:-1]) <= set(done)
    jobs = [j for j in control.export_jobs() if j["apiUser"] != "other@sandbox"]
    history = [
        j
        for j in jobs
        if j["entity"] == "activities" and j["status"] == "Completed" and j["filter"]["createdAt"]["endAt"]
    ]
    days: list[str] = []
    for job in history:
        window = job["filter"]["createdAt"]
        start, end = at(str(window["startAt"])), at(str(window["endAt"]))
        assert start is not None and end is not None
        days += [(start + timedelta(days=i)).date().isoformat() for i in range((end - start).days + 1)]
    twice = sorted({d for d in days if days.count(d) > 1})
    assert not twice, f"days exported twice: {twice}; exports: {[j['filter']['createdAt'] for j in history]}"

    # Two of our exports processing side by side, never three; never more than our queue share waiting.
    # (Marketo gives no time for a cancel: jobs the quota stop cancelled are left out.)
    ended = [j for j in jobs if j.get("finishedAt")]
    processing = [(at(j["startedAt"]), at(j["finishedAt"])) for j in ended if j.get("startedAt")]
    waiting = [(at(j["queuedAt"]), at(j["finishedAt"])) for j in ended if j.get("queuedAt")]
    assert most_at_once(processing) == 2  # type: ignore[arg-type]
    assert most_at_once(waiting) <= QUEUE_SHARE  # type: ignore[arg-type]

    # The newest days landed first: each history run's days in descending order, the first starting with
    # the day before the first sync's (days that turned into history since then come first in later runs).
    events = instance.fetch_materializations(dg.AssetKey("marketo_activities"), limit=10_000).records
    by_run: dict[str, list[str]] = {}
    for event in sorted(events, key=lambda e: e.storage_id):
        by_run.setdefault(event.run_id, []).append(str(event.partition_key))
    history_ids = {r.run_id for r in runs}
    ordered = [days for run_id, days in by_run.items() if run_id in history_ids]
    assert len(ordered) >= 2  # stopped by the quota once at least, then continued
    assert all(days == sorted(days, reverse=True) for days in ordered)
    initial_day = by_run[first.runs[0]]
    assert ordered[0][0] == (datetime.fromisoformat(initial_day[0]) - timedelta(days=1)).date().isoformat()
    assert datetime.now(UTC) < stopped_at  # the virtual clock ran ahead of real time (a day or more)

    # Each history run planned its range of days in one event per asset, not one per day (run creation
    # had cost a SQLite commit per day), and no day of a history run was marked failed.
    for run in runs:
        planned = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=10_000
        ).records
        activity_plans = [p for p in planned if p.asset_key == dg.AssetKey("marketo_activities")]
        assert len(activity_plans) == 1, len(planned)



def test_a_share_smaller_than_one_window_cuts_the_windows_and_history_moves_every_day(
    tmp_path, monkeypatch
) -> None:
    """At 1M people one 31-day window costs more than a day's history share: the run started no window,
    ended green, and the plan offered it again at once, all day (hundreds of empty runs). Windows are now
    cut to the share, and a run that finds nothing to fit pauses history until the reset."""
    config = SandboxConfig.for_profile("fast")
    config.data.people, config.data.programs = 150, 3
    generous = fast_settings_dict(sync__history_days=21)
    with open_sync_env(tmp_path, config, generous) as env:
        monkeypatch.setenv(clock.VIRTUAL_CLOCK_ENV, env.sandbox.base_url)
        first = run_sync(env.defs, env.instance, max_runs=1, onboarding_only=True, log_level="ERROR")
        assert first.success and len(first.runs) == 1, first
        per_day = export_sizes(env.lake).bytes_per_day  # from today's export (hours of the sandbox's day)
        assert per_day
        # History's share of a quota day: two days at the lake's estimate; the 14 days a 31-day window would
        # hold cost seven times it.
        quota_mb = 10
        share = 2 * per_day / (0.7 * quota_mb * 1024 * 1024)
        tight = fast_settings_dict(
            sync__history_days=21, budget__daily_export_mb=quota_mb, budget__export_share=share
        )
        defs = build_definitions(parse_settings(tight))
        waits: list[Wait] = []

        def wait_for_reset(wait: Wait) -> bool:
            waits.append(wait)
            assert wait.resumes_at is not None
            clock.sleep((wait.resumes_at - clock.now()).total_seconds() + 60)
            return True

        rest = run_sync(defs, env.instance, onboarding_only=True, wait_for_reset=wait_for_reset, max_runs=60,
                        log_level="ERROR")
        assert rest.success, rest.failures
        asset = defs.resolve_assets_def("marketo_activities")
        with dg.partition_loading_context(effective_dt=clock.now()):
            keys = asset.partitions_def.get_partition_keys()
        done = env.instance.get_materialized_partitions(dg.AssetKey("marketo_activities"))
        assert set(keys[:-1]) <= set(done)
        history = [r for r in env.instance.get_runs(dg.RunsFilter(tags={"molequle/kind": "history"}))
                   if r.run_id in rest.runs]
        # Every run moved history on (no empty runs offered again and again), over several quota days.
        assert len(waits) >= 2 and len(history) <= 3 * (len(waits) + 1)
        for run in history:
            spent = json.loads(run.tags["molequle/spent/marketo_activities"])
            assert spent["history_days_exported"] > 0 or spent["history_paused_until"], spent
            windows = spent["windows"]
            assert all(at(end) - at(start) < timedelta(days=31) for start, end in windows)
