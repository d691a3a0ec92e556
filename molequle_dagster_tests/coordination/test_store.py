"""The coordination store on both backends: the rate window, slots, claims, named locks, the job ledger,
usage, the quota stop; a dead process frees what it held; concurrent processes never exceed a limit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from molequle_dagster.coordination import (
    CoordinationError,
    JobRecord,
    LockTimeout,
    PostgresStore,
    SqliteStore,
    open_store,
)
from molequle_dagster_tests.coordination.backends import StoreFactory, pg_url, target

REPO = Path(__file__).resolve().parents[2]


def job(export_id: str, status: str = "created", **columns: object) -> JobRecord:
    instance, key = str(columns.pop("instance", "inst")), str(columns.pop("key", "k1"))
    return JobRecord(export_id, instance, "user", key, "leads", status, **columns)  # type: ignore[arg-type]


def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Wait for something another process does (the server noticing a dead session), with a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# --- rate window ---------------------------------------------------------------------------------------


def test_rate_window_admits_the_limit_then_says_how_long_to_wait(make_store: StoreFactory) -> None:
    store, other = make_store(), make_store()  # two processes on one store
    first = store.try_admit_call("i", limit=3, window_s=30.0, stale_after_s=900)
    assert first.ticket is not None
    assert other.try_admit_call("i", limit=3, window_s=30.0, stale_after_s=900).ticket is not None
    assert store.try_admit_call("i", limit=3, window_s=30.0, stale_after_s=900).ticket is not None
    full = other.try_admit_call("i", limit=3, window_s=30.0, stale_after_s=900)
    assert full.ticket is None and full.wait_s == 0.0  # all three still in flight: poll
    store.finish_call(first.ticket)
    full = other.try_admit_call("i", limit=3, window_s=30.0, stale_after_s=900)
    assert full.ticket is None and 29.0 < full.wait_s <= 30.0  # the first leaves 30 s after it finished
    # Another instance has a window of its own.
    assert store.try_admit_call("j", limit=3, window_s=30.0, stale_after_s=900).ticket is not None


def test_finished_calls_leave_the_window_and_dead_calls_go_stale(make_store: StoreFactory) -> None:
    store = make_store()
    tickets = [store.try_admit_call("i", limit=2, window_s=0.0, stale_after_s=900).ticket for _ in range(2)]
    assert store.try_admit_call("i", limit=2, window_s=0.0, stale_after_s=900).ticket is None
    store.finish_call(tickets[0])  # a zero window: a finished call stops counting at once
    assert store.try_admit_call("i", limit=2, window_s=0.0, stale_after_s=900).ticket is not None
    # Two calls never finished (their process died) stop counting after stale_after_s.
    assert store.try_admit_call("i", limit=2, window_s=0.0, stale_after_s=0.0).ticket is not None


def test_admitted_calls_count_on_their_usage_day(make_store: StoreFactory) -> None:
    store = make_store()
    for _ in range(3):
        store.try_admit_call("i", limit=100, window_s=20, stale_after_s=900, usage_day="2026-03-01")
    store.try_admit_call("i", limit=100, window_s=20, stale_after_s=900, usage_day="2026-03-02")
    store.add_calls("i", "2026-03-02", 5)
    assert store.usage("i", "2026-03-01").calls == 3
    assert store.usage("i", "2026-03-02").calls == 6
    assert store.usage("other", "2026-03-01").calls == 0


# --- slots, claims, locks -------------------------------------------------------------------------------


def test_slots_are_shared_by_processes_and_threads(make_store: StoreFactory) -> None:
    store, other = make_store(), make_store()
    held = [store.try_slot("calls", 3), other.try_slot("calls", 3), store.try_slot("calls", 3)]
    assert all(held) and store.try_slot("calls", 3) is None and other.try_slot("calls", 3) is None
    assert store.try_slot("downloads", 1) is not None  # another pool
    held[1].release()
    again = store.try_slot("calls", 3)
    assert again is not None and other.try_slot("calls", 3) is None
    # Threads of one process (one store object) never share a slot either.
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(store.try_slot("t", 2))) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 2


def test_claims_are_exclusive_until_released(make_store: StoreFactory) -> None:
    store, other = make_store(), make_store()
    claim = store.try_claim("bulk-job:e1")
    assert claim is not None
    assert store.try_claim("bulk-job:e1") is None and other.try_claim("bulk-job:e1") is None
    assert other.try_claim("bulk-job:e2") is not None
    claim.release()
    claim.release()  # releasing twice is harmless
    assert other.try_claim("bulk-job:e1") is not None


def test_named_lock_blocks_then_times_out(make_store: StoreFactory) -> None:
    store, other = make_store(), make_store()
    entered = threading.Event()
    leave = threading.Event()

    def holder() -> None:
        with store.lock("lake:people", timeout_s=5):
            entered.set()
            leave.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert entered.wait(10)
    started = time.monotonic()
    with (pytest.raises(LockTimeout, match=r"lock 'lake:people' still held by another process after 0.3s"),
          other.lock("lake:people", timeout_s=0.3)):
        pass
    assert 0.25 < time.monotonic() - started < 5
    with other.lock("lake:accounts", timeout_s=0.3):  # other names are independent
        pass
    got: list[float] = []

    def waiter() -> None:
        with other.lock("lake:people", timeout_s=10):
            got.append(time.monotonic())

    waiting = threading.Thread(target=waiter)
    waiting.start()
    released_at = time.monotonic()
    leave.set()
    thread.join()
    waiting.join()
    assert got and got[0] >= released_at  # the waiter got it once the holder left


HOLDER = textwrap.dedent("""
    import sys
    from molequle_dagster.coordination import PostgresStore, open_store
    where, schema = sys.argv[1], sys.argv[2]
    store = PostgresStore(where, schema=schema) if schema else open_store(where)
    slot = store.try_slot("calls", 1)
    claim = store.try_claim("bulk-job:e1")
    lock = store.lock("lake:people", timeout_s=5)
    lock.__enter__()
    print("held" if slot and claim else "not held", flush=True)
    sys.stdin.read()  # until killed
