"""Files of the lake on a pyarrow filesystem: paths, atomic writes, reads, listings, temp-file sweeping.

The filesystem is resolved on first use, never at construction, so definitions load with an `s3://`
lake and no network (pyarrow resolves a bucket's region when the filesystem is created).

Every write is atomic: the bytes go to a dot-named temp file beside the target, which is then moved over
it (rename(2) on a local disk, a server-side copy on object stores), so a crash leaves the previous good
file and readers never see half a file. Dot names are ignored by pyarrow's dataset discovery; temp files
a killed process leaves behind are swept by `sweep_temp_files`, which each table's writes call through
`sweep_table` (at most once an hour per table and process: a listing of a big table costs on S3).

On object stores a write whose bytes are all in memory (`write_parquet`, `write_json`) skips the temp file:
an object PUT is atomic by itself, and the bytes are serialised before the upload starts, so nothing of a
failed write is ever published. That turns ~11 requests per file (directory markers, a multipart upload,
copy and delete) into one PUT (`allow_delayed_open`, which lets pyarrow send a small file as a single PUT).
Streamed writes (`parquet_writer`) keep the temp file: pyarrow completes an upload even when the writer
fails half-way. Credentials come from the environment (the AWS SDK's chain), never from the URI.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

TEMP_MARKER = ".tmp-"
COMPRESSION = "zstd"
SWEEP_INTERVAL_S = 3600.0  # a table's leftovers are looked for at most this often per process


class SweepSchedule:
    """When each table was last swept in this process (every run builds a new Lake; the schedule stays)."""

    def __init__(self, interval_s: float = SWEEP_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def due(self, key: str, now: float | None = None) -> bool:
        """True (and noted) when `key` was not swept within the interval."""
        moment = time.monotonic() if now is None else now
        with self._lock:
            last = self._last.get(key)
            if last is not None and moment - last < self.interval_s:
                return False
            self._last[key] = moment
            return True


SWEEPS = SweepSchedule()

# Above this many bytes in memory a table streams through a temp file even on object stores: serialising
# it whole first would double the write's peak memory.
BUFFERED_WRITE_MAX = 64 << 20


class LakeError(RuntimeError):
    pass


def restore_seconds(table: pa.Table) -> pa.Table:
    """Parquet has no seconds unit: our second-precision timestamps come back as ms; restore them."""
    fields = [
        pa.field(f.name, pa.timestamp("s", tz=f.type.tz), f.nullable, f.metadata)
        if pa.types.is_timestamp(f.type) and f.type.unit == "ms"
        else f
        for f in table.schema
    ]
    target = pa.schema(fields, table.schema.metadata)
    return table if target.equals(table.schema) else table.cast(target)


# URI query keys pyarrow would take credentials from: refused, a URI ends up in metadata and logs.
CREDENTIAL_KEYS = frozenset({"access_key", "secret_key", "session_token"})


class Storage:
    """One lake root on one filesystem."""

    def __init__(self, uri: str) -> None:
        if not uri:
            raise LakeError("lake URI: expected a local directory or a pyarrow filesystem URI, got ''")
        refuse_credentials(uri)
        self.uri = uri

    @cached_property
    def _resolved(self) -> tuple[pafs.FileSystem, str, bool]:
        if "://" in self.uri and not self.uri.startswith("file://"):
            filesystem, root = pafs.FileSystem.from_uri(_with_delayed_open(self.uri))
            return filesystem, root.rstrip("/"), False
        local = self.uri.removeprefix("file://")
        return pafs.LocalFileSystem(), str(Path(local).expanduser().resolve()), True

    @property
    def fs(self) -> pafs.FileSystem:
        return self._resolved[0]

    @property
    def root(self) -> str:
        return self._resolved[1]

    @property
    def is_local(self) -> bool:
        return "://" not in self.uri or self.uri.startswith("file://")

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def location(self, *parts: str) -> str:
        """Human-readable location, for metadata and the CLI (never resolves the filesystem)."""
        if self.is_local:
            return str(Path(self.uri.removeprefix("file://"), *parts).expanduser().resolve())
        bare = urlsplit(self.uri)._replace(query="", fragment="").geturl()  # no endpoint options
        return "/".join([bare.rstrip("/"), *parts])

    # --- atomic writes -----------------------------------------------------------------------------
    @contextmanager
    def atomic_target(self, final_path: str) -> Iterator[str]:
        parent, name = final_path.rsplit("/", 1)
        if self.is_local:  # object stores have no directories: creating one PUTs a marker per level
            self.fs.create_dir(parent, recursive=True)
        temp_path = f"{parent}/.{name}{TEMP_MARKER}{uuid.uuid4().hex}"
        try:
            yield temp_path
            self.fs.move(temp_path, final_path)
        except BaseException:
            if self.fs.get_file_info(temp_path).type != pafs.FileType.NotFound:
                self.fs.delete_file(temp_path)
            raise

    def write_parquet(self, final_path: str, table: pa.Table) -> None:
        if self.is_local or table.nbytes > BUFFERED_WRITE_MAX:
            with self.atomic_target(final_path) as target:
                pq.write_table(table, target, filesystem=self.fs, compression=COMPRESSION)
            return
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, compression=COMPRESSION)
        self._put(final_path, buffer.getvalue())

    def _put(self, final_path: str, payload: bytes | pa.Buffer) -> None:
        """One object PUT of bytes already in memory (object stores only; see the module's docstring)."""
        with self.fs.open_output_stream(final_path) as stream:
            stream.write(payload)

    @contextmanager
    def parquet_writer(self, final_path: str, schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
        """Stream record batches into one Parquet file, published only if the block completes."""
        with self.atomic_target(final_path) as target:
            writer = pq.ParquetWriter(target, schema, filesystem=self.fs, compression=COMPRESSION)
            try:
                yield writer
            finally:
                writer.close()

    def write_json(self, final_path: str, value: Any) -> None:
        payload = json.dumps(value, sort_keys=True, default=str).encode("utf-8")
        if not self.is_local:
            self._put(final_path, payload)
            return
        with self.atomic_target(final_path) as target, self.fs.open_output_stream(target) as stream:
            stream.write(payload)

    # --- reads ---------------------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type == pafs.FileType.File

    def read_json(self, path: str) -> Any | None:
        try:
            with self.fs.open_input_stream(path) as stream:
                return json.loads(stream.read().decode("utf-8"))
        except FileNotFoundError:
            return None

    def read_parquet(self, path: str, columns: list[str] | None = None) -> pa.Table:
        # One open file for the schema and the rows: on an object store a path-based read asks for the
        # object's size three times and its footer twice.
        with self.fs.open_input_file(path) as source:
            parquet = pq.ParquetFile(source)
            if columns is not None:
                available = set(parquet.schema_arrow.names)
                columns = [c for c in columns if c in available]
            return restore_seconds(parquet.read(columns=columns))

    def list(self, directory: str, recursive: bool = False) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(directory, recursive=recursive, allow_not_found=True)
        return self.fs.get_file_info(selector)

    def delete(self, path: str) -> None:
        if self.exists(path):
            self.fs.delete_file(path)

    # --- housekeeping --------------------------------------------------------------------------------
    def sweep_temp_files(
        self, older_than_s: float = 3600.0, now: float | None = None, under: str | None = None
    ) -> list[str]:
        """Delete temp files a killed writer left behind (older than any write still in progress), in the
        whole lake or `under` one directory."""
        cutoff_ns = int(((now if now is not None else time.time()) - older_than_s) * 1e9)
        swept = []
        for info in self.list(under or self.root, recursive=True):
            if (
                info.type == pafs.FileType.File
                and info.base_name.startswith(".")
                and TEMP_MARKER in info.base_name
                and info.mtime_ns is not None
                and info.mtime_ns < cutoff_ns
            ):
                try:
                    self.fs.delete_file(info.path)
                except FileNotFoundError:  # another process swept it first
                    continue
                swept.append(info.path)
        return swept

    def sweep_table(self, name: str, older_than_s: float, schedule: SweepSchedule = SWEEPS) -> list[str]:
        """`sweep_temp_files` under one table, if this process has not done so within the schedule's
        interval. Called by the table's writes, so a kill's leftovers go when the table is next written."""
        directory = self.path(name)
        if not schedule.due(f"{self.uri}|{name}"):
            return []
        return self.sweep_temp_files(older_than_s, under=directory)


def refuse_credentials(uri: str) -> None:
    """A lake URI must not carry credentials (user:secret@ or access_key=/secret_key= options): the URI is
    shown in metadata, the UI and logs. The message never repeats the URI."""
    if "://" not in uri or uri.startswith("file://"):
        return
    parts = urlsplit(uri)
    keys = {k.lower() for k, _ in parse_qsl(parts.query)}
    if parts.password is not None or parts.username is not None or keys & CREDENTIAL_KEYS:
        raise LakeError(
            f"lake URI ({parts.scheme}://{parts.hostname or ''}/…): expected no credentials in the URI "
            "(user info or access_key/secret_key/session_token options); set them in the environment "
            "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, or a role the SDK finds)"
        )


def _with_delayed_open(uri: str) -> str:
    """An s3:// URI with `allow_delayed_open=true` unless it says otherwise: pyarrow then sends a file that
    fits in one part as a single PUT at close instead of a three-request multipart upload."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or "allow_delayed_open" in dict(parse_qsl(parts.query)):
        return uri
    return f"{uri}{'&' if parts.query else '?'}allow_delayed_open=true"
