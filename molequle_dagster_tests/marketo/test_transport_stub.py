"""Transport-level cases against a local `http.server` stub over real HTTP: gzip, HTML proxy pages,
truncated JSON, connection resets, Range resume, long GETs, token handling, secret redaction."""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pytest

from molequle_dagster.marketo import errors as E
from molequle_dagster.marketo.auth import TokenCache
from molequle_dagster.marketo.config import RetryConfig
from molequle_dagster.marketo.csvstream import ResumableDownload, read_batches
from molequle_dagster.marketo.stats import CallStats
from molequle_dagster.marketo.transport import Transport
from molequle_dagster_tests.marketo.local_http import LocalHttp, send

SECRET = "s3cr3t-value"
TOKEN = "tok-1234:int"
Handler = Callable[["Stub", BaseHTTPRequestHandler], None]


class Stub(LocalHttp):
    """Serves the identity endpoint itself; every other request goes to the next scripted handler."""

    def __init__(self) -> None:
        self.script: list[Handler] = []
        self.seen: list[dict[str, Any]] = []
        self.token_calls = 0
        super().__init__(self._handle)

    def _handle(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        url = urlsplit(h.path)
        self.seen.append({"method": h.command, "path": url.path, "query": parse_qs(url.query),
                          "headers": dict(h.headers), "body": body, "raw_path": h.path})
        if url.path == "/identity/oauth/token":
            self.token_calls += 1
            q = parse_qs(body.decode())  # the client posts its credentials as a form
            if q.get("client_secret") == [SECRET]:
                send_json(h, {"access_token": TOKEN, "token_type": "bearer", "expires_in": 3599})
            else:
                send_json(h, {"error": "invalid_client", "error_description": "Bad client credentials"},
                          status=401)
            return
        self.script.pop(0)(self, h)

    def api_calls(self) -> list[dict[str, Any]]:
        return [s for s in self.seen if s["path"] != "/identity/oauth/token"]


def send_json(h: BaseHTTPRequestHandler, obj: Any, status: int = 200) -> None:
    send(h, json.dumps(obj).encode(), status=status)


def ok(result: list[Any]) -> Handler:
    return lambda stub, h: send_json(h, {"requestId": "a#1", "success": True, "result": result})


def fail(code: str, message: str) -> Handler:
    return lambda stub, h: send_json(h, {"requestId": "b#2", "success": False,
                                         "errors": [{"code": code, "message": message}]})


def reset(stub: Stub, h: BaseHTTPRequestHandler) -> None:
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    h.close_connection = True
    h.connection.close()


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub()
    yield server
    server.close()


@pytest.fixture
def transport(stub: Stub) -> Iterator[tuple[Transport, list[float]]]:
    sleeps: list[float] = []
    t = Transport(stub.base_url, "cid", SECRET, timeout_s=5.0, stats=CallStats(), pacer=None,
                  retry=RetryConfig(max_attempts=3), sleep=sleeps.append, tokens=TokenCache())
    yield t, sleeps
    t.close()


def test_token_only_in_bearer_header_and_cached(stub: Stub, transport: tuple[Transport, list]) -> None:
    t, _ = transport
    stub.script += [ok([{"n": 1}]), ok([{"n": 2}])]
    assert t.request("GET", "/rest/v1/x.json", params={"a": 1})["result"] == [{"n": 1}]
    assert t.request("GET", "/rest/v1/x.json")["result"] == [{"n": 2}]
    assert stub.token_calls == 1
    for call in stub.api_calls():
        assert call["headers"]["Authorization"] == f"Bearer {TOKEN}"
        assert TOKEN not in call["raw_path"] and "access_token" not in call["raw_path"]


def test_gzip_responses_are_decoded(stub: Stub, transport: tuple[Transport, list]) -> None:
    t, _ = transport
    payload = json.dumps({"requestId": "g#1", "success": True, "result": [{"n": i} for i in range(500)]})
    stub.script.append(lambda s, h: send(h, gzip.compress(payload.encode()),
                                         headers={"Content-Encoding": "gzip"}))
    assert len(t.request("GET", "/rest/v1/x.json")["result"]) == 500
    assert "gzip" in stub.api_calls()[0]["headers"]["Accept-Encoding"]


def test_long_get_becomes_post_with_method_override(stub: Stub, transport: tuple[Transport, list]) -> None:
    t, _ = transport
    stub.script.append(ok([]))
    values = ",".join(str(10_000_000 + i) for i in range(1000))  # ~9 KB of filter values
    t.request("GET", "/rest/v1/leads.json", params={"filterType": "id", "filterValues": values})
    call = stub.api_calls()[0]
    assert call["method"] == "POST" and call["query"] == {"_method": ["GET"]}
    assert parse_qs(call["body"].decode())["filterValues"] == [values]


@pytest.mark.parametrize("bad", [
    lambda s, h: send(h, b"<html><body>502 Bad Gateway</body></html>", ctype="text/html"),
    lambda s, h: send(h, b'{"requestId":"a#1","success":true,"result":[{"id":1}'),
    lambda s, h: send_json(h, {"requestId": "a#1", "success": False}),
    reset,
    lambda s, h: send(h, b"oops", status=503, ctype="text/plain"),
])
def test_transient_failures_are_retried_then_succeed(stub: Stub, transport: tuple[Transport, list],
                                                    bad: Handler) -> None:
    t, sleeps = transport
    stub.script += [bad, ok([{"n": 42}])]
    assert t.request("GET", "/rest/v1/x.json")["result"] == [{"n": 42}]
    assert len(sleeps) == 1 and 0.5 <= sleeps[0] <= 1.5  # one jittered back-off of ~1 s


def test_persistent_html_page_is_malformed_not_empty(stub: Stub, transport: tuple[Transport, list]) -> None:
    t, _ = transport
    page = lambda s, h: send(h, b"<!DOCTYPE html><html>proxy</html>", ctype="text/html")  # noqa: E731
    stub.script += [page] * 3
    with pytest.raises(E.MalformedResponseError, match=r"HTML page.*gave up after 3 attempts"):
        t.request("GET", "/rest/v1/x.json")


def test_auth_errors_refresh_again_with_back_off_then_fail(stub: Stub, transport: tuple[Transport, list]
                                                           ) -> None:
    t, sleeps = transport
    stub.script += [fail("601", "Access token invalid"), ok([{"n": 1}])]
    assert t.request("GET", "/rest/v1/x.json")["result"] == [{"n": 1}]
    assert stub.token_calls == 2 and sleeps == []  # the first refresh is immediate
    # A second 601/602 right after a refresh is refreshed again, after a back-off (it failed the run).
    stub.script += [fail("602", "Access token expired"), fail("601", "Access token invalid"), ok([{"n": 2}])]
    assert t.request("GET", "/rest/v1/x.json")["result"] == [{"n": 2}]
    assert len(sleeps) == 1
    # Bounded: after auth_attempts (3) refreshes in a row the call fails.
    stub.script += [fail("601", "Access token invalid")] * 4
    with pytest.raises(E.MarketoAuthError, match=r"code=601.*requestId=b#2"):
        t.request("GET", "/rest/v1/x.json")
    assert not stub.script


def test_bad_secret_is_an_auth_error_without_the_secret(stub: Stub) -> None:
    t = Transport(stub.base_url, "cid", "wrong-secret-xyz", timeout_s=5.0, stats=CallStats(), pacer=None,
                  tokens=TokenCache())
    with pytest.raises(E.MarketoAuthError) as info:
        t.request("GET", "/rest/v1/x.json")
    assert "Bad client credentials" in str(info.value) and "wrong-secret-xyz" not in str(info.value)
    assert info.value.__cause__ is None


def test_network_failure_on_token_never_leaks_the_secret() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    t = Transport(f"http://127.0.0.1:{port}", "cid", SECRET, timeout_s=1.0, stats=CallStats(), pacer=None,
                  retry=RetryConfig(max_attempts=2), sleep=lambda s: None, tokens=TokenCache())
    with pytest.raises(E.MarketoTransientError) as info:
        t.request("GET", "/rest/v1/x.json")
    text = str(info.value) + repr(info.value.__cause__) + repr(info.value.__context__)
    assert SECRET not in text and "network error" in text


def test_non_idempotent_call_is_not_retried_after_a_reset(stub: Stub, transport: tuple[Transport, list]
                                                         ) -> None:
    t, _ = transport
    stub.script += [reset]
    with pytest.raises(E.MarketoTransientError, match="may or may not have been applied"):
        t.request("POST", "/rest/v1/campaigns/1/trigger.json", json_body={}, idempotent=False)
    assert len(stub.api_calls()) == 1


def test_throttle_codes_wait_then_retry(stub: Stub, transport: tuple[Transport, list]) -> None:
    t, sleeps = transport
    stub.script += [fail("606", "Max rate limit '100' exceeded with in '20' secs"),
                    fail("615", "Concurrent access limit '10' reached"), ok([{"n": 1}])]
    assert t.request("GET", "/rest/v1/x.json")["result"] == [{"n": 1}]
    assert sleeps[0] >= 5.0 and 1.0 <= sleeps[1] <= 2.0


def test_607_stops_immediately(stub: Stub, transport: tuple[Transport, list]) -> None:
    t, sleeps = transport
    stub.script += [fail("607", "Daily quota reached")]
    with pytest.raises(E.DailyQuotaExceeded, match="daily quota exhausted, resets at"):
        t.request("GET", "/rest/v1/x.json")
    assert sleeps == []


def test_download_resumes_with_range_after_a_drop(stub: Stub, transport: tuple[Transport, list]) -> None:
    t, _ = transport
    data = b"id,name\n" + b"".join(b'%d,"name %d"\n' % (i, i) for i in range(5000))

    def truncated(s: Stub, h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/csv")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data[: len(data) // 2])
        h.wfile.flush()
        h.close_connection = True  # FIN mid-body: the client sees fewer bytes than Content-Length

    def ranged(s: Stub, h: BaseHTTPRequestHandler) -> None:
        start = int(h.headers["Range"].removeprefix("bytes=").rstrip("-"))
        send(h, data[start:], status=206, ctype="text/csv",
             headers={"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}",
                      "Accept-Ranges": "bytes"})

    stub.script += [truncated, ranged]
    path = "/bulk/v1/leads/export/e1/file.json"
    source = ResumableDownload(lambda off: t.open_download(path, start=off), expected_size=len(data),
                               expected_checksum="sha256:" + hashlib.sha256(data).hexdigest())
    rows = sum(b.num_rows for b in read_batches(source, {}))
    assert rows == 5000 and source.resumes == 1
    second = stub.api_calls()[1]
    assert second["headers"]["Range"] == f"bytes={source.offset - (len(data) - len(data) // 2)}-"


def test_bare_null_is_null_and_quoted_null_is_the_text_null(stub: Stub, transport: tuple[Transport, list]
                                                            ) -> None:
    """Marketo writes an empty value as a bare `null`; a quoted "null" is someone's text (issue 16 item 7)."""
    t, _ = transport
    data = b'id,name,title\n1,null,x\n2,"null",\n3,"",y\n4,Null,"a ""null"" b"\n'
    stub.script.append(lambda s, h: send(h, data, ctype="text/csv"))
    source = ResumableDownload(lambda off: t.open_download("/bulk/v1/leads/export/e1/file.json", start=off),
                               expected_size=len(data), expected_checksum=None)
    rows = [row for batch in read_batches(source, {"id": pa.int64()}) for row in batch.to_pylist()]
    assert [r["name"] for r in rows] == [None, "null", "", "Null"]
    assert [r["title"] for r in rows] == ["x", None, "y", 'a "null" b']


def test_file_endpoint_json_error_and_404(stub: Stub, transport: tuple[Transport, list]) -> None:
    t, sleeps = transport
    stub.script += [fail("606", "Max rate limit"), lambda s, h: send(h, b"data", ctype="text/csv")]
    resp = t.open_download("/bulk/v1/leads/export/e1/file.json")
    assert resp.raw.read(10) == b"data" and sleeps
    stub.script += [lambda s, h: send(h, b"Export file not found", status=404, ctype="text/plain")]
    with pytest.raises(E.BulkFileGoneError, match="not found"):
        t.open_download("/bulk/v1/leads/export/e1/file.json")


def test_base_url_without_a_scheme_is_refused() -> None:
    # A base_url without a scheme is a clear configuration error naming the field.
    with pytest.raises(ValueError, match="base_url: expected an http"):
        Transport("localhost:1", "cid", SECRET, timeout_s=1.0, stats=CallStats(), pacer=None)


def test_a_result_that_is_not_a_list_of_objects_is_malformed(stub: Stub, transport: tuple[Transport, list]
                                                             ) -> None:
    t, _ = transport
    stub.script += [ok([1, 2])] * 3
    with pytest.raises(E.MalformedResponseError, match="'result' is not a list of objects"):
        t.request("GET", "/rest/v1/x.json")
