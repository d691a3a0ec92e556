"""Our share of Marketo's bulk queue: both processing slots kept busy, `max_queued_jobs` never exceeded
across processes sharing a store, and results handed out in order without running far ahead."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from molequle_dagster.marketo.config import BulkConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.marketo.conftest import small_config, window


def lead_windows(count: int, days: int = 10) -> list[dict]:
    end = datetime.now(UTC).replace(microsecond=0)
    return [{"fields": ["id"], "filter": {"createdAt": window(days, end - timedelta(days=days * i + i))}}
            for i in range(count)]


def at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def our_jobs(sandbox: SandboxServer) -> list[dict]:
    return [j for j in sandbox.context.bulk.jobs_truth() if j["apiUser"] == "molequle@sandbox"]


@pytest.fixture
def marketo_timed():
    """Jobs take 130 s to process (not a multiple of the poll: Marketo's timing never lines up with
    ours) and their status is refreshed once a minute, on a clock that moves only when the client waits
    (the client's sleeps advance it)."""
    config = small_config()
    config.bulk.job_overhead_s = 130.0
    config.bulk.status_refresh_s = 60.0
    with SandboxServer(config, port=0) as server:
        server.control.freeze()
        yield server


@pytest.mark.parametrize("max_queued_jobs, keeps_slots_busy", [(4, True), (2, False)])
def test_both_processing_slots_stay_busy_while_work_remains(marketo_timed, make_client, max_queued_jobs: int,
                                                            keeps_slots_busy: bool) -> None:
    """Issue 12 item 1: enqueueing only after seeing a job complete left a slot idle until the next poll.
    With more than two of our jobs queued, the next one starts the moment a slot frees."""
    bulk = BulkConfig(poll_interval_s=60.0, max_queued_jobs=max_queued_jobs)
    client, vt = make_client(marketo_timed, bulk=bulk)
    vt.on_sleep = lambda seconds: marketo_timed.control.advance(seconds)
    rows = sum(r.read_all().num_rows for _, r in client.bulk_export_many("leads", lead_windows(6)))
    assert rows > 0
    jobs = our_jobs(marketo_timed)
    assert len(jobs) == 6 and {j["status"] for j in jobs} == {"Completed"}
    processing = sum(at(j["finishedAt"]) - at(j["startedAt"]) for j in jobs)
    floor = processing / 2  # Marketo processes two at once
    wall = max(at(j["finishedAt"]) for j in jobs) - min(at(j["startedAt"]) for j in jobs)
    assert (wall <= 1.25 * floor) is keeps_slots_busy, (wall, floor)


def test_our_queue_share_holds_across_processes(make_client, make_store) -> None:
    """Two clients sharing a store (two Dagster steps, maybe on two hosts) never have more than
    max_queued_jobs of our jobs queued or processing on Marketo together."""
    config = small_config()
    config.bulk.job_overhead_s = 60.0
    config.bulk.status_refresh_s = 0.0
    limit = 3
    with SandboxServer(config, port=0) as sandbox:
        sandbox.control.freeze()
        clients = [make_client(sandbox, store=make_store("shared"),
                               bulk=BulkConfig(poll_interval_s=0.0, max_queued_jobs=limit))
                   for _ in range(2)]
        for _, vt in clients:
            vt.on_sleep = lambda seconds: time.sleep(0.005)  # wait for the clock below, without spinning
        outcomes: list[int] = []
        errors: list[BaseException] = []

        def export(client, requests) -> None:
            try:
                results = client.bulk_export_many("leads", requests)
                outcomes.append(sum(r.read_all().num_rows for _, r in results))
            except BaseException as error:
                errors.append(error)

        requests = lead_windows(8, days=5)
        threads = [threading.Thread(target=export, args=(c, requests[i::2]))
                   for i, (c, _) in enumerate(clients)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            sandbox.control.advance(30)  # Marketo's time moves on while both clients wait
            time.sleep(0.05)
        for thread in threads:
            thread.join(5)
        assert not errors and len(outcomes) == 2
        jobs = our_jobs(sandbox)
    assert len(jobs) == 8 and {j["status"] for j in jobs} == {"Completed"}
    # On Marketo a job holds a queue place from its enqueue until it finishes: never more than ours.
    events = sorted([(at(j["finishedAt"]), -1) for j in jobs] + [(at(j["queuedAt"]), +1) for j in jobs])
    live = peak = 0
    for _, change in events:
        live += change
        peak = max(peak, live)
    assert limit - 1 <= peak <= limit  # each process alone could have queued `limit`: together no more


def test_results_come_in_order_without_running_far_ahead(sb, make_client) -> None:
    """Only `max_queued_jobs` requests beyond the one the caller is reading are worked on: nothing of an
    export is held in memory, and no export is created long before the caller needs it."""
    client, _ = make_client(sb, bulk=BulkConfig(poll_interval_s=0.0, max_queued_jobs=2))
    exports = client.bulk_export_many("leads", lead_windows(6, days=3))
    index, first = next(exports)
    assert index == 0 and len(client.stats.snapshot()["exports_created"]) <= 2
    seen = [index, *(i for i, _ in exports)]
    assert seen == list(range(6)) and len(client.stats.snapshot()["exports_created"]) == 6
    assert first.read_all().num_rows == first.number_of_records  # still whole after the others ran


def test_admit_holds_a_request_back_until_a_result_is_consumed_and_ends_where_it_says_no(
    sb, make_client
) -> None:
    """A budget measured as the caller goes: a request `admit` turns down while others are in flight waits
    for the next consumed result; turned down with nothing in flight, the results end there and the
    requests after it are never created."""
    client, _ = make_client(sb, bulk=BulkConfig(poll_interval_s=0.0, max_queued_jobs=4))
    consumed: list[int] = []
    asked: list[tuple[int, int]] = []

    def admit(index: int) -> bool:
        asked.append((index, len(consumed)))
        return index < 2 or (index < 4 and len(consumed) >= index - 1)

    seen = []
    for index, result in client.bulk_export_many("leads", lead_windows(6, days=3), admit=admit):
        assert result.read_all().num_rows == result.number_of_records
        seen.append(index)
        consumed.append(index)
    assert seen == [0, 1, 2, 3]  # 4 refused with nothing in flight: 4 and 5 never run
    assert len(client.stats.snapshot()["exports_created"]) == 4
    # 2 was asked (and held back) before anything was consumed, then started once 0 and 1 were read
    assert (2, 0) in asked and asked[-1] == (4, 4)
