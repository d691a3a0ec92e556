"""Each bulk fault kind can be scripted to fire on a given call of the family it acts on (nth/times on
create, enqueue, status and file), and a random rule of such a kind only counts that family's calls, so a
fault matrix can make queue_full (1029), job_failed and truncated downloads really fire."""

from __future__ import annotations

import pytest
import requests

from molequle_dagster.sandbox.model import InstanceState
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.sandbox.bulk_fixtures import small_state

EXPORTS = "/bulk/v1/leads/export"
BODY = {
    "fields": ["id", "email", "company"],
    "filter": {"createdAt": {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-31T00:00:00Z"}},
}
CREATE = "POST /bulk/v1/*/export/create.json"
ENQUEUE = "POST /bulk/v1/*/export/{id}/enqueue.json"
STATUS = "GET /bulk/v1/*/export/{id}/status.json"
FILE = "GET /bulk/v1/*/export/{id}/file.json"


@pytest.fixture(scope="module")
def sandbox_state() -> InstanceState:
    return small_state()


@pytest.fixture
def api(fresh_api: requests.Session) -> requests.Session:
    return fresh_api


def create(sandbox: SandboxServer, api: requests.Session) -> dict:
    return api.post(f"{sandbox.base_url}{EXPORTS}/create.json", json=BODY, timeout=10).json()


def enqueue(sandbox: SandboxServer, api: requests.Session, export_id: str) -> dict:
    return api.post(f"{sandbox.base_url}{EXPORTS}/{export_id}/enqueue.json", timeout=10).json()


def status(sandbox: SandboxServer, api: requests.Session, export_id: str) -> dict:
    return api.get(f"{sandbox.base_url}{EXPORTS}/{export_id}/status.json", timeout=10).json()


def completed(sandbox: SandboxServer, api: requests.Session) -> str:
    export_id = create(sandbox, api)["result"][0]["exportId"]
    enqueue(sandbox, api, export_id)
    assert sandbox.control.wait_for_exports()
    assert status(sandbox, api, export_id)["result"][0]["status"] == "Completed"
    return export_id


def fired(sandbox: SandboxServer) -> list[tuple[int, int]]:
    return [(rule["seen"], rule["fired"]) for rule in sandbox.control.faults()]


def test_queue_full_fires_on_the_nth_create_only(sandbox: SandboxServer, api: requests.Session) -> None:
    sandbox.control.inject_fault(CREATE, "queue_full", nth=2, times=1)
    assert create(sandbox, api)["success"] is True
    second = create(sandbox, api)
    assert second["success"] is False and second["errors"] == [
        {"code": "1029", "message": "Too many jobs in queue"}
    ]
    assert create(sandbox, api)["success"] is True
    assert fired(sandbox) == [(3, 1)]


def test_queue_full_on_enqueue_leaves_the_job_created(sandbox: SandboxServer, api: requests.Session) -> None:
    sandbox.control.inject_fault(ENQUEUE, "queue_full", nth=1, times=2)
    export_id = create(sandbox, api)["result"][0]["exportId"]
    assert enqueue(sandbox, api, export_id)["errors"][0]["code"] == "1029"
    assert enqueue(sandbox, api, export_id)["errors"][0]["code"] == "1029"
    assert status(sandbox, api, export_id)["result"][0]["status"] == "Created"
    assert enqueue(sandbox, api, export_id)["result"][0]["status"] == "Queued"  # times=2: the third passes


def test_job_failed_scripted_on_a_status_poll_fails_the_running_job(
    sandbox: SandboxServer, api: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox.config.bulk, "job_overhead_s", 600.0)  # still processing when polled
    export_id = create(sandbox, api)["result"][0]["exportId"]
    enqueue(sandbox, api, export_id)
    sandbox.control.inject_fault(STATUS, "job_failed", nth=2)
    assert status(sandbox, api, export_id)["result"][0]["status"] == "Processing"
    failed = status(sandbox, api, export_id)["result"][0]
    assert failed["status"] == "Failed" and failed["errorMsg"] and "finishedAt" in failed
    assert sandbox.control.wait_for_exports()
    assert status(sandbox, api, export_id)["result"][0]["status"] == "Failed"
    file = api.get(f"{sandbox.base_url}{EXPORTS}/{export_id}/file.json", timeout=10)
    assert file.status_code == 404
    assert fired(sandbox) == [(3, 1)]


def test_job_failed_scripted_on_enqueue_fails_when_the_job_would_finish(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    sandbox.control.inject_fault(ENQUEUE, "job_failed", nth=1)
    export_id = create(sandbox, api)["result"][0]["exportId"]
    enqueue(sandbox, api, export_id)
    assert sandbox.control.wait_for_exports()
    assert status(sandbox, api, export_id)["result"][0]["status"] == "Failed"


def test_truncated_download_honours_the_resume_range(sandbox: SandboxServer, api: requests.Session) -> None:
    export_id = completed(sandbox, api)
    url = f"{sandbox.base_url}{EXPORTS}/{export_id}/file.json"
    whole = api.get(url, timeout=10).content
    sandbox.control.inject_fault(FILE, "truncated_body", nth=1, times=2)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        api.get(url, timeout=10).content  # noqa: B018 - reading the body is what fails
    response = api.get(url, headers={"Range": "bytes=10-"}, timeout=10, stream=True)
    assert response.status_code == 206  # a resume cut short is still the range it asked for
    assert response.headers["Content-Range"] == f"bytes 10-{len(whole) - 1}/{len(whole)}"
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        response.content  # noqa: B018
    resumed = api.get(url, headers={"Range": "bytes=10-"}, timeout=10)  # the rule is spent
    assert resumed.status_code == 206 and whole[:10] + resumed.content == whole
    assert fired(sandbox) == [(3, 2)]


def test_a_random_rule_of_a_bulk_kind_counts_only_its_family(
    sandbox: SandboxServer, api: requests.Session
) -> None:
    sandbox.control.inject_fault("*", "truncated_body", rate=1.0, times=1)
    for _ in range(5):
        assert api.get(f"{sandbox.base_url}/rest/v1/stats/usage.json", timeout=10).json()["success"] is True
    export_id = completed(sandbox, api)
    assert fired(sandbox) == [(0, 0)]  # creates, enqueues, polls and REST calls are not its family
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        api.get(f"{sandbox.base_url}{EXPORTS}/{export_id}/file.json", timeout=10).content  # noqa: B018
    assert fired(sandbox) == [(1, 1)]
