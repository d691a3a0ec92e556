"""Append-only logs (e.g. the action log): one Parquet file per append, so concurrent writers never
overwrite each other; file names sort in write order (nanosecond clock, then a random id)."""

from __future__ import annotations

import time
import uuid

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from molequle_dagster.lake.days import TEMP_GRACE_S
from molequle_dagster.lake.storage import Storage

PARTS = "parts"


class AppendLog:
    def __init__(self, storage: Storage, name: str) -> None:
        self.storage = storage
        self.name = name

    def append(self, table: pa.Table) -> str:
        self.storage.sweep_table(self.name, TEMP_GRACE_S)  # appends take no lock either
        path = self.storage.path(self.name, PARTS, f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.parquet")
        self.storage.write_parquet(path, table)
        return path

    def _part_paths(self) -> list[str]:
        infos = self.storage.list(self.storage.path(self.name, PARTS))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet"))

    def read(self, columns: list[str] | None = None) -> pa.Table | None:
        parts = [self.storage.read_parquet(p, columns) for p in self._part_paths()]
        return pa.concat_tables(parts, promote_options="default") if parts else None

    def compact(self, min_parts: int = 200) -> int:
        """Fold many small parts into one (named like the first, so order holds); returns parts removed.
        A reader in between may see rows twice, never lose one; appends made meanwhile are untouched."""
        paths = self._part_paths()
        if len(paths) < min_parts:
            return 0
        combined = pa.concat_tables([pq.read_table(p, filesystem=self.storage.fs) for p in paths])
        compacted = paths[0].removesuffix(".parquet") + "-compacted.parquet"
        self.storage.write_parquet(compacted, combined)
        for path in paths:
            self.storage.fs.delete_file(path)
        return len(paths)