""")


def test_a_killed_process_frees_its_slots_claims_and_locks(make_store: StoreFactory) -> None:
    store = make_store()
    child = subprocess.Popen([sys.executable, "-c", HOLDER, *target(store)], cwd=REPO, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        assert store.try_slot("calls", 1) is None and store.try_claim("bulk-job:e1") is None
        with pytest.raises(LockTimeout), store.lock("lake:people", timeout_s=0.2):
            pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert eventually(lambda: store.try_slot("calls", 1) is not None)
    assert eventually(lambda: store.try_claim("bulk-job:e1") is not None)
    with store.lock("lake:people", timeout_s=10):
        pass


# --- ledger ------------------------------------------------------------------------------------------


def test_ledger_rows_round_trip_and_filter(make_store: StoreFactory) -> None:
    store = make_store()
    stored = store.put_job(job("e1", request='{"a":1}', window_end=10.5, reuse_scope="run-1"))
    assert stored.created_at > 0 and stored.updated_at == stored.created_at
    assert store.get_job("e1") == stored
    store.put_job(job("e2", "queued", key="k2"))
    store.put_job(job("e3", "completed", instance="elsewhere"))
    assert store.update_job("e1", status="completed", file_size=123, started_at=5.0)
    assert not store.update_job("missing", status="completed")
    e1 = store.get_job("e1")
    assert e1 is not None and e1.status == "completed" and e1.file_size == 123 and e1.window_end == 10.5
    assert e1.updated_at >= stored.updated_at
    assert [j.export_id for j in store.find_jobs("inst")] == ["e2", "e1"]  # newest first
    assert [j.export_id for j in store.find_jobs("inst", request_key="k1")] == ["e1"]
    assert [j.export_id for j in store.find_jobs("inst", statuses={"queued"})] == ["e2"]
    assert store.find_jobs("inst", statuses=set()) == []
    assert store.find_jobs("inst", updated_before=0.0) == []
    assert store.find_jobs("inst", api_user="someone else") == []
    store.update_job("e2", export_id="e2-renamed")  # a pending create gets its real id
    assert store.get_job("e2") is None and store.get_job("e2-renamed") is not None
    store.delete_job("e1")
    assert store.get_job("e1") is None
    with pytest.raises(ValueError, match=r"update_job: unknown columns \['colour'\]"):
        store.update_job("e3", colour="blue")


def test_reservations_never_exceed_the_limit_when_processes_race(make_store: StoreFactory) -> None:
    stores = [make_store() for _ in range(6)]
    stores[0].put_job(job("old", "queued"))  # already takes one of the three places
    outcomes: dict[int, bool] = {}
    barrier = threading.Barrier(len(stores))

    def reserve(i: int) -> None:
        barrier.wait()
        outcomes[i] = stores[i].reserve_job(job(f"new-{i}", "creating"), limit=3,
                                            counted={"creating", "queued"})

    threads = [threading.Thread(target=reserve, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(outcomes.values()) == 2
    counted = stores[0].find_jobs("inst", statuses={"creating", "queued"})
    assert len(counted) == 3
    # A job already counted may change status within the limit (it does not count against itself).
    assert stores[0].reserve_job(counted[0].with_(status="queued"), limit=3, counted={"creating", "queued"})


def test_usage_sums_the_bytes_of_exports_completed_that_day(make_store: StoreFactory) -> None:
    store = make_store()
    store.put_job(job("a", "completed", file_size=100, quota_day="2026-03-01"))
    store.put_job(job("b", "gone", file_size=50, quota_day="2026-03-01"))  # metered, then expired
    store.put_job(job("c", "completed", file_size=7, quota_day="2026-03-02"))
    store.put_job(job("d", "queued"))
    usage = store.usage("inst", "2026-03-01")
    assert (usage.day, usage.calls, usage.export_bytes, usage.exports) == ("2026-03-01", 0, 150, 2)


def test_quota_stop_is_in_force_until_it_resets(make_store: StoreFactory) -> None:
    store, other = make_store(), make_store()
    now = store.now()
    store.set_quota_stop("i", "calls", reason="607 daily quota", resets_at=now + 3600)
    stop = other.quota_stop("i", "calls")
    assert stop is not None and stop.reason == "607 daily quota" and stop.resets_at == now + 3600
    assert other.quota_stop("i", "exports") is None and other.quota_stop("j", "calls") is None
    store.set_quota_stop("i", "exports", reason="1029", resets_at=now - 1)  # already reset
    assert other.quota_stop("i", "exports") is None
    other.clear_quota_stop("i", "calls")
    assert store.quota_stop("i", "calls") is None


def test_run_due_answers_true_once_per_interval(make_store: StoreFactory) -> None:
    store, other = make_store(), make_store()
    assert store.run_due("sweep", 3600) and not other.run_due("sweep", 3600)
    assert other.run_due("another", 3600)
    assert other.run_due("sweep", 0.0)


# --- opening -------------------------------------------------------------------------------------------


def test_open_store_picks_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_store(tmp_path / "s"), SqliteStore)
    assert (tmp_path / "s" / "coordination.sqlite").exists()
    with pytest.raises(ValueError, match="expected a postgresql:// URL or a directory"):
        open_store("  ")


def test_postgres_url_selects_postgres_and_never_shows_the_password() -> None:
    url = pg_url()
    store = open_store(url)
    try:
        assert isinstance(store, PostgresStore) and "***" in store.description
        assert "dagster:dagster@" not in store.description
    finally:
        store.close()
    wrong = url.replace("dagster:dagster@", "dagster:Wr0ngPassw0rd@", 1)
    with pytest.raises(CoordinationError) as caught:
        open_store(wrong)
    assert "Wr0ngPassw0rd" not in str(caught.value) and "***" in str(caught.value)
    plain = url.replace("postgresql+psycopg2://", "postgresql://", 1)
    store = open_store(plain)
    store.close()
