"""Bulk Extract over real HTTP via `SandboxServer`: envelopes, Range/206, 404 text, _method=GET, faults."""

from __future__ import annotations

import hashlib

import pytest
import requests

from molequle_dagster.sandbox.model import InstanceState
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.sandbox.bulk_fixtures import small_state
from molequle_dagster_tests.sandbox.conftest import authorized_session

LEADS = "/bulk/v1/leads/export"
BODY = {
    "fields": ["id", "email", "company"],
    "filter": {"createdAt": {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-31T00:00:00Z"}},
}


@pytest.fixture(scope="module")
def sandbox_state() -> InstanceState:
    return small_state()


@pytest.fixture
def me(sandbox: SandboxServer) -> requests.Session:
    return authorized_session(sandbox)


def _completed(sandbox: SandboxServer, me: requests.Session, body: dict = BODY) -> dict:
    created = me.post(f"{sandbox.base_url}{LEADS}/create.json", json=body, timeout=10).json()
    assert created["success"] is True, created
    export_id = created["result"][0]["exportId"]
    queued = me.post(f"{sandbox.base_url}{LEADS}/{export_id}/enqueue.json", timeout=10).json()
    assert queued["result"][0]["status"] == "Queued"
    assert sandbox.control.wait_for_exports()
    status = me.get(f"{sandbox.base_url}{LEADS}/{export_id}/status.json", timeout=10).json()["result"][0]
    assert status["status"] == "Completed"
    return status


def test_full_cycle_and_range_requests(sandbox: SandboxServer, me: requests.Session) -> None:
    job = _completed(sandbox, me)
    url = f"{sandbox.base_url}{LEADS}/{job['exportId']}/file.json"
    whole = me.get(url, headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert whole.status_code == 200
    assert whole.headers["Accept-Ranges"] == "bytes"
    assert "Content-Encoding" not in whole.headers  # bulk files are never compressed
    assert whole.content == b'id,email,company\n1,ann@acme.com,"Acme, Inc."\n2,bob@x.org,X\n'
    assert len(whole.content) == job["fileSize"]
    assert "sha256:" + hashlib.sha256(whole.content).hexdigest() == job["fileChecksum"]
    probe = me.get(url, headers={"Range": "bytes=0-0"}, timeout=10)
    assert (probe.status_code, probe.content) == (206, b"i")
    assert probe.headers["Content-Range"] == f"bytes 0-0/{job['fileSize']}"
    tail = me.get(url, headers={"Range": "bytes=17-"}, timeout=10)
    assert tail.status_code == 206 and tail.content == whole.content[17:]
    assert tail.headers["Content-Length"] == str(job["fileSize"] - 17)
    middle = me.get(url, headers={"Range": "bytes=3-9"}, timeout=10)
    assert middle.content == whole.content[3:10]


def test_file_is_plain_text_404_before_completion_for_unknown_ids_and_other_users(
    sandbox: SandboxServer, me: requests.Session
) -> None:
    created = me.post(f"{sandbox.base_url}{LEADS}/create.json", json=BODY, timeout=10).json()["result"][0]
    early = me.get(f"{sandbox.base_url}{LEADS}/{created['exportId']}/file.json", timeout=10)
    assert early.status_code == 404 and early.headers["Content-Type"].startswith("text/plain")
    unknown = me.get(f"{sandbox.base_url}{LEADS}/00000000-0000-0000-0000-000000000000/file.json", timeout=10)
    assert unknown.status_code == 404
    job = _completed(sandbox, me)
    other = authorized_session(sandbox, "other-integration", "other-secret")
    assert other.get(f"{sandbox.base_url}{LEADS}/{job['exportId']}/file.json", timeout=10).status_code == 404
    denied = other.get(f"{sandbox.base_url}{LEADS}/{job['exportId']}/status.json", timeout=10).json()
    assert denied["success"] is False and denied["errors"][0]["code"] == "1003"


def test_list_accepts_method_get_form_with_repeated_and_comma_statuses(
    sandbox: SandboxServer, me: requests.Session
) -> None:
    done = _completed(sandbox, me)["exportId"]
    created = me.post(f"{sandbox.base_url}{LEADS}/create.json", json=BODY, timeout=10).json()["result"][0]
    url = f"{sandbox.base_url}{LEADS}.json"
    repeated = me.post(
        url, params={"_method": "GET"}, data=[("status", "Completed"), ("status", "Created")], timeout=10
    ).json()
    comma = me.get(url, params={"status": "completed,created"}, timeout=10).json()
    ids = {j["exportId"] for j in repeated["result"]}
    assert {done, created["exportId"]} <= ids
    assert ids == {j["exportId"] for j in comma["result"]}
    only_created = me.get(url, params={"status": "Created"}, timeout=10).json()["result"]
    assert done not in {j["exportId"] for j in only_created}
    paged = me.get(url, params={"batchSize": 1}, timeout=10).json()
    assert len(paged["result"]) == 1 and paged["nextPageToken"]


def test_bad_requests_get_marketo_errors_naming_the_field(
    sandbox: SandboxServer, me: requests.Session
) -> None:
    url = f"{sandbox.base_url}{LEADS}/create.json"
    unknown_field = me.post(url, json={**BODY, "fields": ["id", "favouriteColour"]}, timeout=10).json()
    assert unknown_field["errors"][0] == {"code": "1006", "message": "Field 'favouriteColour' not found"}
    wide = me.post(
        url,
        json={
            "fields": ["id"],
            "filter": {"createdAt": {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-03-01T00:00:00Z"}},
        },
        timeout=10,
    ).json()
    assert wide["errors"][0]["code"] == "1003" and "filter.createdAt" in wide["errors"][0]["message"]
    not_json = me.post(url, data="{oops", headers={"Content-Type": "application/json"}, timeout=10).json()
    assert not_json["errors"][0]["code"] == "609"


def test_truncated_body_fault_drops_the_connection_mid_file(
    sandbox: SandboxServer, me: requests.Session
) -> None:
    job = _completed(sandbox, me)
    sandbox.control.inject_fault(f"GET {LEADS}/{{export_id}}/file.json", "truncated_body")
    url = f"{sandbox.base_url}{LEADS}/{job['exportId']}/file.json"
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        me.get(url, timeout=10)
    retry = me.get(url, timeout=10)  # the fault fired once; a retry gets the whole file
    assert len(retry.content) == job["fileSize"]


def test_queue_full_fault_is_answered_as_1029(sandbox: SandboxServer, me: requests.Session) -> None:
    sandbox.control.inject_fault(f"POST {LEADS}/create.json", "queue_full")
    answer = me.post(f"{sandbox.base_url}{LEADS}/create.json", json=BODY, timeout=10).json()
    assert answer["errors"][0] == {"code": "1029", "message": "Too many jobs in queue"}
