"""The Bulk Extract job engine on the virtual clock: state machine, shared queue, quota, faults, expiry."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from molequle_dagster.sandbox.bulk import BulkExtractService
from molequle_dagster.sandbox.envelope import MarketoApiError
from molequle_dagster_tests.sandbox.bulk_fixtures import make_context

ME, OTHER = "me@sandbox", "other@sandbox"
LEADS_JAN = {
    "fields": ["id", "email"],
    "filter": {"createdAt": {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-31T00:00:00Z"}},
}


class SettledService(BulkExtractService):
    """The engine as a frozen-clock test sees it after `wait_for_renders()`: every call waits until no file
    is being written first (renders run off the request path; the timeline does not depend on them)."""


def _settled(method: Callable[..., Any]) -> Callable[..., Any]:
    def call(self: BulkExtractService, *args: Any) -> Any:
        assert self.wait_for_renders()
        return method(self, *args)

    return call


for _name in ("status", "enqueue", "cancel", "jobs_truth", "file_path", "list_jobs", "exported_bytes_today"):
    setattr(SettledService, _name, _settled(getattr(BulkExtractService, _name)))


def _service(profile: str = "fast", **bulk: object) -> BulkExtractService:
    return SettledService(make_context(profile, **bulk))


def _error(call, *args) -> MarketoApiError:  # type: ignore[no-untyped-def]
    with pytest.raises(MarketoApiError) as caught:
        call(*args)
    return caught.value


def _started(
    service: BulkExtractService, user: str = ME, body: dict | None = None, fault: str | None = None
) -> str:
    export_id = service.create("leads", user, body or LEADS_JAN)["exportId"]
    service.enqueue("leads", export_id, user, fault)
    return export_id


def test_fast_profile_runs_create_enqueue_complete_and_serves_the_file() -> None:
    service = _service()
    created = service.create("leads", ME, LEADS_JAN)
    assert created["status"] == "Created" and created["format"] == "CSV"
    assert "queuedAt" not in created
    queued = service.enqueue("leads", created["exportId"], ME)
    assert queued["status"] == "Queued" and "queuedAt" in queued
    done = service.status("leads", created["exportId"], ME)
    assert done["status"] == "Completed"
    assert done["numberOfRecords"] == 2
    path, size, checksum = service.file_path("leads", created["exportId"], ME)  # type: ignore[misc]
    data = path.read_bytes()
    assert data == b"id,email\n1,ann@acme.com\n2,bob@x.org\n"
    assert size == done["fileSize"] == len(data)
    assert checksum == done["fileChecksum"] == "sha256:" + hashlib.sha256(data).hexdigest()


def test_marketo_timing_overhead_rows_per_second_and_status_refresh_grid() -> None:
    service = _service("marketo", job_overhead_s=100.0, rows_per_s=1.0, status_refresh_s=60.0)
    clock = service._ctx.clock
    export_id = _started(service)  # 2 rows: processing takes 100 + 2 s
    assert service.status("leads", export_id, ME)["status"] == "Queued"
    clock.advance(59)
    assert service.status("leads", export_id, ME)["status"] == "Queued"  # the started job is not visible yet
    clock.advance(1)
    seen = service.status("leads", export_id, ME)
    assert seen["status"] == "Processing" and seen["startedAt"] == seen["queuedAt"]
    assert service.file_path("leads", export_id, ME) is None
    clock.advance(60)  # t = 120 s: finished at 102 s, visible at the 120 s tick
    done = service.status("leads", export_id, ME)
    assert done["status"] == "Completed"
    started = datetime.fromisoformat(done["startedAt"])
    assert datetime.fromisoformat(done["finishedAt"]) - started == timedelta(seconds=102)


def test_two_processing_slots_shared_by_all_users_and_types_fifo() -> None:
    service = _service("marketo", job_overhead_s=100.0, rows_per_s=0.0, status_refresh_s=0.0)
    clock = service._ctx.clock
    first = _started(service, OTHER)
    activities = service.create(
        "activities",
        ME,
        {"filter": {"createdAt": {"startAt": "2026-02-01T00:00:00Z", "endAt": "2026-02-10T00:00:00Z"}}},
    )["exportId"]
    service.enqueue("activities", activities, ME)
    clock.advance(10)
    third = _started(service)
    fourth = _started(service)
    states = {j["exportId"]: j["status"] for j in service.jobs_truth()}
    assert [states[first], states[activities], states[third], states[fourth]] == [
        "Processing",
        "Processing",
        "Queued",
        "Queued",
    ]
    clock.advance(90)  # the first two finish at 100 s; the queued ones start then, in order
    truth = {j["exportId"]: j for j in service.jobs_truth()}
    assert truth[third]["status"] == truth[fourth]["status"] == "Processing"
    assert truth[third]["startedAt"] == truth[first]["finishedAt"]
    clock.advance(100)
    assert all(j["status"] == "Completed" for j in service.jobs_truth())


def test_queue_of_ten_counts_every_users_jobs_and_answers_1029() -> None:
    service = _service("marketo", job_overhead_s=1000.0, rows_per_s=0.0, status_refresh_s=0.0)
    for i in range(10):
        _started(service, OTHER if i % 2 else ME)
    blocked = service.create("leads", ME, LEADS_JAN)["exportId"]
    error = _error(service.enqueue, "leads", blocked, ME)
    assert (error.code, error.message) == ("1029", "Too many jobs in queue")
    assert [j["status"] for j in service.list_jobs("leads", ME, None, 300, None)["result"]].count(
        "Created"
    ) == 1
    service._ctx.clock.advance(1000)  # two finish, two slots free in the queue
    assert service.enqueue("leads", blocked, ME)["status"] == "Queued"


def test_enqueue_twice_is_job_already_queued_and_finished_jobs_follow_config() -> None:
    service = _service("marketo", job_overhead_s=50.0, rows_per_s=0.0, status_refresh_s=0.0)
    export_id = _started(service)
    error = _error(service.enqueue, "leads", export_id, ME)
    assert (error.code, error.message) == ("1029", "Job already queued")
    service._ctx.clock.advance(50)
    assert _error(service.enqueue, "leads", export_id, ME).code == "1003"
    assert _error(service.cancel, "leads", export_id, ME).code == "1003"
    service._ctx.config.bulk.enqueue_finished_job = "noop"
    service._ctx.config.bulk.cancel_finished_job = "noop"
    assert service.enqueue("leads", export_id, ME)["status"] == "Completed"
    assert service.cancel("leads", export_id, ME)["status"] == "Completed"


@pytest.mark.parametrize("spelling", ["Cancelled", "Canceled"])
def test_cancel_from_created_queued_and_processing_frees_the_slot(spelling: str) -> None:
    service = _service(
        "marketo", job_overhead_s=100.0, rows_per_s=0.0, status_refresh_s=0.0, cancelled_spelling=spelling
    )
    created = service.create("leads", ME, LEADS_JAN)["exportId"]
    processing = [_started(service), _started(service)]
    queued = _started(service)
    assert service.cancel("leads", created, ME)["status"] == spelling
    assert service.cancel("leads", processing[0], ME)["status"] == spelling
    assert service.status("leads", queued, ME)["status"] == "Processing"  # took the freed slot at once
    assert service.file_path("leads", processing[0], ME) is None
    assert service.list_jobs("leads", ME, ["canceled"], 300, None)["result"][0]["exportId"] == created
    assert len(service.list_jobs("leads", ME, ["Cancelled"], 300, None)["result"]) == 2


def test_other_users_jobs_are_invisible_but_occupy_slots() -> None:
    service = _service("marketo", job_overhead_s=100.0, rows_per_s=0.0, status_refresh_s=0.0)
    theirs = [_started(service, OTHER), _started(service, OTHER)]
    mine = _started(service)
    assert service.status("leads", mine, ME)["status"] == "Queued"
    for call in (service.status, service.cancel, service.enqueue):
        assert "not found" in _error(call, "leads", theirs[0], ME).message
    assert service.file_path("leads", theirs[0], ME) is None
    assert [j["exportId"] for j in service.list_jobs("leads", ME, None, 300, None)["result"]] == [mine]
    assert _error(service.status, "activities", mine, ME).code == "1003"  # wrong entity path


def test_daily_export_quota_blocks_create_and_enqueue_until_midnight_chicago() -> None:
    service = _service(daily_export_bytes=40)
    first = _started(service)  # 36 bytes: under 40, allowed
    assert service.exported_bytes_today() == service.status("leads", first, ME)["fileSize"] == 36
    second = _started(service)  # starts under the limit; pushes usage over
    assert service.status("leads", second, ME)["status"] == "Completed"
    error = _error(service.create, "leads", ME, LEADS_JAN)
    assert (error.code, error.message) == ("1029", "Export daily quota 3.8147e-05MB exceeded.")
    clock = service._ctx.clock  # 15:00 UTC is 10:00 CDT (DST began 8 March): midnight is 14 h away
    clock.advance(13 * 3600 + 59 * 60)
    assert _error(service.create, "leads", ME, LEADS_JAN).code == "1029"
    clock.advance(60)
    assert service.exported_bytes_today() == 0
    assert service.create("leads", ME, LEADS_JAN)["status"] == "Created"


def test_quota_message_renders_the_configured_size() -> None:
    service = _service()
    error = _error(service.create, "leads", ME, LEADS_JAN, "export_quota")
    assert (error.code, error.message) == ("1029", "Export daily quota 500MB exceeded.")


def test_faults_queue_full_job_failed_and_job_stuck() -> None:
    service = _service()
    assert _error(service.create, "leads", ME, LEADS_JAN, "queue_full").message == "Too many jobs in queue"
    failed = _started(service, fault="job_failed")
    status = service.status("leads", failed, ME)
    assert status["status"] == "Failed" and status["errorMsg"] and "fileSize" not in status
    assert service.file_path("leads", failed, ME) is None
    assert service.exported_bytes_today() == 0
    stuck = _started(service, fault="job_stuck")
    behind = _started(service)
    service._ctx.clock.advance(86400)
    assert service.status("leads", stuck, ME)["status"] == "Queued"
    assert service.status("leads", behind, ME)["status"] == "Completed"


def test_files_expire_after_retention_but_status_stays() -> None:
    service = _service(file_retention_days=7.0)
    export_id = _started(service)
    path = service.file_path("leads", export_id, ME)[0]  # type: ignore[index]
    service._ctx.clock.advance(7 * 86400 - 1)
    assert service.file_path("leads", export_id, ME) is not None
    service._ctx.clock.advance(1)
    assert service.file_path("leads", export_id, ME) is None
    assert not path.exists()
    assert service.status("leads", export_id, ME)["status"] == "Completed"


def test_list_pages_with_next_page_token_and_drops_jobs_older_than_seven_days() -> None:
    service = _service()
    old = service.create("leads", ME, LEADS_JAN)["exportId"]
    service._ctx.clock.advance(8 * 86400)
    ids = [service.create("leads", ME, LEADS_JAN)["exportId"] for _ in range(5)]
    page1 = service.list_jobs("leads", ME, None, 2, None)
    page2 = service.list_jobs("leads", ME, None, 2, page1["nextPageToken"])
    page3 = service.list_jobs("leads", ME, None, 2, page2["nextPageToken"])
    assert [j["exportId"] for p in (page1, page2, page3) for j in p["result"]] == ids
    assert "nextPageToken" not in page3
    assert old not in [j["exportId"] for j in page1["result"]]
    assert service.status("leads", old, ME)["status"] == "Created"
    assert _error(service.list_jobs, "leads", ME, None, 301, None).code == "1003"
    assert _error(service.list_jobs, "leads", ME, ["Done"], 300, None).code == "1003"
    assert _error(service.list_jobs, "leads", ME, None, 10, "bogus").code == "1003"


def test_membership_is_evaluated_when_processing_starts() -> None:
    service = _service("marketo", job_overhead_s=100.0, rows_per_s=0.0, status_refresh_s=0.0)
    body = {"fields": ["id"], "filter": {"staticListName": "VIPs"}}
    blockers = [_started(service, OTHER), _started(service, OTHER)]
    export_id = _started(service, body=body)
    service._ctx.state.static_lists[0]["lead_ids"] = [1, 2, 3]  # changes while the job waits
    service._ctx.clock.advance(200)
    assert all(service.status("leads", b, OTHER)["status"] == "Completed" for b in blockers)
    path = service.file_path("leads", export_id, ME)[0]  # type: ignore[index]
    assert path.read_text() == "id\n1\n2\n3\n"


def test_lead_filters_updated_at_uses_the_true_modification_time_and_smart_lists() -> None:
    service = _service()
    body = {
        "fields": ["id", "updatedAt"],
        "format": "TSV",
        "columnHeaderNames": {"id": "Marketo Id"},
        "filter": {"updatedAt": {"startAt": "2026-02-01T00:00:00Z", "endAt": "2026-02-28T00:00:00Z"}},
    }
    export_id = _started(service, body=body)
    text = service.file_path("leads", export_id, ME)[0].read_text()  # type: ignore[index]
    assert (
        text == "Marketo Id\tupdatedAt\n1\t2026-01-05T10:00:00Z\n3\t2026-02-20T12:30:45Z\n"
        "4\t2026-02-20T12:30:45Z\n"
    )
    smart = _started(service, body={"fields": ["id"], "filter": {"smartListId": 88}})
    assert service.file_path("leads", smart, ME)[0].read_text() == "id\n1\n3\n4\n5\n"  # type: ignore[index]


def test_activities_default_columns_type_filter_retention_and_action_result() -> None:
    service = _service()
    window = {"startAt": "2026-02-01T00:00:00Z", "endAt": "2026-02-10T00:00:00Z"}
    export_id = service.create(
        "activities", ME, {"filter": {"createdAt": window, "activityTypeIds": [104]}, "fields": None}
    )["exportId"]
    service.enqueue("activities", export_id, ME)
    lines = service.file_path("activities", export_id, ME)[0].read_text().splitlines()  # type: ignore[index]
    assert lines[0] == (
        "marketoGUID,leadId,activityDate,activityTypeId,campaignId,primaryAttributeValueId,"
        "primaryAttributeValue,attributes"
    )
    assert [line.split(",")[0] for line in lines[1:]] == ["1001", "1004", "1007"]
    picked = service.create(
        "activities",
        ME,
        {
            "fields": ["marketoGUID", "actionResult"],
            "filter": {
                "createdAt": window,
                "activityTypeIds": [104],
                "primaryAttributeValues": ["Program 1"],
            },
        },
    )["exportId"]
    service.enqueue("activities", picked, ME)
    text = service.file_path("activities", picked, ME)[0].read_text()  # type: ignore[index]
    assert text == "marketoGUID,actionResult\n1001,succeeded\n1004,succeeded\n1007,succeeded\n"


def test_activity_retention_hides_old_high_volume_activities() -> None:
    service = _service()
    state = service._ctx.state
    old = datetime(2025, 6, 1, tzinfo=UTC)  # > 90 days before NOW: Send Email (6) is gone, Fill Out Form kept
    state.activities = pa.concat_tables(
        [
            state.activities.slice(0, 0),
            pa.table(
                {
                    "marketoGUID": pa.array([1, 2], pa.int64()),
                    "leadId": pa.array([1, 1], pa.int64()),
                    "activityDate": pa.array([old, old], pa.timestamp("s", tz="UTC")),
                    "activityTypeId": pa.array([6, 2], pa.int32()),
                    "campaignId": pa.array([None, None], pa.int64()),
                    "primaryAttributeValueId": pa.array([1, 1], pa.int64()),
                    "primaryAttributeValue": pa.array(["a", "b"]),
                    "attributeSeed": pa.array([0, 0], pa.int64()),
                    "attributesJson": pa.array(["{}", "{}"]),
                },
                schema=state.activities.schema,
            ),
        ]
    )
    body = {
        "fields": ["marketoGUID"],
        "filter": {"createdAt": {"startAt": "2025-05-20T00:00:00Z", "endAt": "2025-06-10T00:00:00Z"}},
    }
    export_id = service.create("activities", ME, body)["exportId"]
    service.enqueue("activities", export_id, ME)
    assert service.file_path("activities", export_id, ME)[0].read_text() == "marketoGUID\n2\n"  # type: ignore[index]


@pytest.mark.parametrize(("style", "expected"), [("true_false", "false,true"), ("zero_one", "0,1")])
def test_program_members_with_program_ids_booleans_and_status_filter(style: str, expected: str) -> None:
    service = _service(program_member_booleans=style)
    body = {
        "fields": ["leadId", "email", "program", "reachedSuccess", "acquiredBy", "statusName"],
        "filter": {"programIds": [1001, 1002], "statusNames": ["Attended", "Member"]},
    }
    export_id = service.create("program/members", ME, body)["exportId"]
    service.enqueue("program/members", export_id, ME)
    lines = service.file_path("program/members", export_id, ME)[0].read_text().splitlines()  # type: ignore
    assert lines[0] == "programId,leadId,email,program,reachedSuccess,acquiredBy,statusName"
    assert (
        lines[1]
        == f'1001,2,bob@x.org,"Webinar, March",{expected.split(",")[1]},{expected.split(",")[0]},Attended'
    )
    assert len(lines) == 4  # lead 99 was deleted: its membership is not exported
