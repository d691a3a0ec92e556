"""Fuzz: whatever a Marketo (or a proxy in front of it) answers, over real HTTP from a tiny local server,
the client returns the records it was sent or raises one of its typed errors, never another exception,
and never drops or invents a record silently. Export files with odd cells (NUL, CR, quotes, embedded
newlines, non-UTF-8 bytes, 1 MB cells) give back exactly their rows, or a typed error."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from molequle_dagster.coordination import SqliteStore
from molequle_dagster.marketo import errors as E
from molequle_dagster.marketo.auth import TokenCache
from molequle_dagster.marketo.bulk import BulkEngine, BulkExportResult, ExportRequest
from molequle_dagster.marketo.client import MarketoClient
from molequle_dagster.marketo.config import BulkConfig, MarketoConfig, PacingConfig, RetryConfig
from molequle_dagster.marketo.csvstream import ResumableDownload, read_batches
from molequle_dagster.marketo.reads import MarketoReads
from molequle_dagster.marketo.stats import CallStats
from molequle_dagster.marketo.transport import Transport
from molequle_dagster_tests.marketo.local_http import LocalHttp, send

SECRET = "fuzz-secret-value"
FILE = "/bulk/v1/leads/export/e/file.json"


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class Scripted(LocalHttp):
    """Answers the identity endpoint properly and every other request with `answer`."""

    def __init__(self) -> None:
        self.answer = Answer()
        super().__init__(self._handle)

    def _handle(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        if h.path.startswith("/identity/oauth/token"):
            token = json.dumps({"access_token": "tok:fz", "expires_in": 3599}).encode()
            send(h, token)
            return
        answer = self.answer
        send(h, answer.body, status=answer.status, ctype=answer.content_type, headers=answer.headers)


@pytest.fixture(scope="module")
def scripted() -> Iterator[Scripted]:
    server = Scripted()
    yield server
    server.close()


def transport(server: Scripted) -> Transport:
    return Transport(server.base_url, "cid", SECRET, timeout_s=5.0, stats=CallStats(), pacer=None,
                     retry=RetryConfig(max_attempts=2, throttle_attempts=1, auth_attempts=1),
                     sleep=lambda s: None, tokens=TokenCache())


# --- JSON answers ---------------------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
record_keys = st.sampled_from(["id", "name", "updatedAt", "extra"])
records = st.lists(st.dictionaries(record_keys, scalars, min_size=1), max_size=5)


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    envelope: dict[str, Any] = {}
    if draw(st.booleans()):
        envelope["requestId"] = draw(st.text(max_size=12) | st.none())
    envelope["success"] = draw(st.sampled_from([True, False, "true", None, 1]))
    if draw(st.booleans()):
        envelope["result"] = draw(records | json_values)
    if draw(st.booleans()):
        envelope["errors"] = draw(st.lists(st.fixed_dictionaries(
            {}, optional={"code": st.sampled_from(["601", "602", "604", "606", "607", "610", "1003", "1029"])
                          | scalars, "message": scalars}) | scalars, max_size=2))
    if draw(st.booleans()):
        envelope["nextPageToken"] = draw(st.text(max_size=8) | json_values)
    if draw(st.booleans()):
        envelope["moreResult"] = draw(scalars)
    if draw(st.booleans()):
        envelope["warnings"] = draw(json_values)
    unknown = st.dictionaries(st.sampled_from(["surprise", "meta", "x"]), json_values, max_size=2)
    envelope.update(draw(unknown))
    return envelope


@st.composite
def answers(draw: st.DrawFn) -> tuple[Answer, Any]:
    """(what the server sends, the envelope it encodes or None)."""
    kind = draw(st.sampled_from(["envelope", "envelope", "envelope", "truncated", "html", "text", "status",
                                 "gzip-garbage", "json-scalar"]))
    if kind == "envelope":
        envelope = draw(envelopes())
        return Answer(body=json.dumps(envelope).encode()), envelope
    if kind == "truncated":
        body = json.dumps(draw(envelopes())).encode()
        return Answer(body=body[: draw(st.integers(0, max(len(body) - 1, 0)))]), None
    if kind == "html":
        page = b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>"
        return Answer(body=page, content_type="text/html"), None
    if kind == "text":
        return Answer(body=draw(st.binary(max_size=64)), content_type="text/plain"), None
    if kind == "status":
        return Answer(status=draw(st.sampled_from([301, 400, 403, 404, 413, 414, 429, 500, 502, 503])),
                      body=draw(st.binary(max_size=32))), None
    if kind == "gzip-garbage":
        garbage = draw(st.binary(min_size=1, max_size=32))
        return Answer(body=garbage, headers={"Content-Encoding": "gzip"}), None
    return Answer(body=json.dumps(draw(json_values)).encode()), None


def _is_clean_page(envelope: Any) -> bool:
    return (isinstance(envelope, dict) and envelope.get("success") is True
            and isinstance(envelope.get("result", []), list)
            and all(isinstance(r, dict) for r in envelope.get("result", []) or [])
            and not envelope.get("nextPageToken"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sent=answers(), call=st.sampled_from(["leads", "usage", "describe", "programs", "program"]))
def test_any_answer_gives_the_records_or_a_typed_error(scripted: Scripted, sent: tuple[Answer, Any],
                                                       call: str) -> None:
    answer, envelope = sent
    scripted.answer = answer
    t = transport(scripted)
    reads = MarketoReads(t)
    try:
        if call == "leads":
            got: Any = list(reads.leads_by_filter("id", [1, 2], ["id", "name"]))
        elif call == "usage":
            got = reads.usage()
        elif call == "describe":
            got = reads.describe_leads()
        elif call == "programs":
            got = list(reads.programs())
        else:
            one = reads.program(7)
            got = [] if one is None else [one]
    except E.MarketoError as error:
        assert SECRET not in str(error) and str(error)
        return
    finally:
        t.close()
    # Success: the records are exactly what was sent, as dicts (nothing lost, nothing made up).
    assert isinstance(envelope, dict) and envelope.get("success") is True, envelope
    assert all(isinstance(r, dict) for r in got)
    sent_records = envelope.get("result") or []
    if call == "program":
        sent_records = sent_records[:1]
    if _is_clean_page(envelope) and call != "programs":
        assert got == sent_records
    else:
        assert all(r in sent_records for r in got)


# --- export files ---------------------------------------------------------------------------------------

cell_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30) | st.sampled_from(
    ["null", "", "NULL", '"', '""', "\r", "\n", "\r\n", "a,b", "\x00", "x\x00y", "\u2028", "null\n"])


def render(cell: str, quote_all: bool = False) -> tuple[bytes, Any]:
    """A cell as Marketo writes it (quoted only when needed, or by a writer that quotes every cell) and
    what a reader must get back: a quoted cell is its text, even "null" (issue 16 item 7)."""
    stripped = cell.replace("\x00", "")  # NUL bytes are dropped (they break every CSV parser)
    if quote_all or any(c in cell for c in ',"\r\n'):
        return b'"' + cell.replace('"', '""').encode() + b'"', stripped
    return cell.encode(), None if stripped in ("", "null") else stripped


@st.composite
def export_files(draw: st.DrawFn) -> tuple[bytes, list[list[Any]] | None]:
    """(file bytes, expected rows) — expected None when the file is not valid UTF-8 text."""
    columns = draw(st.integers(1, 4))
    rows = draw(st.lists(st.lists(cell_text, min_size=columns, max_size=columns), max_size=6))
    if rows and draw(st.integers(0, 9)) == 0:  # now and then one cell of about a megabyte
        rows[0][0] = "y" * 1_000_000
    ending = draw(st.sampled_from([b"\n", b"\r\n"]))
    quote_all = draw(st.integers(0, 3)) == 0
    lines = [b",".join(f"c{i}".encode() for i in range(columns))]
    expected = []
    for row in rows:
        cells = [render(cell, quote_all) for cell in row]
        lines.append(b",".join(raw for raw, _ in cells))
        expected.append([value for _, value in cells])
    body = ending.join(lines) + ending
    if draw(st.integers(0, 7)) == 0:  # a byte that is not UTF-8
        at = draw(st.integers(0, len(body) - 1))
        return body[:at] + b"\xff" + body[at:], None
    return body, expected


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(file=export_files())
def test_export_files_give_back_their_rows_or_a_typed_error(scripted: Scripted,
                                                            file: tuple[bytes, list | None]) -> None:
    body, expected = file
    scripted.answer = Answer(body=body, content_type="text/csv")
    t = transport(scripted)
    source = ResumableDownload(lambda offset: t.open_download(FILE, start=offset),
                               expected_size=len(body),
                               expected_checksum="sha256:" + hashlib.sha256(body).hexdigest())
    try:
        rows = [list(r.values()) for b in read_batches(source, {}, block_size=1 << 16) for r in b.to_pylist()]
    except E.MarketoError:
        assert expected is None or any(len(str(c)) > 60_000 for row in expected for c in row), \
            "a valid file must not fail"
        return
    finally:
        source.close()
        t.close()
    assert expected is not None, "a file with a non-UTF-8 byte must not pass silently"
    assert rows == expected


def exported(scripted: Scripted, body: bytes, records: int, tmp_path: Path) -> BulkExportResult:
    """A completed export served by the scripted server, as the bulk engine hands it out."""
    scripted.answer = Answer(body=body, content_type="text/csv")
    engine = BulkEngine(transport(scripted), config=BulkConfig(), store=SqliteStore(tmp_path / "store"),
                        stats=CallStats(), sleep=lambda s: None, instance="i", api_user="u",
                        zone=ZoneInfo("America/Chicago"))
    request = ExportRequest("leads", ["id", "notes"], {"staticListId": 1}, {"id": pa.int64()})
    return BulkExportResult("e", records, len(body), "sha256:" + hashlib.sha256(body).hexdigest(), False,
                            engine, request)


def test_a_row_larger_than_the_parse_block_is_read_again_with_a_larger_block(scripted: Scripted,
                                                                            tmp_path: Path) -> None:
    """A 3 MB cell does not fit the 1 MiB parse block: the file is read again with a larger block and
    the rows already handed out are skipped, so every row comes exactly once."""
    body = b'id,notes\n0,first\n' + b"".join(b"%d,row\n" % i for i in range(1, 30_000))
    body += b'30000,"' + b"z" * 3_000_000 + b'"\n30001,short\n'
    rows = [r["id"] for b in exported(scripted, body, 30_002, tmp_path).batches() for r in b.to_pylist()]
    assert rows == list(range(30_002))
    source_rows = read_batches(ResumableDownload(
        lambda offset: transport(scripted).open_download(FILE, start=offset),
        expected_size=len(body), expected_checksum=None), {"id": pa.int64()}, block_size=1 << 20)
    with pytest.raises(E.RowTooLargeError, match="block_size"):
        list(source_rows)


def test_fewer_rows_than_marketo_counted_is_an_error(scripted: Scripted, tmp_path: Path) -> None:
    body = b"id,notes\n1,a\n2,b\n"
    with pytest.raises(E.MalformedResponseError, match="gave 2 rows, Marketo reported 3"):
        list(exported(scripted, body, 3, tmp_path).batches())


job_fields = st.fixed_dictionaries({"exportId": st.text(min_size=1, max_size=8) | st.integers()}, optional={
    "status": st.sampled_from(["Created", "Queued", "Processing", "Completed", "Failed", "Cancelled",
                               "Canceled", "weird"]) | scalars,
    "fileSize": scalars, "numberOfRecords": scalars, "fileChecksum": scalars,
    "createdAt": scalars, "startedAt": scalars, "finishedAt": scalars, "errorMsg": scalars})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(job=job_fields)
def test_any_bulk_job_answer_ends_in_rows_or_a_typed_error(scripted: Scripted, tmp_path_factory, job) -> None:
    """Every bulk endpoint answers with the same odd job object: the export ends in a typed error."""
    scripted.answer = Answer(body=json.dumps({"requestId": "j#1", "success": True, "result": [job]}).encode())
    waited = [0.0]

    def sleep(seconds: float) -> None:
        waited[0] += seconds

    bulk = BulkConfig(poll_interval_s=1.0, job_timeout_s=5.0)
    pacing = PacingConfig(calls_per_20s=100, window_s=0.01)
    config = MarketoConfig(base_url=scripted.base_url, bulk=bulk, pacing=pacing,
                           retry=RetryConfig(max_attempts=2, backoff_base_s=0.0))
    client = MarketoClient(config, "cid", SECRET, store=tmp_path_factory.mktemp("store"), sleep=sleep,
                           clock=lambda: waited[0])
    try:
        with pytest.raises(E.MarketoError) as caught:
            window = {"startAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-02T00:00:00Z"}
            client.bulk_export("activities", fields=None, filter={"createdAt": window}).read_all()
        assert SECRET not in str(caught.value)
    finally:
        client.close()
