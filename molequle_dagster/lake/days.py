"""Day-partitioned tables: one Parquet file per day, replaced atomically, with the day's sync cursor.

Layout under `<lake>/<table>/`:

    date=YYYY-MM-DD/part.parquet    the day's rows (any pyarrow reader can read the hive layout)
    _days/YYYY-MM-DD.json           the day's cursor: how far it is covered, with which filter, rows

The cursor is written after the file, so a crash in between leaves a newer file under an older cursor and
the next run redoes that day (writes are idempotent); it never claims coverage the file lacks. One cursor
file per day keeps parallel backfill runs (different days) from overwriting each other's state.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from molequle_dagster.lake.storage import Storage

PART_FILE = "part.parquet"
DAYS = "_days"
# Day files are written without a lock, and a streamed day stays open while later exports of its run
# queue and download: a temp file is a dead writer's only once it is older than any run can be.
TEMP_GRACE_S = 24 * 3600.0


class DayTable:
    def __init__(self, storage: Storage, name: str) -> None:
        self.storage = storage
        self.name = name

    @property
    def location(self) -> str:
        return self.storage.location(self.name)

    def path(self, day: str) -> str:
        return self.storage.path(self.name, f"date={day}", PART_FILE)

    def _cursor_path(self, day: str) -> str:
        return self.storage.path(self.name, DAYS, f"{day}.json")

    # --- writes --------------------------------------------------------------------------------------
    def write(self, day: str, table: pa.Table, cursor: dict[str, Any] | None = None) -> None:
        self.storage.sweep_table(self.name, TEMP_GRACE_S)
        self.storage.write_parquet(self.path(day), table)
        if cursor is not None:
            self.write_cursor(day, {**cursor, "rows": table.num_rows})

    @contextmanager
    def writer(self, day: str, schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
        """Stream a day's rows; the file is published when the block completes (cursor: `write_cursor`)."""
        self.storage.sweep_table(self.name, TEMP_GRACE_S)
        with self.storage.parquet_writer(self.path(day), schema) as writer:
            yield writer

    def write_cursor(self, day: str, cursor: dict[str, Any]) -> None:
        self.storage.write_json(self._cursor_path(day), cursor)

    # --- reads ---------------------------------------------------------------------------------------
    def cursor(self, day: str) -> dict[str, Any]:
        return self.storage.read_json(self._cursor_path(day)) or {}

    def read(self, day: str, columns: list[str] | None = None) -> pa.Table | None:
        path = self.path(day)
        return self.storage.read_parquet(path, columns) if self.storage.exists(path) else None

    def days(self) -> list[str]:
        """Days that have a file, ascending."""
        return sorted(self.written().keys())

    def written(self) -> dict[str, str]:
        """Day → when its file was last written (nanoseconds, as text), from one recursive listing:
        consumers compare it with what they saw to find the days written since."""
        stamps = {}
        for info in self.storage.list(self.storage.path(self.name), recursive=True):
            parent, _, name = info.path.rpartition("/")
            folder = parent.rpartition("/")[2]
            if info.type == pafs.FileType.File and name == PART_FILE and folder.startswith("date="):
                # Object stores keep whole seconds (S3's Last-Modified): a rewrite within the same second
                # would keep its stamp, so the size joins it there.
                stamp = str(info.mtime_ns) if self.storage.is_local else f"{info.mtime_ns}:{info.size}"
                stamps[folder.removeprefix("date=")] = stamp
        return dict(sorted(stamps.items()))

    def read_days(
        self, days: Iterable[str] | None = None, columns: list[str] | None = None
    ) -> pa.Table | None:
        wanted = self.days() if days is None else list(days)
        parts = [t for d in wanted if (t := self.read(d, columns)) is not None]
        return pa.concat_tables(parts, promote_options="default") if parts else None
