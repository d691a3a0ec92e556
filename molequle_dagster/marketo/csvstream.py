"""Bulk export file -> Arrow record batches, streamed: never the whole file in memory or on disk.

`ResumableDownload` is a readable file over the HTTP body that resumes a dropped download with
`Range: bytes=N-`, strips NUL bytes chunk by chunk, hashes the original bytes, and at end of file
verifies `fileSize` and the `sha256:` checksum. An optional `hold` (the pacer's download slot) is taken
at the first byte request and kept across resumes until end of file or `close()`. `read_batches` feeds
it to `pyarrow.csv.open_csv` with explicit column types. A checksum mismatch surfaces as an exception
from the *last* step of the iterator: callers must not commit anything before the iterator has completed.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack

import pyarrow as pa
import pyarrow.csv as pacsv
import requests
import urllib3

from molequle_dagster.marketo import errors as E

_DROPPED = (urllib3.exceptions.HTTPError, requests.RequestException, OSError)
NULL_LITERALS = ["null", ""]  # Marketo writes empty values as the bare word null
TRUE_VALUES = ["true", "TRUE", "True", "1"]  # program-member exports may use 0/1 [UNCONFIRMED]
FALSE_VALUES = ["false", "FALSE", "False", "0"]
PEEK_BYTES = 16 << 10  # header lookup reads this much at a time, not a whole 1-MB chunk


class ResumableDownload(io.RawIOBase):
    def __init__(
        self,
        open_at: Callable[[int], requests.Response],
        *,
        expected_size: int | None,
        expected_checksum: str | None,
        max_resumes: int = 5,
        on_bytes: Callable[[int], None] = lambda n: None,
        endpoint: str = "",
        chunk_size: int = 1 << 20,
        hold: AbstractContextManager[object] | None = None,
    ) -> None:
        super().__init__()
        self._hold = hold
        self._held = ExitStack()
        self._open_at = open_at
        self._expected_size = expected_size
        self._expected_sha = (expected_checksum or "").removeprefix("sha256:").lower() or None
        self._max_resumes = max_resumes
        self._on_bytes = on_bytes
        self._endpoint = endpoint
        self._chunk_size = chunk_size
        self._hash = hashlib.sha256()
        self.offset = 0  # bytes of the original file received so far
        self.resumes = 0
        self._stalls = 0  # resumes in a row without new bytes
        self._resp: requests.Response | None = None
        self._skip = 0  # bytes to discard when a server ignores Range and restarts at 0
        self._pending = b""  # NUL-stripped bytes peeked but not yet read
        self._eof = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes, short only at end of file: pyarrow treats every read as a whole block, and
        a row longer than a short block would fail to parse."""
        want = size if size > 0 else 1 << 62
        out = bytearray(self._pending[:want])
        self._pending = self._pending[len(out) :]
        while len(out) < want and not self._eof:
            chunk = self._next_chunk(min(want - len(out), self._chunk_size) if size > 0 else self._chunk_size)
            out += chunk.replace(b"\x00", b"")  # NUL bytes break CSV parsers (tap-marketo/Airbyte strip too)
        return bytes(out)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def peek_line(self) -> bytes:
        """The first line (without consuming it); b"" for an empty file."""
        while b"\n" not in self._pending and not self._eof:
            self._pending += self._next_chunk(PEEK_BYTES).replace(b"\x00", b"")
        return self._pending.split(b"\n", 1)[0]

    def drain(self) -> None:
        """Read to the end (verifying size and checksum); the parser may stop before the last byte."""
        while self.read(self._chunk_size):
            pass

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None
        self._held.close()
        super().close()

    # --- internals ----------------------------------------------------------------------------------
    def _next_chunk(self, size: int) -> bytes:
        if self._resp is None:
            self._open()
        assert self._resp is not None
        try:
            chunk = self._resp.raw.read(size)
        except _DROPPED:
            self._dropped()
            return b""
        if chunk and self._skip:
            dropped = min(self._skip, len(chunk))
            self._skip -= dropped
            chunk = chunk[dropped:]
            if not chunk:
                return b""
        if not chunk:
            self._resp.close()
            self._resp = None
            if self._expected_size is not None and self.offset < self._expected_size:
                self._dropped()  # the body ended early without an error: resume from where it stopped
                return b""
            self._held.close()  # the body is fully read: nothing of this download is in flight any more
            self._verify()
            self._eof = True
            return b""
        self._hash.update(chunk)
        self.offset += len(chunk)
        self._stalls = 0
        self._on_bytes(len(chunk))
        if self._expected_size is not None and self.offset > self._expected_size:
            raise E.ChecksumMismatchError(
                f"download is longer than fileSize {self._expected_size}", endpoint=self._endpoint
            )
        return chunk

    def _open(self) -> None:
        if self._hold is not None:
            self._held.enter_context(self._hold)
            self._hold = None  # entered once; resumes reuse it
        resp = self._open_at(self.offset)
        if self.offset and resp.status_code == 206:
            content_range = resp.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {self.offset}-"):
                resp.close()
                raise E.MalformedResponseError(
                    f"resume from byte {self.offset} answered Content-Range {content_range!r}",
                    endpoint=self._endpoint,
                )
        elif self.offset:
            self._skip = self.offset  # 200: the server ignored Range; skip what we already have
        self._resp = resp

    def _dropped(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None
        self.resumes += 1
        self._stalls += 1
        if self._stalls > self._max_resumes:
            raise E.MarketoTransientError(
                f"download kept dropping at byte {self.offset} ({self._stalls} resumes without progress)",
                endpoint=self._endpoint,
            )

    def _verify(self) -> None:
        if self._expected_size is not None and self.offset != self._expected_size:
            raise E.ChecksumMismatchError(
                f"downloaded {self.offset} bytes, fileSize says {self._expected_size}",
                endpoint=self._endpoint,
            )
        if self._expected_sha is not None and self._hash.hexdigest() != self._expected_sha:
            raise E.ChecksumMismatchError(
                f"sha256 of the download {self._hash.hexdigest()} != fileChecksum {self._expected_sha}",
                endpoint=self._endpoint,
            )


def header_names(first_line: bytes, delimiter: str) -> list[str]:
    try:
        text = first_line.decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError as error:
        raise E.MalformedResponseError(f"export CSV header is not UTF-8 text ({error.reason})") from None
    try:
        return next(csv.reader([text], delimiter=delimiter))
    except (csv.Error, StopIteration) as error:
        raise E.MalformedResponseError(f"export CSV header could not be read: {error}") from None


def read_batches(
    source: ResumableDownload,
    column_types: Mapping[str, pa.DataType],
    *,
    delimiter: str = ",",
    block_size: int = 4 << 20,
    default_type: pa.DataType | None = None,
) -> Iterator[pa.RecordBatch]:
    """Record batches of one export. Columns missing from `column_types` are read as `default_type`
    (never inferred: inference on the first block can contradict a later one)."""
    first = source.peek_line()
    if not first.strip():
        source.drain()  # empty file: still verify size and checksum
        return
    names = header_names(first, delimiter)
    fallback = default_type or pa.string()
    types = {name: column_types.get(name, fallback) for name in names}
    try:
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(block_size=block_size, use_threads=False),
            # A blank line is a row (a one-column file's empty value), never skipped: in a wider file it
            # is an error, not a silently dropped record.
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                null_values=NULL_LITERALS,
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,  # a quoted "null" is the text null
                true_values=TRUE_VALUES,
                false_values=FALSE_VALUES,
            ),
        )
        for batch in reader:
            if batch.num_rows:
                yield batch
    except pa.ArrowInvalid as exc:
        if "straddling" in str(exc):
            raise E.RowTooLargeError(
                f"a row of the export is larger than the parse block of {block_size} bytes "
                "(bulk.block_size); it is read again with a larger block"
            ) from None
        raise E.MalformedResponseError(f"export CSV could not be parsed: {exc}") from None
    source.drain()
