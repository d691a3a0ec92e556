"""Contract tests against real captured Marketo responses/exports (no network): envelopes, errors,
describe -> Arrow schema, CSV exports -> Arrow, paging rules, windows and tokens."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
import urllib3

from molequle_dagster.marketo import errors as E
from molequle_dagster.marketo import paging
from molequle_dagster.marketo.csvstream import ResumableDownload, read_batches
from molequle_dagster.marketo.schema import (
    ACTIVITY_COLUMN_TYPES,
    PROGRAM_MEMBER_COLUMN_TYPES,
    describe2_fields,
    lead_field_types,
    schema_for,
)
from molequle_dagster.marketo.timeutil import parse_marketo_datetime, split_windows
from molequle_dagster.marketo.transport import _parse_envelope
from molequle_dagster.marketo.writes import token_list
from molequle_dagster_tests.marketo.conftest import FIXTURES


def load(rel: str) -> dict:
    return json.loads((FIXTURES / rel).read_text())


# --- envelopes and errors ---------------------------------------------------------------------------
def test_real_error_envelopes_classify_by_retry_class() -> None:
    rate = load("envelope-errors/likelyreal_marketo-rest-python-fork__606_max_rate_limit.json")
    quota = load("envelope-errors/likelyreal_airbyte__1029_export_daily_quota.json")
    token = load("envelope-errors/doc_error-codes__response-level-errors__response.json")
    for body, expected in ((rate, E.RetryClass.THROTTLE), (quota, E.RetryClass.DAILY),
                           (token, E.RetryClass.AUTH)):
        envelope, problem = _parse_envelope(json.dumps(body).encode())
        assert envelope is not None, problem
        err = envelope["errors"][0]
        assert E.classify(err["code"], err["message"]) is expected
    q = quota["errors"][0]
    exc = E.error_for(q["code"], q["message"], endpoint="POST /bulk/v1/leads/export/create.json",
                      request_id=quota["requestId"], quota_zone=CHICAGO)
    assert isinstance(exc, E.ExportQuotaExceeded)
    assert "resets at" in str(exc) and quota["requestId"] in str(exc) and "1029" in str(exc)


def test_record_level_errors_do_not_fail_the_envelope() -> None:
    envelope, _ = _parse_envelope(
        json.dumps(load("envelope-errors/doc_error-codes__record-level__response.json")).encode())
    assert envelope is not None and envelope["success"] is True


@pytest.mark.parametrize("body, fragment", [
    (b"<html><body>502 Bad Gateway</body></html>", "HTML page"),
    (b'{"requestId":"a#b","success":true,"result":[{"id":1}', "not valid JSON"),
    (b'{"requestId":"a#b","success":false}', "success:false without any errors"),
    (b'[1, 2]', "no boolean 'success'"),
])
def test_non_marketo_bodies_are_malformed_never_empty(body: bytes, fragment: str) -> None:
    envelope, problem = _parse_envelope(body)
    assert envelope is None
    assert fragment in problem


CHICAGO = ZoneInfo("America/Chicago")


def test_daily_quota_resets_at_next_midnight_chicago() -> None:
    # 2026-07-01 04:30 UTC is 23:30 CDT on June 30 in Chicago: reset is 05:00 UTC (DST-aware zone).
    exc = E.DailyQuotaExceeded(endpoint="GET /rest/v1/leads.json", request_id="r#1",
                               now=datetime(2026, 7, 1, 4, 30, tzinfo=UTC), zone=CHICAGO)
    assert exc.resets_at == datetime(2026, 7, 1, 0, 0, tzinfo=ZoneInfo("America/Chicago"))
    assert exc.resets_at.astimezone(UTC) == datetime(2026, 7, 1, 5, 0, tzinfo=UTC)
    assert str(exc).startswith("daily quota exhausted, resets at 2026-07-01T00:00:00-05:00")
    assert "code=607" in str(exc) and "requestId=r#1" in str(exc)


def test_error_codes_table_every_code_has_a_class() -> None:
    with (FIXTURES / "envelope-errors/doc_error_codes_table.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    codes = {row["code"]: row["description"] for row in rows if row["level"] in ("response", "record")}
    assert {"601", "606", "607", "615", "1029", "1035"} <= set(codes)
    expected_types = {"601": E.MarketoAuthError, "606": E.MarketoThrottleError,
                      "607": E.DailyQuotaExceeded, "615": E.MarketoThrottleError,
                      "604": E.MarketoTransientError, "603": E.MarketoFatalError,
                      "1035": E.UnsupportedFilterError, "1029": E.BulkQueueFullError}
    for code, description in codes.items():
        message = description.split(" | ")[0]
        exc = E.error_for(code, message, endpoint="GET /x", request_id=None, quota_zone=CHICAGO)
        assert exc.code == code and f"code={code}" in str(exc)
        if code in expected_types:
            assert isinstance(exc, expected_types[code]), code


# --- schemas ------------------------------------------------------------------------------------------
def test_lead_schema_from_real_describe_responses() -> None:
    embulk = lead_field_types(load("leads/real_embulk__lead_describe.json")["result"])
    assert embulk["mKtestboolean"] == pa.bool_()
    assert embulk["mKtestcurrency"] == pa.float64()
    session = load("leads/real_grouparoo__session_leads_describe_2021-11.json")
    describe = next(i for i in session if i["path"].endswith("describe.json"))["responseBody"]["result"]
    types = lead_field_types(describe)
    schema = schema_for(["id", "email", "createdAt", "unsubscribed", "leadScore", "dateOfBirth"], types,
                        what="Describe Lead")
    assert schema.types == [pa.int64(), pa.string(), pa.timestamp("s", tz="UTC"), pa.bool_(), pa.int64(),
                            pa.date32()]
    with pytest.raises(ValueError, match="'noSuchField' not found in Describe Lead"):
        schema_for(["id", "noSuchField"], types, what="Describe Lead")


def test_program_member_describe_maps_booleans_and_custom_fields() -> None:
    describe = load("bulk-program-members/real_embulk__program_members_describe_result0.json")
    types = lead_field_types(describe2_fields([describe]))
    assert types["reachedSuccess"] == pa.bool_() and types["programMemberCustomFieldTest"] == pa.string()


# --- CSV exports --------------------------------------------------------------------------------------
class FakeRaw:
    """A urllib3-like body that can drop the connection after `drop_after` bytes."""

    def __init__(self, data: bytes, drop_after: int | None = None, chunk: int = 7) -> None:
        self._buf = io.BytesIO(data)
        self._left = drop_after
        self._chunk = chunk

    def read(self, n: int) -> bytes:
        n = min(n, self._chunk)
        if self._left is not None:
            if self._left <= 0:
                raise urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead")
            n = min(n, self._left)
            self._left -= n
        return self._buf.read(n)


class FakeResponse:
    def __init__(self, data: bytes, status: int = 200, start: int = 0, drop_after: int | None = None):
        self.status_code = status
        self.headers = {"Content-Range": f"bytes {start}-{len(data) + start - 1}/*"} if status == 206 else {}
        self.raw = FakeRaw(data, drop_after)

    def close(self) -> None:
        pass


def download_of(data: bytes, *, drops: list[int] | None = None, checksum: str | None = "auto",
                size: int | None = -1) -> ResumableDownload:
    """Serve `data`; the n-th opening drops after drops[n] bytes; resumes honour Range (206)."""
    drops = list(drops or [])

    def open_at(offset: int) -> FakeResponse:
        drop = drops.pop(0) if drops else None
        return FakeResponse(data[offset:], 206 if offset else 200, offset, drop)

    digest = "sha256:" + hashlib.sha256(data).hexdigest() if checksum == "auto" else checksum
    return ResumableDownload(open_at, expected_size=len(data) if size == -1 else size,
                             expected_checksum=digest, chunk_size=64)


def parse(data: bytes, types: dict[str, pa.DataType] | None = None, **kw: object) -> pa.Table:
    batches = list(read_batches(download_of(data, **kw), types or {}, block_size=4096))
    return pa.Table.from_batches(batches) if batches else pa.table({})


@pytest.mark.parametrize("rel", [
    "bulk-leads/real_embulk__lead_extract1.csv",
    "bulk-leads/real_embulk__leads_extract2.csv",
    "bulk-activities/real_embulk__activity_extract1.csv",
    "bulk-activities/real_embulk__activity_extract2.csv",
    "bulk-program-members/real_embulk__program_members_extract.csv",
    "bulk-leads/doc_bulk-lead-extract__retrieving-your-data__file__csv-export-file.csv",
    "bulk-activities/doc_bulk-activity-extract__retrieving-your-data__file__csv-export-file.csv",
])
def test_real_exports_parse_to_the_same_cells_as_the_csv_module(rel: str) -> None:
    data = (FIXTURES / rel).read_bytes()
    expected = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    table = parse(data, drops=[len(data) // 3])  # and survive a dropped connection on the way
    assert table.num_rows == len(expected)
    for column in table.column_names:
        want = [None if row[column] in ("null", "") else row[column] for row in expected]
        assert table.column(column).to_pylist() == want


def test_activity_export_uses_fixed_types_and_keeps_json_attributes() -> None:
    data = (FIXTURES / "bulk-activities/real_embulk__activity_extract1.csv").read_bytes()
    table = parse(data, dict(ACTIVITY_COLUMN_TYPES))
    assert table.schema.field("activityDate").type == pa.timestamp("s", tz="UTC")
    assert table.schema.field("leadId").type == pa.int64()
    first = table.slice(0, 1).to_pylist()[0]
    assert first["campaignId"] is None and first["primaryAttributeValue"] is None
    assert json.loads(first["attributes"])["Source Type"] == "List import"


def test_program_member_export_reads_zero_one_booleans() -> None:
    data = (FIXTURES / "bulk-program-members/real_embulk__program_members_extract.csv").read_bytes()
    table = parse(data, dict(PROGRAM_MEMBER_COLUMN_TYPES))
    assert table.schema.field("isExhausted").type == pa.bool_()
    assert set(table.column("acquiredBy").to_pylist()) <= {True, False, None}
    assert table.column("leadId").type == pa.int64()


def test_nasty_cells_quotes_newlines_cr_nul_and_null_literals() -> None:
    data = (
        b'id,note,flag\r\n'
        b'1,"say ""hi""\r\nsecond line",true\r\n'
        b'2,"nul\x00 inside\rcr",false\r\n'
        b'3,null,null\r\n'
        b'4,"null",\r\n'
        b'5,"comma, inside",1\n'
    )
    table = parse(data, {"id": pa.int64(), "flag": pa.bool_()})
    assert table.to_pylist() == [
        {"id": 1, "note": 'say "hi"\r\nsecond line', "flag": True},
        {"id": 2, "note": "nul inside\rcr", "flag": False},
        {"id": 3, "note": None, "flag": None},
        {"id": 4, "note": "null", "flag": None},  # a quoted "null" is text, not a null
        {"id": 5, "note": "comma, inside", "flag": True},
    ]


def test_nul_bytes_split_across_every_chunk_boundary() -> None:
    data = b"a,b\n" + b"".join(b'%d,"x\x00y\x00"\n' % i for i in range(200))
    table = parse(data, {"a": pa.int64()})
    assert table.num_rows == 200 and set(table.column("b").to_pylist()) == {"xy"}


def test_empty_and_header_only_exports_yield_no_rows() -> None:
    assert parse(b"").num_rows == 0
    assert parse(b"id,email\n").num_rows == 0


def test_many_drops_resume_with_range_and_verify_checksum() -> None:
    data = (FIXTURES / "bulk-leads/real_embulk__lead_extract1.csv").read_bytes()
    source = download_of(data, drops=[100, 1, 500, 0, 3000])
    batches = list(read_batches(source, {}, block_size=4096))
    assert sum(b.num_rows for b in batches) == 10
    assert source.resumes == 5 and source.offset == len(data)


def test_checksum_mismatch_raises_at_the_end() -> None:
    data = b"id\n1\n2\n"
    with pytest.raises(E.ChecksumMismatchError, match="sha256"):
        list(read_batches(download_of(data, checksum="sha256:" + "0" * 64), {}))


def test_short_file_without_error_resumes_then_fails_on_size() -> None:
    data = b"id\n1\n2\n"
    with pytest.raises(E.ChecksumMismatchError, match="fileSize"):
        list(read_batches(download_of(data, size=len(data) - 1, checksum=None), {}))


def test_download_that_never_progresses_gives_up() -> None:
    data = b"id\n" + b"1\n" * 100
    source = download_of(data, drops=[10] + [0] * 10)
    with pytest.raises(E.MarketoTransientError, match="kept dropping at byte 10"):
        list(read_batches(source, {}))


def test_malformed_quoting_is_a_clear_error() -> None:
    data = (FIXTURES / "bulk-leads/SYNTHETIC_embulk__lead_extract_with_quote_in_quote_field.csv").read_bytes()
    data += b'"a","b","c"\n'  # a row with too many cells makes the damage visible to the parser
    with pytest.raises(E.MalformedResponseError, match="export CSV could not be parsed"):
        parse(data)


# --- paging ---------------------------------------------------------------------------------------------
def pages_from(envelopes: list[dict]) -> paging.Fetch:
    calls = iter(envelopes)
    return lambda params: next(calls)


def test_token_paging_stops_when_no_token_and_rejects_repeats() -> None:
    fetch = pages_from([{"result": [1, 2], "nextPageToken": "A"}, {"result": [3]}])
    assert list(paging.token_pages(fetch, {})) == [[1, 2], [3]]
    fetch = pages_from([{"result": [1], "nextPageToken": "A"}, {"result": [2], "nextPageToken": "A"}])
    with pytest.raises(E.PagingError, match="repeated"):
        list(paging.token_pages(fetch, {}))


def test_activity_paging_skips_empty_pages_and_stops_after_until() -> None:
    act = lambda day: {"activityDate": f"2024-01-{day:02d}T00:00:00Z", "day": day}  # noqa: E731
    fetch = pages_from([
        {"moreResult": True, "nextPageToken": "a"},  # no result member at all
        {"result": [], "moreResult": True, "nextPageToken": "b"},
        {"result": [act(1), act(2)], "moreResult": True, "nextPageToken": "c"},
        {"result": [act(3), act(9)], "moreResult": True, "nextPageToken": "d"},
    ])
    until = datetime(2024, 1, 5, tzinfo=UTC)
    days = [a["day"] for page in paging.activity_pages(fetch, {}, until=until) for a in page]
    assert days == [1, 2, 3]


def test_activity_paging_raises_when_empty_pages_exceed_cap() -> None:
    fetch = pages_from([{"result": [], "moreResult": True, "nextPageToken": "t"}] * 10)
    with pytest.raises(E.PagingError, match="empty pages in a row"):
        list(paging.activity_pages(fetch, {}, max_empty_pages=3))


def test_asset_paging_ends_on_no_assets_warning_or_short_page() -> None:
    fetch = pages_from([{"result": [1, 2]}, {"warnings": ["No assets found for the given search criteria."]}])
    assert list(paging.asset_pages(fetch, {}, max_return=2)) == [[1, 2]]
    fetch = pages_from([{"result": [1, 2]}, {"result": [3]}])
    assert list(paging.asset_pages(fetch, {}, max_return=2)) == [[1, 2], [3]]


# --- time windows and tokens ------------------------------------------------------------------------------
def test_windows_cover_the_range_without_gaps_or_overlap() -> None:
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 4, 15, 12, tzinfo=UTC)
    windows = split_windows(start, end, 31)
    assert windows[0][0] == start and windows[-1][1] == end
    for (_, a_end), (b_start, _) in itertools.pairwise(windows):
        assert (b_start - a_end).total_seconds() == 1
    assert all((b - a).days < 31 for a, b in windows)
    with pytest.raises(ValueError, match=r"days expected 1\.\.31"):
        split_windows(start, end, 32)


def test_every_marketo_datetime_shape_parses_to_the_same_instant() -> None:
    expected = datetime(2015, 5, 21, 22, 45, 13, tzinfo=UTC)
    for text in ("2015-05-21T22:45:13Z", "2015-05-21T22:45:13Z+0000", "2015-05-21T22:45:13+0000",
                 "2015-05-21T14:45:13-08:00"):
        assert parse_marketo_datetime(text) == expected


def test_tokens_are_sent_in_my_syntax() -> None:
    assert token_list({"Message": "hi", "my.Other": 2, "{{my.Full}}": None}) == [
        {"name": "{{my.Message}}", "value": "hi"}, {"name": "{{my.Other}}", "value": "2"},
        {"name": "{{my.Full}}", "value": ""}]
    with pytest.raises(ValueError, match="tokens: names must be non-empty"):
        token_list({"": "x"})
