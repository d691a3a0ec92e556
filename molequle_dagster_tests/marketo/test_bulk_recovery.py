"""Exports paid once and no orphans, against the sandbox over real HTTP on both store backends: a lost
enqueue or create answer, a process killed mid-export, a download cut short, stale and fresh reuse."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from molequle_dagster.marketo import errors as E
from molequle_dagster.marketo.bulk import ExportRequest
from molequle_dagster.marketo.config import BulkConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.coordination.backends import target
from molequle_dagster_tests.marketo.conftest import small_config, wait_for, window
from molequle_dagster_tests.marketo.lossy_proxy import lossy_proxy

ENQUEUE = "POST /bulk/v1/leads/export/{export_id}/enqueue.json"
REPO = Path(__file__).resolve().parents[2]


def ours(sb: SandboxServer, entity: str = "leads") -> list[dict]:
    jobs = sb.context.bulk.jobs_truth()
    return [j for j in jobs if j["apiUser"] == "molequle@sandbox" and j["entity"] == entity]


def jobs_for(sb: SandboxServer, flt: dict, before: set[str], entity: str = "leads") -> list[dict]:
    """Our jobs for this filter that did not exist `before` (the module's sandbox serves many tests)."""
    return [j for j in ours(sb, entity)
            if j["filter"].get("createdAt") == flt.get("createdAt") and j["exportId"] not in before]


def existing(sb: SandboxServer) -> set[str]:
    return {j["exportId"] for j in sb.context.bulk.jobs_truth()}


def ids_created(sb: SandboxServer, flt: dict) -> list[int]:
    lo = datetime.fromisoformat(flt["createdAt"]["startAt"].replace("Z", "+00:00"))
    hi = datetime.fromisoformat(flt["createdAt"]["endAt"].replace("Z", "+00:00"))
    return sorted(p["id"] for p in sb.control.truth_people(["id", "createdAt"]) if lo <= p["createdAt"] <= hi)


# --- a lost enqueue answer ------------------------------------------------------------------------------


def test_a_timed_out_enqueue_checks_the_status_instead_of_failing_or_enqueuing_again(sb, make_client) -> None:
    """Issue 16 item 2: the enqueue is applied but its answer is held past the client's timeout. Before:
    retried blindly, 1003 "only a Created job can be enqueued", a fatal error. Now: a status check finds
    the job queued, and it is neither enqueued again nor failed."""
    client, _ = make_client(sb, timeout_s=0.3)
    flt = {"createdAt": window(8)}
    known = existing(sb)
    sb.control.inject_fault(ENQUEUE, "slow", nth=1, seconds=0.8)
    with client.stats.measure() as spent:
        result = client.bulk_export("leads", fields=["id"], filter=flt)
    assert sorted(result.read_all().column("id").to_pylist()) == ids_created(sb, flt)
    assert spent["errors"] == {"network": 1}
    assert spent["calls"]["POST /bulk/v1/leads/export/{id}/enqueue.json"] == 1
    assert len(jobs_for(sb, flt, known)) == 1
    assert client.stats.snapshot()["exports_created"] == [result.export_id]


# --- a lost create answer -------------------------------------------------------------------------------


def test_a_create_whose_answer_was_lost_leaves_no_orphan(sb, make_client) -> None:
    """Marketo made the job but its answer never arrived: the job is found among our Created jobs
    (GET export.json) and cancelled before the create is tried again."""
    flt = {"createdAt": window(6)}
    known = existing(sb)
    with lossy_proxy(sb.base_url) as proxy:
        client, _ = make_client(sb, base_url=proxy.base_url)
        proxy.lose_answer("POST", "/leads/export/create.json")
        result = client.bulk_export("leads", fields=["id"], filter=flt)
        assert sorted(result.read_all().column("id").to_pylist()) == ids_created(sb, flt)
    assert proxy.lost == ["/bulk/v1/leads/export/create.json"]
    jobs = jobs_for(sb, flt, known)
    assert sorted(j["status"] for j in jobs) == ["Cancelled", "Completed"]
    assert [j["exportId"] for j in jobs if j["status"] == "Completed"] == [result.export_id]
    assert not client._bulk.ledger.find(statuses={"creating", "lost"})


def test_a_lost_create_that_shows_up_later_is_cancelled_by_the_sweep(sb, make_client) -> None:
    """The create takes effect only after the client has looked for it and moved on: the sweep finds
    the job it made and cancels it."""
    flt = {"createdAt": window(5)}
    known = existing(sb)
    with lossy_proxy(sb.base_url) as proxy:
        client, vt = make_client(sb, base_url=proxy.base_url,
                                 bulk=BulkConfig(poll_interval_s=0.0, orphan_timeout_s=0.0))
        proxy.apply_later("POST", "/leads/export/create.json")
        vt.on_sleep = lambda s: proxy.release()  # it arrives while the client backs off
        result = client.bulk_export("leads", fields=["id"], filter=flt)
        result.read_all()
        orphan = [j for j in jobs_for(sb, flt, known) if j["exportId"] != result.export_id]
        assert [j["status"] for j in orphan] == ["Created"]
        assert [j.status for j in client._bulk.ledger.find(statuses={"lost"})] == ["lost"]
        assert client.sweep_orphan_exports() == [orphan[0]["exportId"]]
    assert sorted(j["status"] for j in jobs_for(sb, flt, known)) == ["Cancelled", "Completed"]
    assert not client._bulk.ledger.find(statuses={"creating", "lost"})


# --- a process killed mid-export ------------------------------------------------------------------------

KILLED = textwrap.dedent("""
    import sys
    from molequle_dagster.coordination import PostgresStore, open_store
    from molequle_dagster.marketo import BulkConfig, MarketoClient, MarketoConfig, PacingConfig
    base_url, where, schema, start, end = sys.argv[1:6]
    store = PostgresStore(where, schema=schema) if schema else open_store(where)
    config = MarketoConfig(base_url=base_url, bulk=BulkConfig(poll_interval_s=0.05),
                           pacing=PacingConfig(calls_per_20s=100, window_s=0.01))
    client = MarketoClient(config, "molequle-sandbox", "sandbox-secret", store=store)
    print("exporting", flush=True)
    client.bulk_export("leads", fields=["id"], filter={"createdAt": {"startAt": start, "endAt": end}})
""")


@pytest.fixture
def slow_sandbox():
    """Jobs take 120 s of the sandbox's clock, which stands still unless a test moves it."""
    config = small_config()
    config.bulk.job_overhead_s = 120.0
    with SandboxServer(config, port=0) as server:
        server.control.freeze()
        yield server


def kill_mid_export(sandbox: SandboxServer, store, flt: dict) -> str:
    """Run an export in another process and kill -9 it once its job is processing; the job's id."""
    before = len(sandbox.control.request_log())
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED, sandbox.base_url, *target(store), flt["createdAt"]["startAt"],
         flt["createdAt"]["endAt"]], cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        wait_for(lambda: any(r["path"].endswith("/status.json")
                             for r in sandbox.control.request_log()[before:]), timeout=30)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=10)
    (job,) = ours(sandbox)
    assert job["status"] == "Processing"
    return job["exportId"]


