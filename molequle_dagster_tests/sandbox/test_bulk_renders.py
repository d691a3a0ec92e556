"""Export files are written off the request path: enqueue and status answer at once however long a render
takes, a status never shows Completed before the file is ready, and the virtual timeline (finish times,
slots) does not depend on how fast the render really is."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests

from molequle_dagster.sandbox import bulk as bulk_module
from molequle_dagster.sandbox.bulk_files import write_export
from molequle_dagster.sandbox.model import InstanceState
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.sandbox.bulk_fixtures import small_state
from molequle_dagster_tests.sandbox.conftest import NOW, authorized_session

LEADS = "/bulk/v1/leads/export"
BODY = {
    "fields": ["id", "email"],
    "filter": {"createdAt": {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-31T00:00:00Z"}},
}


@pytest.fixture(scope="module")
def sandbox_state() -> InstanceState:
    return small_state()


class HeldRenders:
    """Renders wait at a gate the test opens: a stand-in for a file that takes minutes to write."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()

    def __call__(self, *args: Any) -> Any:
        self.started.set()
        assert self.gate.wait(timeout=30), "the test never released the render"
        return write_export(*args)


@pytest.fixture
def held(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldRenders]:
    renders = HeldRenders()
    monkeypatch.setattr(bulk_module, "write_export", renders)
    yield renders
    renders.gate.set()
    assert sandbox.control.wait_for_exports()
    sandbox.control.freeze(NOW)


def _enqueued(sandbox: SandboxServer, api: requests.Session) -> str:
    export_id = api.post(f"{sandbox.base_url}{LEADS}/create.json", json=BODY, timeout=10).json()["result"][0][
        "exportId"
    ]
    queued = api.post(f"{sandbox.base_url}{LEADS}/{export_id}/enqueue.json", timeout=10).json()
    assert queued["result"][0]["status"] == "Queued"  # answered while the file is still being written
    return export_id


@pytest.fixture
def rendering(sandbox: SandboxServer, held: HeldRenders) -> tuple[requests.Session, str]:
    """A session and a job whose file is being written (held at the gate)."""
    api = authorized_session(sandbox)
    export_id = _enqueued(sandbox, api)
    assert held.started.wait(timeout=10)
    return api, export_id


def _status(sandbox: SandboxServer, api: requests.Session, export_id: str) -> dict:
    return api.get(f"{sandbox.base_url}{LEADS}/{export_id}/status.json", timeout=10).json()["result"][0]


def test_enqueue_and_status_answer_at_once_while_the_file_is_written(
    sandbox: SandboxServer, held: HeldRenders, rendering: tuple[requests.Session, str]
) -> None:
    api, export_id = rendering
    assert _status(sandbox, api, export_id)["status"] == "Processing"  # past its finish, file not ready
    assert api.get(f"{sandbox.base_url}{LEADS}/{export_id}/file.json", timeout=10).status_code == 404
    assert sandbox.control.wait_for_exports(timeout=0.05) is False
    held.gate.set()
    assert sandbox.control.wait_for_exports()
    done = _status(sandbox, api, export_id)
    assert done["status"] == "Completed" and done["numberOfRecords"] == 2
    assert api.get(f"{sandbox.base_url}{LEADS}/{export_id}/file.json", timeout=10).status_code == 200


def test_the_finish_time_is_the_modelled_one_however_late_the_file_is(
    sandbox: SandboxServer, held: HeldRenders, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox.config.bulk, "job_overhead_s", 120.0)
    monkeypatch.setattr(sandbox.config.bulk, "rows_per_s", 1.0)
    api = authorized_session(sandbox)
    export_id = _enqueued(sandbox, api)
    assert held.started.wait(timeout=10)
    sandbox.control.advance(3600)  # an hour of virtual time passes while the render is held
    api = authorized_session(sandbox)
    assert _status(sandbox, api, export_id)["status"] == "Processing"
    held.gate.set()
    assert sandbox.control.wait_for_exports()
    done = _status(sandbox, api, export_id)
    started, finished = (
        datetime.fromisoformat(done[k].replace("Z", "+00:00")) for k in ("startedAt", "finishedAt")
    )
    assert finished - started == timedelta(seconds=122)  # 120 s overhead + 2 rows at 1 row/s


def test_cancelling_during_a_render_stops_it_and_leaves_no_file(
    sandbox: SandboxServer, held: HeldRenders, rendering: tuple[requests.Session, str]
) -> None:
    api, export_id = rendering
    cancelled = api.post(f"{sandbox.base_url}{LEADS}/{export_id}/cancel.json", timeout=10).json()
    assert cancelled["result"][0]["status"] == "Cancelled"
    held.gate.set()
    assert sandbox.control.wait_for_exports()
    assert _status(sandbox, api, export_id)["status"] == "Cancelled"
    assert not [p for p in sandbox.context.bulk.files_dir.iterdir() if export_id in p.name]


def test_a_render_that_breaks_fails_the_job_visibly(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("simulated render bug")

    monkeypatch.setattr(bulk_module, "write_export", broken)
    api = authorized_session(sandbox)
    export_id = _enqueued(sandbox, api)
    assert sandbox.control.wait_for_exports()
    assert _status(sandbox, api, export_id)["status"] == "Failed"
    (truth,) = [j for j in sandbox.context.bulk.jobs_truth() if j["exportId"] == export_id]
    assert "simulated render bug" in truth["internalError"] and truth["rendering"] is False
