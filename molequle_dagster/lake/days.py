"""Day-partitioned tables: per day a base file, replaced atomically, the small files ticks append to it,
and the day's sync cursor.

Layout under `<lake>/<table>/`:

    date=YYYY-MM-DD/part.parquet          the day's base rows (any pyarrow reader can read the hive layout)
    date=YYYY-MM-DD/delta-G-N.parquet     rows a tick added to that base (generation G), none of them in it
    _days/YYYY-MM-DD.json                 the day's cursor: how far it is covered, with which filter, rows

A tick adds only its new rows to today (`append`): what it writes follows the change, not the size of the
day so far. Replacing a day (`write`, `writer`: the daily close, a backfill, a fold of the deltas) writes a
base of the next generation, which every older delta no longer belongs to, and then deletes them; a crash
in between leaves deltas readers skip (their generation is not the base's).

The cursor is written after the file, so a crash in between leaves a newer file under an older cursor and
the next run redoes that day (writes are idempotent); it never claims coverage the file lacks. One cursor
file per day keeps parallel backfill runs (different days) from overwriting each other's state.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from molequle_dagster.lake.storage import Storage

PART_FILE = "part.parquet"
DELTA_PREFIX = "delta-"
GENERATION = b"molequle.day_generation"  # in the base file's schema metadata
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
        """Replace the day with `table` (its deltas included: they are dropped)."""
        self.storage.sweep_table(self.name, TEMP_GRACE_S)
        stale, generation = self._deltas(day), self.generation(day) + 1
        self.storage.write_parquet(self.path(day), _with_generation(table, generation))
        self._drop(stale)
        if cursor is not None:
            self.write_cursor(day, {**cursor, "rows": table.num_rows})

    @contextmanager
    def writer(self, day: str, schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
        """Stream a day's rows; the file is published when the block completes (cursor: `write_cursor`)."""
        self.storage.sweep_table(self.name, TEMP_GRACE_S)
        stale, generation = self._deltas(day), self.generation(day) + 1
        with self.storage.parquet_writer(self.path(day), _with_generation(schema, generation)) as writer:
            yield writer
        self._drop(stale)

    def append(self, day: str, table: pa.Table) -> None:
        """Add rows to the day's base (which must exist), none of them already in the day: one small file."""
        generation = self.generation(day)
        name = f"{DELTA_PREFIX}{generation}-{time.time_ns():020d}.parquet"
        self.storage.write_parquet(self.storage.path(self.name, f"date={day}", name), table)

    def _drop(self, paths: list[str]) -> None:
        for path in paths:
            try:
                self.storage.fs.delete_file(path)
            except FileNotFoundError:  # a concurrent replace of the same day dropped it first
                continue

    def write_cursor(self, day: str, cursor: dict[str, Any]) -> None:
        self.storage.write_json(self._cursor_path(day), cursor)

    # --- reads ---------------------------------------------------------------------------------------
    def cursor(self, day: str) -> dict[str, Any]:
        return self.storage.read_json(self._cursor_path(day)) or {}

    def generation(self, day: str) -> int:
        """The base's generation (0 before the day has a base, or for a base written before deltas)."""
        path = self.path(day)
        if not self.storage.exists(path):
            return 0
        with self.storage.fs.open_input_file(path) as source:
            metadata = pq.ParquetFile(source).schema_arrow.metadata or {}
        return int(metadata.get(GENERATION, b"0"))

    def _files(self, day: str) -> list[pafs.FileInfo]:
        folder = self.storage.path(self.name, f"date={day}")
        return [
            info
            for info in self.storage.list(folder)
            if info.type == pafs.FileType.File and not info.base_name.startswith(".")
        ]

    def _deltas(self, day: str, generation: int | None = None) -> list[str]:
        """The day's delta files, oldest first; of one base generation if `generation` is given."""
        names = sorted(info.base_name for info in self._files(day) if info.base_name.startswith(DELTA_PREFIX))
        if generation is not None:
            names = [n for n in names if n.split("-")[1] == str(generation)]
        return [self.storage.path(self.name, f"date={day}", n) for n in names]

    def delta_count(self, day: str) -> int:
        return len(self._deltas(day))

    def read(self, day: str, columns: list[str] | None = None) -> pa.Table | None:
        """The day's rows: its base and the deltas of the base's generation."""
        path = self.path(day)
        if not self.storage.exists(path):
            return None
        base = self.storage.read_parquet(path, columns)
        metadata = dict(base.schema.metadata or {})
        generation = int(metadata.pop(GENERATION, b"0"))
        base = base.replace_schema_metadata(metadata or None)  # the generation stays in the lake
        deltas = [self.storage.read_parquet(p, columns) for p in self._deltas(day, generation)]
        if not deltas:
            return base
        return pa.concat_tables([base, *deltas], promote_options="default")

    def days(self) -> list[str]:
        """Days that have a file, ascending."""
        return sorted(self.written().keys())

    def written(self) -> dict[str, str]:
        """Day → a stamp of its files (base and deltas), from one recursive listing: consumers compare it
        with what they saw to find the days written since."""
        files: dict[str, list[pafs.FileInfo]] = {}
        for info in self.storage.list(self.storage.path(self.name), recursive=True):
            parent, _, name = info.path.rpartition("/")
            folder = parent.rpartition("/")[2]
            ours = name == PART_FILE or name.startswith(DELTA_PREFIX)
            if info.type == pafs.FileType.File and folder.startswith("date=") and ours:
                files.setdefault(folder.removeprefix("date="), []).append(info)
        stamps = {}
        for day, infos in files.items():
            if not any(i.base_name == PART_FILE for i in infos):
                continue  # deltas without a base: a day being replaced
            # Object stores keep whole seconds (S3's Last-Modified): a rewrite within the same second
            # would keep its stamp, so the sizes and the number of files join it.
            newest = max(i.mtime_ns or 0 for i in infos)
            stamp = str(newest) if self.storage.is_local and len(infos) == 1 else None
            stamps[day] = stamp or f"{newest}:{len(infos)}:{sum(i.size or 0 for i in infos)}"
        return dict(sorted(stamps.items()))

    def read_days(
        self, days: Iterable[str] | None = None, columns: list[str] | None = None
    ) -> pa.Table | None:
        wanted = self.days() if days is None else list(days)
        parts = [t for d in wanted if (t := self.read(d, columns)) is not None]
        return pa.concat_tables(parts, promote_options="default") if parts else None


def _with_generation(table_or_schema: Any, generation: int) -> Any:
    """A table or schema whose metadata names the base generation (the deltas that belong to it)."""
    if isinstance(table_or_schema, pa.Table):
        metadata = {**(table_or_schema.schema.metadata or {}), GENERATION: str(generation).encode()}
        return table_or_schema.replace_schema_metadata(metadata)
    return table_or_schema.with_metadata(
        {**(table_or_schema.metadata or {}), GENERATION: str(generation).encode()}
    )