def test_an_export_interrupted_by_a_kill_is_resumed_by_the_next_identical_request(slow_sandbox, make_client,
                                                                                 make_store) -> None:
    flt = {"createdAt": window(9)}
    shared = make_store("shared")
    killed = kill_mid_export(slow_sandbox, shared, flt)
    client, vt = make_client(slow_sandbox, store=make_store("shared"))  # another process, maybe another host
    vt.on_sleep = lambda s: slow_sandbox.control.advance(60)
    result = client.bulk_export("leads", fields=["id"], filter=flt)
    assert result.export_id == killed and result.reused
    assert sorted(result.read_all().column("id").to_pylist()) == ids_created(slow_sandbox, flt)
    assert client.stats.snapshot()["exports_created"] == [] and len(ours(slow_sandbox)) == 1


def test_an_interrupted_export_nobody_claims_is_cancelled_by_the_sweep(slow_sandbox, make_client,
                                                                       make_store) -> None:
    flt = {"createdAt": window(10)}
    killed = kill_mid_export(slow_sandbox, make_store("shared"), flt)
    client, _ = make_client(slow_sandbox, store=make_store("shared"),
                            bulk=BulkConfig(poll_interval_s=0.0, orphan_timeout_s=0.0))
    # A PostgreSQL session ends a moment after its process: until then the job still looks owned.
    wait_for(lambda: client.sweep_orphan_exports() == [killed])
    assert [j["status"] for j in ours(slow_sandbox)] == ["Cancelled"]
    assert client._bulk.ledger.get(killed).status == "cancelled"


