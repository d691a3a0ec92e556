"""Molequle's Parquet lake on a pyarrow filesystem: a local directory by default, any pyarrow URI otherwise.

Layout under the lake root:

    <table>/current.parquet                    current-state tables (people, accounts, ...), replaced whole
    <table>/date=YYYY-MM-DD/part.parquet       one file per daily partition (activities, people updates, ...)
    <table>/parts/<time>-<id>.parquet           append-only logs (action_log): one file per append, so
                                               concurrent writers never overwrite each other
    _state/<name>.json                         sync cursors and watermarks

Every write is atomic: the file is written beside its target and moved over it (a rename on a local disk,
a server-side copy on object stores such as s3:// or gs://), so a crash mid-write leaves the previous good
file and readers never see half a file.

Read any table into pandas with `Lake(uri).read_table("people").to_pandas()` or, from a shell,
`python -c "from molequle_dagster.lake import read_pandas; print(read_pandas('people'))"`.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

CURRENT_FILE = "current.parquet"
PART_FILE = "part.parquet"


class LakeError(RuntimeError):
    pass


def _restore_seconds(table: pa.Table) -> pa.Table:
    """Parquet has no seconds unit: our second-precision timestamps come back as ms; restore them."""
    fields = [
        pa.field(f.name, pa.timestamp("s", tz=f.type.tz), f.nullable, f.metadata)
        if pa.types.is_timestamp(f.type) and f.type.unit == "ms"
        else f
        for f in table.schema
    ]
    target = pa.schema(fields, table.schema.metadata)
    return table if target.equals(table.schema) else table.cast(target)


def _resolve(uri: str) -> tuple[pafs.FileSystem, str, bool]:
    """(filesystem, root path inside it, whether it is the local disk)."""
    if "://" in uri and not uri.startswith("file://"):
        filesystem, root = pafs.FileSystem.from_uri(uri)
        return filesystem, root.rstrip("/"), False
    local = uri.removeprefix("file://")
    return pafs.LocalFileSystem(), str(Path(local).expanduser().resolve()), True


class Lake:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.fs, self.root, self._local = _resolve(uri)

    # --- paths -------------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def current_path(self, table: str) -> str:
        return self.path(table, CURRENT_FILE)

    def partition_path(self, table: str, key: str) -> str:
        return self.path(table, f"date={key}", PART_FILE)

    def location(self, table: str) -> str:
        """Human-readable location of a table, for metadata and the CLI summary."""
        return self.path(table) if self._local else f"{self.uri.rstrip('/')}/{table}"

    # --- atomic writes -----------------------------------------------------------------------------
    @contextmanager
    def _atomic_target(self, final_path: str) -> Iterator[str]:
        """Write beside the target, then move it into place: rename(2) on a local disk; on object stores a
        server-side copy, so the final key only ever holds a whole file. The temp name starts with a dot,
        which dataset discovery ignores."""
        parent, name = final_path.rsplit("/", 1)
        self.fs.create_dir(parent, recursive=True)
        temp_path = f"{parent}/.{name}.tmp-{uuid.uuid4().hex}"
        try:
            yield temp_path
            self.fs.move(temp_path, final_path)
        except BaseException:
            if self.fs.get_file_info(temp_path).type != pafs.FileType.NotFound:
                self.fs.delete_file(temp_path)
            raise

    def _write(self, final_path: str, table: pa.Table) -> None:
        with self._atomic_target(final_path) as target:
            pq.write_table(table, target, filesystem=self.fs, compression="zstd")

    @contextmanager
    def writer(self, final_path: str, schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
        """Stream record batches into one Parquet file, published only if the block completes."""
        with self._atomic_target(final_path) as target:
            writer = pq.ParquetWriter(target, schema, filesystem=self.fs, compression="zstd")
            try:
                yield writer
            finally:
                writer.close()

    def write_current(self, table_name: str, table: pa.Table) -> str:
        path = self.current_path(table_name)
        self._write(path, table)
        return path

    def write_partition(self, table_name: str, key: str, table: pa.Table) -> str:
        path = self.partition_path(table_name, key)
        self._write(path, table)
        return path

    # --- reads -------------------------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type == pafs.FileType.File

    def read_current(self, table_name: str, columns: list[str] | None = None) -> pa.Table | None:
        path = self.current_path(table_name)
        if not self.exists(path):
            return None
        return _restore_seconds(pq.read_table(path, filesystem=self.fs, columns=columns))

    def read_partition(self, table_name: str, key: str, columns: list[str] | None = None) -> pa.Table | None:
        path = self.partition_path(table_name, key)
        if not self.exists(path):
            return None
        return _restore_seconds(pq.read_table(path, filesystem=self.fs, columns=columns))

    def partition_keys(self, table_name: str) -> list[str]:
        selector = pafs.FileSelector(self.path(table_name), allow_not_found=True)
        keys = [
            info.base_name.removeprefix("date=")
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.Directory and info.base_name.startswith("date=")
        ]
        return sorted(k for k in keys if self.exists(self.partition_path(table_name, k)))

    def partition_mtimes(self, table_name: str) -> dict[str, str]:
        """Day → when its file was last written, from one listing (cheap on object stores too)."""
        selector = pafs.FileSelector(self.path(table_name), recursive=True, allow_not_found=True)
        stamps = {}
        for info in self.fs.get_file_info(selector):
            parent, _, name = info.path.rpartition("/")
            day = parent.rpartition("/")[2]
            if info.type == pafs.FileType.File and name == PART_FILE and day.startswith("date="):
                stamps[day.removeprefix("date=")] = str(info.mtime_ns)
        return dict(sorted(stamps.items()))

    def read_partitions(
        self, table_name: str, keys: Iterable[str] | None = None, columns: list[str] | None = None
    ) -> pa.Table | None:
        wanted = self.partition_keys(table_name) if keys is None else list(keys)
        parts = [t for k in wanted if (t := self.read_partition(table_name, k, columns)) is not None]
        if not parts:
            return None
        return pa.concat_tables(parts, promote_options="default")

    def read_table(self, table_name: str, columns: list[str] | None = None) -> pa.Table:
        """A current-state table, all partitions of a partitioned one, or all rows of an append-only log."""
        for read in (self.read_current, self.read_partitions, self.read_appended):
            table = read(table_name, columns=columns)
            if table is not None:
                return table
        raise LakeError(f"table {table_name!r} has no data under {self.location(table_name)}")

    # --- append-only logs --------------------------------------------------------------------------
    def append(self, table_name: str, table: pa.Table) -> str:
        """Add rows as a new part file; names sort in write order (nanosecond clock, then a random id)."""
        path = self.path(table_name, "parts", f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.parquet")
        self._write(path, table)
        return path

    def _part_paths(self, table_name: str) -> list[str]:
        selector = pafs.FileSelector(self.path(table_name, "parts"), allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet"))

    def read_appended(self, table_name: str, columns: list[str] | None = None) -> pa.Table | None:
        parts = [
            _restore_seconds(pq.read_table(p, filesystem=self.fs, columns=columns))
            for p in self._part_paths(table_name)
        ]
        return pa.concat_tables(parts, promote_options="default") if parts else None

    def compact_appended(self, table_name: str, min_parts: int = 200) -> int:
        """Fold many small parts into one (named like the first, so order holds); returns parts removed.
        A reader in between may see rows twice, never lose one; appends made meanwhile are untouched."""
        paths = self._part_paths(table_name)
        if len(paths) < min_parts:
            return 0
        combined = pa.concat_tables([pq.read_table(p, filesystem=self.fs) for p in paths])
        first = paths[0]
        compacted = first.removesuffix(".parquet") + "-compacted.parquet"
        self._write(compacted, combined)
        for path in paths:
            self.fs.delete_file(path)
        return len(paths)

    # --- sync state (cursors, watermarks) ----------------------------------------------------------
    def read_state(self, name: str) -> dict[str, Any]:
        path = self.path("_state", f"{name}.json")
        if not self.exists(path):
            return {}
        with self.fs.open_input_stream(path) as stream:
            return json.loads(stream.read().decode("utf-8"))

    def write_state(self, name: str, value: dict[str, Any]) -> None:
        path = self.path("_state", f"{name}.json")
        payload = json.dumps(value, sort_keys=True, default=str).encode("utf-8")
        with self._atomic_target(path) as target, self.fs.open_output_stream(target) as stream:
            stream.write(payload)


def default_lake_uri() -> str:
    from molequle_dagster.settings import load_settings

    return os.environ.get("MOLEQULE_LAKE_URI") or load_settings().storage.lake_uri


def read_pandas(table_name: str, lake_uri: str | None = None) -> Any:
    """Read any lake table into a pandas DataFrame (the documented way in the README)."""
    return Lake(lake_uri or default_lake_uri()).read_table(table_name).to_pandas()