def test_a_live_owner_keeps_its_job_out_of_the_sweep(slow_sandbox, make_client, make_store) -> None:
    no_wait = BulkConfig(poll_interval_s=0.0, orphan_timeout_s=0.0)
    owner, _ = make_client(slow_sandbox, store=make_store("shared"), bulk=no_wait)
    sweeper, _ = make_client(slow_sandbox, store=make_store("shared"), bulk=no_wait)
    job = owner._bulk._obtain(ExportRequest("leads", ["id"], {"createdAt": window(11)}, {"id": pa.int64()}))
    assert owner._bulk._start(job)  # created and enqueued; its owner lives on
    assert sweeper.sweep_orphan_exports() == []
    assert [j["status"] for j in ours(slow_sandbox)] == ["Processing"]
    owner._bulk._abandon(job)  # an owner that gives up cancels its job
    assert [j["status"] for j in ours(slow_sandbox)] == ["Cancelled"]


# --- completed exports: reused when they cannot have changed, never when stale --------------------------


def closed_activity_window() -> dict:
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    return {"createdAt": window(20, end)}


@pytest.mark.parametrize("entity, fields, name", [
    ("activities", None, "createdAt"),  # activities never change once written
    ("leads", ["id", "email", "updatedAt"], "updatedAt"),  # what changed in a window that has closed
])
def test_a_completed_export_whose_download_was_cut_is_reused_by_the_next_run(sb, make_client, entity: str,
                                                                            fields: list | None,
                                                                            name: str) -> None:
    flt = {name: closed_activity_window()["createdAt"]}
    first, _ = make_client(sb, store="shared")
    cut = first.bulk_export(entity, fields=fields, filter=flt, reuse_scope="run-1")
    batches = cut.batches()
    next(batches)
    batches.close()  # the download was cut (a crash, a kill)
    second, _ = make_client(sb, store="shared")  # a later run: another scope
    with second.stats.measure() as spent:
        again = second.bulk_export(entity, fields=fields, filter=flt, reuse_scope="run-2")
        table = again.read_all()
    assert again.export_id == cut.export_id and again.reused
    assert not any("create.json" in k or "enqueue.json" in k for k in spent["calls"])
    assert table.num_rows == again.number_of_records > 0


@pytest.mark.parametrize("answer", ["error", "noop"])  # Marketo's answer to cancelling a finished job
def test_a_job_that_completed_before_its_cancel_is_kept_and_reused(make_client, answer: str) -> None:
    """A run that stops (a quota stop, a failure elsewhere) cancels the jobs it still waits for; one that
    completed since its last poll is paid for and must be reused, not cancelled in the ledger and
    exported again."""
    flt = closed_activity_window()
    with SandboxServer(small_config(cancel_finished_job=answer), port=0) as server:
        first, _ = make_client(server, store="shared")
        done = first.bulk_export("activities", fields=None, filter=flt, reuse_scope="run-1")
        ledger = first._bulk.ledger
        ledger.update(done.export_id, status="processing")  # what the run saw at its last poll
        first._bulk.cancel("activities", done.export_id)
        assert ledger.get(done.export_id).status == "completed"
        second, _ = make_client(server, store="shared")
        again = second.bulk_export("activities", fields=None, filter=flt, reuse_scope="run-2")
        assert again.export_id == done.export_id and again.reused
        assert again.read_all().num_rows == done.number_of_records > 0


@pytest.mark.parametrize("change", ["open window", "other fields", "leads by createdAt", "expired file",
                                    "program members"])
def test_a_completed_export_is_not_reused_by_another_run_when_it_may_be_stale(sb, make_client,
                                                                            change: str) -> None:
    entity, fields, flt = "activities", None, closed_activity_window()
    later_fields: list[str] | None = None
    if change == "open window":
        flt = {"createdAt": window(3)}  # ends now: records may still arrive
    elif change == "other fields":
        later_fields = ["marketoGUID", "leadId", "activityDate", "activityTypeId"]
    elif change == "leads by createdAt":
        entity, fields = "leads", ["id", "email"]  # field values change after creation
    elif change == "program members":
        entity, fields = "program/members", ["leadId", "statusName"]
        flt = {"programId": next(iter(make_client(sb)[0].programs()))["id"]}
    first, _ = make_client(sb, store="shared")
    done = first.bulk_export(entity, fields=fields, filter=flt, reuse_scope="run-1")
    done.read_all()
    if change == "expired file":
        ledger = first._bulk.ledger
        ledger.update(done.export_id, finished_at=ledger.store.now() - 7 * 86_400)
    second, _ = make_client(sb, store="shared")
    again = second.bulk_export(entity, fields=later_fields or fields, filter=flt, reuse_scope="run-2")
    assert again.export_id != done.export_id and not again.reused
    # Within its own scope (the run's retries) the export is reused whatever its window.
    if change != "expired file":
        assert second.bulk_export(entity, fields=fields, filter=flt, reuse_scope="run-1").export_id == \
            done.export_id


def test_the_ledger_survives_a_change_of_host(sb, make_client, make_store) -> None:
    """Another process with the same store (on PostgreSQL: another host) sees the ledger."""
    flt = closed_activity_window()
    first, _ = make_client(sb, store=make_store("shared"))
    done = first.bulk_export("activities", fields=None, filter=flt)
    done.read_all()
    first.close()
    elsewhere, _ = make_client(sb, store=make_store("shared"))
    assert elsewhere.bulk_export("activities", fields=None, filter=flt).export_id == done.export_id


# --- reuse scopes: an open window is reused only within its scope -----------------------------------


def test_an_open_window_export_is_never_reused_by_another_run(sb, make_client) -> None:
    flt = {"createdAt": window(11)}
    first, _ = make_client(sb, store="s")
    a = first.bulk_export("leads", fields=["id"], filter=flt)
    a.read_all()
    again, _ = make_client(sb, store="s")
    b = again.bulk_export("leads", fields=["id"], filter=flt)
    assert b.export_id != a.export_id and not b.reused
    assert again.stats.snapshot()["exports_created"] == [b.export_id]


def test_an_open_window_export_is_reused_within_its_scope(sb, make_client) -> None:
    flt = {"createdAt": window(12)}
    first, _ = make_client(sb, store="s")
    a = first.bulk_export("leads", fields=["id"], filter=flt, reuse_scope="run-7")
    a.read_all()
    again, _ = make_client(sb, store="s")
    b = again.bulk_export("leads", fields=["id"], filter=flt, reuse_scope="run-7")
    assert b.export_id == a.export_id and b.reused
    other_run = again.bulk_export("leads", fields=["id"], filter=flt, reuse_scope="run-8")
    assert other_run.export_id != a.export_id


def test_unscoped_export_still_reuses_a_job_that_has_not_run(sb, make_client) -> None:
    flt = {"createdAt": window(13, end=datetime.now(UTC) - timedelta(hours=2))}  # a closed window
    client, _ = make_client(sb, store="s")
    sb.control.inject_fault("POST /bulk/v1/leads/export/{export_id}/enqueue.json", "export_quota", nth=1)
    with pytest.raises(E.ExportQuotaExceeded) as info:
        client.bulk_export("leads", fields=["id"], filter=flt)
    rerun, _ = make_client(sb, store="s")
    result = rerun.bulk_export("leads", fields=["id"], filter=flt)
    assert result.export_id == info.value.export_id and result.reused
