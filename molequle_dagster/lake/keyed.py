"""Versioned keyed tables: merge-on-read current tables whose writes follow the change, with a change feed.

Layout under `<lake>/<table>/`:

    _manifest.json            the current version: base files, delta files, row count, meta (cursors)
    _versions/<v>.json        every retained version's manifest (the change feed reads them)
    data/<v>-<id>.parquet     immutable data files: bases, and one delta file per commit

A commit writes one small delta file (the upserted rows, and the deleted keys flagged `__deleted`), then
the version manifest, then moves the new `_manifest.json` over the old one. Readers read the manifest
and merge base + deltas (the newest row per key wins; deleted keys drop out), so a reader always sees
one consistent version, and a crash anywhere leaves the previous version intact (orphan files are
vacuumed later). When the deltas outgrow a share of the base, a compaction folds them into a new base;
over time a table is therefore rewritten at a rate proportional to its changes, not its size.

Why not Delta Lake (deltalake) or Iceberg: their merges are copy-on-write in the Python writers
available here, so an upsert of 1,000 random ids rewrites nearly every file of a 1M-row table; and on
object storage they need a lock provider or conditional writes for safe concurrent commits. Our
commits are serialised by a named lock from the coordination store, and merge-on-read keeps each
tick's write proportional to what changed.

`changes_since(version)` returns the rows upserted and the keys deleted after `version`, so a
downstream table (unification, accounts, person links) processes only what changed. Delta files are
retained for `retain_s` (7 days) after they leave the current version; a consumer further behind than
that gets None and rebuilds from a full read.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from molequle_dagster.lake.storage import LakeError, Storage, restore_seconds

DELETED = "__deleted"
SEQ = "__seq"
MANIFEST = "_manifest.json"
VERSIONS = "_versions"
DATA = "data"
FORMAT = "molequle-keyed/1"

Locks = Callable[[str], AbstractContextManager[None]]


class VersionConflict(LakeError):
    """The table moved on since the snapshot a writer computed its change from."""


@dataclass(frozen=True)
class FileRef:
    path: str  # relative to the table directory
    rows: int

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileRef:
        return cls(str(data["path"]), int(data["rows"]))


@dataclass(frozen=True)
class Manifest:
    version: int = 0
    key: tuple[str, ...] = ()
    base: tuple[FileRef, ...] = ()
    deltas: tuple[FileRef, ...] = ()
    added: tuple[FileRef, ...] = ()  # this version's own delta (empty for compactions and meta-only)
    rows: int = 0
    meta: Mapping[str, Any] = field(default_factory=dict)
    committed_at: str = ""
    compacted: bool = False
    schema_b64: str = ""  # the table's columns, so an empty table still has them

    @property
    def schema(self) -> pa.Schema | None:
        if not self.schema_b64:
            return None
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(self.schema_b64)))

    @property
    def delta_rows(self) -> int:
        return sum(f.rows for f in self.deltas)

    @property
    def base_rows(self) -> int:
        return sum(f.rows for f in self.base)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "key": list(self.key),
            "base": [f.to_json() for f in self.base],
            "deltas": [f.to_json() for f in self.deltas],
            "added": [f.to_json() for f in self.added],
            "rows": self.rows,
            "meta": dict(self.meta),
            "committed_at": self.committed_at,
            "compacted": self.compacted,
            "schema": self.schema_b64,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> Manifest:
        if data.get("format") != FORMAT:
            raise LakeError(f"{where}: format {data.get('format')!r} is not {FORMAT!r}")
        return cls(
            version=int(data["version"]),
            key=tuple(data["key"]),
            base=tuple(FileRef.from_json(f) for f in data["base"]),
            deltas=tuple(FileRef.from_json(f) for f in data["deltas"]),
            added=tuple(FileRef.from_json(f) for f in data.get("added", [])),
            rows=int(data["rows"]),
            meta=dict(data.get("meta") or {}),
            committed_at=str(data.get("committed_at", "")),
            compacted=bool(data.get("compacted", False)),
            schema_b64=str(data.get("schema", "")),
        )


@dataclass(frozen=True)
class Changes:
    """What changed between two versions: the newest upserted rows, and the keys deleted."""

    upserts: pa.Table
    deleted: pa.Table  # key columns only
    from_version: int
    to_version: int

    @property
    def empty(self) -> bool:
        return self.upserts.num_rows == 0 and self.deleted.num_rows == 0


@dataclass(frozen=True)
class Compaction:
    max_delta_share: float = 0.10  # compact when the deltas hold this share of the base's rows …
    min_rows: int = 20_000  # … counting a small base as this many rows (tiny tables compact rarely)
    max_deltas: int = 200  # … or when this many delta files pile up
    rows_per_file: int = 1_000_000
    retain_s: float = 7 * 86400.0  # change-feed files kept this long after they left the version
    grace_s: float = 3600.0  # unreferenced files younger than this may still be read by someone


class KeyedTable:
    def __init__(
        self,
        storage: Storage,
        name: str,
        key: Sequence[str],
        locks: Locks,
        compaction: Compaction | None = None,
    ) -> None:
        if not key:
            raise LakeError(f"table {name!r}: expected at least one key column")
        self.storage = storage
        self.name = name
        self.key = tuple(key)
        self._locks = locks
        self.compaction = compaction or Compaction()

    # --- paths ---------------------------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return self.storage.path(self.name, *parts)

    def _version_path(self, version: int) -> str:
        return self._path(VERSIONS, f"{version:012d}.json")

    @property
    def location(self) -> str:
        return self.storage.location(self.name)

    # --- manifests -----------------------------------------------------------------------------------
    def manifest(self) -> Manifest:
        """The current version (version 0, empty, before the first commit)."""
        data = self.storage.read_json(self._path(MANIFEST))
        if data is None:
            return Manifest(key=self.key)
        manifest = Manifest.from_json(data, self._path(MANIFEST))
        if manifest.key != self.key:
            raise LakeError(
                f"table {self.name!r}: stored key {list(manifest.key)} differs from the expected "
                f"{list(self.key)}; a table's key cannot change"
            )
        return manifest

    def manifest_at(self, version: int) -> Manifest:
        """The manifest of an earlier version (kept for `Compaction.retain_s`)."""
        if version == 0:
            return Manifest(key=self.key)
        data = self.storage.read_json(self._version_path(version))
        if data is None:
            raise LakeError(f"table {self.name!r}: version {version} is no longer kept")
        return Manifest.from_json(data, self._version_path(version))

    def exists(self) -> bool:
        return self.manifest().version > 0

    @property
    def version(self) -> int:
        return self.manifest().version

    @property
    def meta(self) -> Mapping[str, Any]:
        return self.manifest().meta

    # --- reads ---------------------------------------------------------------------------------------
    def read(self, columns: Sequence[str] | None = None, manifest: Manifest | None = None) -> pa.Table:
        """The current rows (or those of `manifest`), merged from the base and the deltas."""
        manifest = manifest or self.manifest()
        wanted = None if columns is None else list(dict.fromkeys([*self.key, *columns]))
        base = self._read_files(manifest.base, wanted)
        if manifest.deltas:
            newest = _newest_per_key(self._read_files(manifest.deltas, wanted, flags=True), self.key)
            kept = newest.filter(pc.invert(newest[DELETED])).drop_columns([DELETED, SEQ])
            base = (
                kept
                if base is None
                else pa.concat_tables(
                    [_without_keys(base, newest, self.key), kept], promote_options="default"
                )
            )
        base = _with_known_columns(base, manifest.schema, self.key)
        return base if columns is None else base.select([c for c in columns if c in base.column_names])

    def schema(self) -> pa.Schema | None:
        """The columns of the current version (from the files' footers, no rows read)."""
        manifest = self.manifest()
        schemas = [
            pq.read_schema(self._path(f.path), filesystem=self.storage.fs)
            for f in (*manifest.base, *manifest.deltas)
        ]
        if not schemas:
            return None
        merged = pa.unify_schemas(schemas, promote_options="default")
        kept = [f for f in merged if f.name not in (DELETED, SEQ)]
        return restore_seconds(pa.schema(kept).empty_table()).schema

    def read_or_none(self, columns: Sequence[str] | None = None) -> pa.Table | None:
        manifest = self.manifest()
        return None if manifest.version == 0 else self.read(columns, manifest)

    def lookup(self, keys: pa.Table, columns: Sequence[str] | None = None) -> pa.Table | None:
        """The current rows for the given keys (a table of the key columns); absent keys are skipped.
        None before the first commit."""
        table = self.read_or_none(columns)
        if table is None or keys.num_rows == 0:
            return table if table is None else table.slice(0, 0)
        return _with_keys(table, keys, self.key)

    def _read_files(
        self, files: Sequence[FileRef], columns: list[str] | None, flags: bool = False
    ) -> pa.Table | None:
        """The files' rows concatenated (None for no files); with `flags`, each row carries its
        `__deleted` flag and the file's position `__seq` (later files win a merge)."""
        parts = []
        for seq, ref in enumerate(files):
            wanted = None if columns is None else [*columns, DELETED]
            table = self.storage.read_parquet(self._path(ref.path), wanted)
            if flags:
                if DELETED not in table.column_names:
                    table = table.append_column(DELETED, pa.repeat(pa.scalar(False), table.num_rows))
                table = table.append_column(SEQ, pa.repeat(pa.scalar(seq, pa.int32()), table.num_rows))
            elif DELETED in table.column_names:
                table = table.drop_columns([DELETED])
            parts.append(table)
        return pa.concat_tables(parts, promote_options="default") if parts else None

    # --- change feed ---------------------------------------------------------------------------------
    def changes_since(self, version: int, columns: Sequence[str] | None = None) -> Changes | None:
        """Rows upserted and keys deleted after `version`; None when the history is no longer kept
        (or the table was rebuilt), so the caller must start over from `read()`."""
        current = self.manifest()
        if version == current.version:
            return self._no_changes(version, version)
        if version > current.version or version < 0:
            return None
        files: list[FileRef] = []
        for v in range(version + 1, current.version + 1):
            data = self.storage.read_json(self._version_path(v))
            if data is None:
                return None
            step = Manifest.from_json(data, self._version_path(v))
            if step.meta.get("rebuilt_at_version") == v:
                return None
            files.extend(step.added)
        wanted = None if columns is None else list(dict.fromkeys([*self.key, *columns]))
        read = self._read_files(files, wanted, flags=True)
        if read is None:
            return self._no_changes(version, current.version)
        rows = _newest_per_key(read, self.key)
        deleted = rows.filter(rows[DELETED]).select(list(self.key))
        upserts = rows.filter(pc.invert(rows[DELETED])).drop_columns([DELETED, SEQ])
        if columns is not None:
            upserts = upserts.select([c for c in columns if c in upserts.column_names])
        return Changes(upserts, deleted, version, current.version)

    def _no_changes(self, from_version: int, to_version: int) -> Changes:
        empty = pa.table({k: pa.array([], pa.null()) for k in self.key})
        return Changes(empty, empty, from_version, to_version)

    # --- writes --------------------------------------------------------------------------------------
    @contextmanager
    def _commit_lock(self) -> Iterator[None]:
        """The table's commit lock; once held, temp files of a writer killed mid-commit are swept: every
        write of a keyed table happens under this lock, so no writer of it can be alive (any age goes)."""
        with self._locks(f"lake:{self.name}"):
            self.storage.sweep_table(self.name, older_than_s=0.0)
            yield

    def commit(
        self,
        upserts: pa.Table | None = None,
        deletes: pa.Table | None = None,
        meta: Mapping[str, Any] | None = None,
        *,
        expect_version: int | None = None,
        now: datetime | None = None,
    ) -> Manifest:
        """Apply deletes, then upserts (whole rows; the newest per key wins), and merge `meta` into the
        table's meta, as one new version. Nothing to change means no new version."""
        with self._commit_lock():
            current = self.manifest()
            if expect_version is not None and current.version != expect_version:
                raise VersionConflict(
                    f"table {self.name!r} is at version {current.version}, expected {expect_version}"
                )
            schema_b64 = _schema_b64(upserts) if upserts is not None else current.schema_b64
            upserts = _dedupe_last(upserts, self.key) if upserts is not None and upserts.num_rows else None
            deletes = _distinct_keys(deletes, self.key) if deletes is not None and deletes.num_rows else None
            merged_meta = {**current.meta, **(meta or {})}
            if schema_b64 != current.schema_b64 and current.schema_b64 and upserts is None:
                schema_b64 = current.schema_b64  # an empty upsert never narrows the known columns
            unchanged = upserts is None and deletes is None and merged_meta == dict(current.meta)
            if unchanged and schema_b64 == current.schema_b64:
                return current
            version = current.version + 1
            added: tuple[FileRef, ...] = ()
            rows = current.rows
            if upserts is not None or deletes is not None:
                present = self._present(current, upserts, deletes)
                rows = current.rows - present["deleted"] + present["inserted"]
                delta = _delta_table(upserts, deletes, self.key)
                ref = FileRef(f"{DATA}/{version:012d}-{uuid.uuid4().hex[:12]}.parquet", delta.num_rows)
                self.storage.write_parquet(self._path(ref.path), delta)
                added = (ref,)
            manifest = replace(
                current,
                version=version,
                key=self.key,
                deltas=current.deltas + added,
                added=added,
                rows=rows,
                meta=merged_meta,
                committed_at=_stamp(now),
                compacted=False,
                schema_b64=_merged_schema_b64(current.schema_b64, schema_b64),
            )
            self._publish(manifest)
            if self._needs_compaction(manifest):
                manifest = self._compact(manifest, now)
            return manifest

    def rebuild(self, table: pa.Table, meta: Mapping[str, Any] | None = None) -> Manifest:
        """Replace every row (a first load or a full refresh); change-feed consumers start over."""
        with self._commit_lock():
            current = self.manifest()
            version = current.version + 1
            table = _dedupe_last(table, self.key).sort_by([(k, "ascending") for k in self.key])
            base = self._write_base(table, version)
            manifest = Manifest(
                version=version,
                key=self.key,
                base=base,
                rows=table.num_rows,
                meta={**current.meta, **(meta or {}), "rebuilt_at_version": version},
                committed_at=_stamp(None),
                compacted=True,
                schema_b64=_schema_b64(table),
            )
            self._publish(manifest)
            self.vacuum()
            return manifest

    def rebuild_from(
        self, tables: Iterable[pa.Table], schema: pa.Schema, meta: Mapping[str, Any] | None = None
    ) -> Manifest:
        """`rebuild` from a stream (e.g. a bulk export's batches) without holding it in memory: the rows go
        straight into one base file. The stream's keys must be unique (checked before anything is
        published; a stream that fails leaves the previous version)."""
        with self._commit_lock():
            current = self.manifest()
            version = current.version + 1
            path = f"{DATA}/{version:012d}-base-{uuid.uuid4().hex[:12]}.parquet"
            rows = 0
            with self.storage.parquet_writer(self._path(path), schema) as sink:
                for table in tables:
                    part = table.select(schema.names).cast(schema)
                    sink.write_table(part)
                    rows += part.num_rows
            manifest = Manifest(
                version=version,
                key=self.key,
                base=(FileRef(path, rows),),
                rows=rows,
                meta={**current.meta, **(meta or {}), "rebuilt_at_version": version},
                committed_at=_stamp(None),
                compacted=True,
                schema_b64=_schema_b64(schema.empty_table()),
            )
            distinct = _dedupe_last(self.read(list(self.key), manifest), self.key).num_rows
            if distinct != rows:
                raise LakeError(
                    f"table {self.name!r}: the rebuild stream has {rows - distinct} duplicate keys"
                )
            self._publish(manifest)
            self.vacuum()
            return manifest

    def commit_contents(
        self, table: pa.Table, meta: Mapping[str, Any] | None = None, ignore: Sequence[str] = ()
    ) -> Manifest:
        """Make `table` the table's whole content, writing only what differs (the changed rows and the
        keys that are gone), so consumers of the change feed see just the real changes."""
        current = self.read_or_none()
        upserts = changed_rows(current, _dedupe_last(table, self.key), self.key, ignore)
        deletes = missing_keys(current, table, self.key)
        return self.commit(upserts if upserts.num_rows else None, deletes, meta)

    def _present(
        self, current: Manifest, upserts: pa.Table | None, deletes: pa.Table | None
    ) -> dict[str, int]:
        """How many deleted keys existed, and how many upserted keys are new (exact row counts)."""
        keys = self.read(list(self.key), current) if current.version else None
        deleted = 0
        existing = keys
        if deletes is not None and keys is not None:
            hit = _with_keys(keys, deletes, self.key)
            deleted = hit.num_rows
            existing = _without_keys(keys, deletes, self.key)
        inserted = upserts.num_rows if upserts is not None else 0
        if upserts is not None and existing is not None and existing.num_rows:
            inserted -= _with_keys(upserts.select(list(self.key)), existing, self.key).num_rows
        return {"deleted": deleted, "inserted": inserted}

    def _publish(self, manifest: Manifest) -> None:
        self.storage.write_json(self._version_path(manifest.version), manifest.to_json())
        self.storage.write_json(self._path(MANIFEST), manifest.to_json())

    # --- compaction and vacuum -------------------------------------------------------------------------
    def _needs_compaction(self, manifest: Manifest) -> bool:
        rule = self.compaction
        threshold = rule.max_delta_share * max(manifest.base_rows, rule.min_rows)
        return manifest.delta_rows > threshold or len(manifest.deltas) > rule.max_deltas

    def compact(self) -> Manifest:
        with self._commit_lock():
            return self._compact(self.manifest(), None)

    def _compact(self, manifest: Manifest, now: datetime | None) -> Manifest:
        if not manifest.deltas:
            return manifest
        table = self.read(manifest=manifest).sort_by([(k, "ascending") for k in self.key])
        version = manifest.version + 1
        compacted = replace(
            manifest,
            version=version,
            base=self._write_base(table, version),
            deltas=(),
            added=(),
            rows=table.num_rows,
            committed_at=_stamp(now),
            compacted=True,
        )
        self._publish(compacted)
        self.vacuum()
        return compacted

    def _write_base(self, table: pa.Table, version: int) -> tuple[FileRef, ...]:
        refs = []
        step = self.compaction.rows_per_file
        for offset in range(0, max(table.num_rows, 1), step):
            part = table.slice(offset, step)
            ref = FileRef(f"{DATA}/{version:012d}-base-{uuid.uuid4().hex[:12]}.parquet", part.num_rows)
            self.storage.write_parquet(self._path(ref.path), part)
            refs.append(ref)
        return tuple(refs)

    def vacuum(self, now: float | None = None) -> list[str]:
        """Delete version manifests older than the retention (never the current one), and data files that
        no version needs: a file stays while a version committed within the grace period references it
        (a reader may still be reading that version) or while it is a retained version's change."""
        clock = now if now is not None else datetime.now(UTC).timestamp()
        current = self.manifest()
        keep: set[str] = {f.path for f in (*current.base, *current.deltas)}
        removed = []
        for info in self.storage.list(self._path(VERSIONS)):
            if info.type != pafs.FileType.File or not info.base_name.endswith(".json"):
                continue
            data = self.storage.read_json(info.path)
            if data is None:
                continue
            step = Manifest.from_json(data, info.path)
            committed = datetime.fromisoformat(step.committed_at).timestamp() if step.committed_at else 0.0
            if step.version < current.version and committed < clock - self.compaction.retain_s:
                self.storage.delete(info.path)
                removed.append(info.path)
                continue
            keep |= {f.path for f in step.added}
            if committed >= clock - self.compaction.grace_s:
                keep |= {f.path for f in (*step.base, *step.deltas)}
        for info in self.storage.list(self._path(DATA)):
            relative = f"{DATA}/{info.base_name}"
            young = info.mtime is not None and info.mtime.timestamp() > clock - self.compaction.grace_s
            if info.type == pafs.FileType.File and relative not in keep and not young:
                self.storage.delete(info.path)
                removed.append(info.path)
        return removed


# --- Arrow helpers --------------------------------------------------------------------------------------
def _with_known_columns(table: pa.Table | None, schema: pa.Schema | None, key: Sequence[str]) -> pa.Table:
    """Every column the table is known to have, even when the files read hold fewer (deletes carry only
    keys; an empty table has no file)."""
    if table is None:
        return (
            schema.empty_table()
            if schema is not None
            else pa.table({k: pa.array([], pa.null()) for k in key})
        )
    if schema is None:
        return table
    for f in schema:
        if f.name not in table.column_names:
            table = table.append_column(f.name, pa.nulls(table.num_rows, f.type))
    return table


def _schema_b64(table: pa.Table) -> str:
    fields = [f for f in table.schema if f.name not in (DELETED, SEQ)]
    return base64.b64encode(pa.schema(fields).serialize().to_pybytes()).decode("ascii")


def _merged_schema_b64(old: str, new: str) -> str:
    """The union of the known columns (a commit may bring new ones; it never drops any)."""
    if not old or old == new:
        return new or old
    schemas = [pa.ipc.read_schema(pa.py_buffer(base64.b64decode(b))) for b in (old, new) if b]
    merged = pa.unify_schemas(schemas, promote_options="default")
    return base64.b64encode(merged.serialize().to_pybytes()).decode("ascii")


def _stamp(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).isoformat()


def _dedupe_last(table: pa.Table, key: Sequence[str]) -> pa.Table:
    """One row per key: the last occurrence."""
    if table.num_rows <= 1:
        return table
    indexed = table.append_column(SEQ, pa.array(range(table.num_rows), pa.int64()))
    return _newest_per_key(indexed, key).drop_columns([SEQ])


def _newest_per_key(table: pa.Table, key: Sequence[str]) -> pa.Table:
    """Keep the row with the greatest `__seq` per key (later files, and later rows, win)."""
    if table.num_rows == 0:
        return table
    if SEQ not in table.column_names:
        raise LakeError("internal: rows to merge carry no sequence column")
    row = pa.array(range(table.num_rows), pa.int64())
    ranked = table.append_column("__row", row).sort_by(
        [*((k, "ascending") for k in key), (SEQ, "ascending"), ("__row", "ascending")]
    )
    last = _last_of_runs(ranked, key)
    return ranked.filter(last).drop_columns(["__row"])


def _last_of_runs(sorted_table: pa.Table, key: Sequence[str]) -> pa.Array:
    n = sorted_table.num_rows
    if n == 1:
        return pa.array([True])
    differs = None
    for k in key:
        column = sorted_table[k].combine_chunks()
        step = pc.fill_null(pc.not_equal(column.slice(0, n - 1), column.slice(1)), True)
        both_null = pc.and_(pc.is_null(column.slice(0, n - 1)), pc.is_null(column.slice(1)))
        step = pc.and_(step, pc.invert(both_null))
        differs = step if differs is None else pc.or_(differs, step)
    assert differs is not None
    return pa.concat_arrays([differs, pa.array([True])])


def _distinct_keys(table: pa.Table, key: Sequence[str]) -> pa.Table:
    keys = table.select(list(key))
    return _dedupe_last(keys, key)


def _single_key_set(keys: pa.Table, key: Sequence[str]) -> pa.Array | None:
    return keys[key[0]].combine_chunks() if len(key) == 1 else None


def _with_keys(table: pa.Table, keys: pa.Table, key: Sequence[str]) -> pa.Table:
    single = _single_key_set(keys, key)
    if single is not None:
        return table.filter(pc.is_in(table[key[0]], value_set=single.cast(table.schema.field(key[0]).type)))
    return table.join(keys.select(list(key)), list(key), join_type="left semi")


def _without_keys(table: pa.Table, keys: pa.Table, key: Sequence[str]) -> pa.Table:
    if table.num_rows == 0 or keys.num_rows == 0:
        return table
    single = _single_key_set(keys, key)
    if single is not None:
        typed = single.cast(table.schema.field(key[0]).type)
        return table.filter(pc.invert(pc.is_in(table[key[0]], value_set=typed)))
    return table.join(keys.select(list(key)), list(key), join_type="left anti")


def _delta_table(upserts: pa.Table | None, deletes: pa.Table | None, key: Sequence[str]) -> pa.Table:
    parts = []
    if deletes is not None:
        parts.append(deletes.append_column(DELETED, pa.repeat(pa.scalar(True), deletes.num_rows)))
    if upserts is not None:
        parts.append(upserts.append_column(DELETED, pa.repeat(pa.scalar(False), upserts.num_rows)))
    return pa.concat_tables(parts, promote_options="default")


def iter_batches(table: pa.Table, size: int) -> Iterator[pa.Table]:
    for offset in range(0, table.num_rows, size):
        yield table.slice(offset, size)


def changed_rows(
    current: pa.Table | None, fresh: pa.Table, key: Sequence[str], ignore: Sequence[str] = ()
) -> pa.Table:
    """Rows of `fresh` whose key is new or whose values differ from `current` (columns in `ignore`, such
    as a fetch time, do not count): what a commit needs to write."""
    if current is None or current.num_rows == 0 or fresh.num_rows == 0:
        return fresh
    key = list(key)
    compare = [
        c for c in fresh.column_names if c not in key and c not in ignore and c in current.column_names
    ]
    renamed = [f"__old_{c}" for c in compare]
    ours = current.select([*key, *compare]).rename_columns([*key, *renamed])
    joined = fresh.append_column("__row", pa.array(range(fresh.num_rows), pa.int64())).join(
        ours.append_column("__present", pa.repeat(pa.scalar(True), ours.num_rows)),
        key,
        join_type="left outer",
    )
    differs = pc.is_null(joined["__present"])
    for c, old in zip(compare, renamed, strict=True):
        new_values, old_values = joined[c], joined[old]
        if old_values.type != new_values.type:
            old_values = old_values.cast(new_values.type)
        same = pc.fill_null(pc.equal(new_values, old_values), False)
        both_null = pc.and_(pc.is_null(new_values), pc.is_null(old_values))
        differs = pc.or_(differs, pc.invert(pc.or_(same, both_null)))
    rows = joined.filter(differs).sort_by("__row")["__row"]
    return fresh.take(rows)


def missing_keys(current: pa.Table | None, fresh: pa.Table, key: Sequence[str]) -> pa.Table | None:
    """Keys of `current` that `fresh` no longer has."""
    if current is None or current.num_rows == 0:
        return None
    gone = (
        _without_keys(current.select(list(key)), fresh.select(list(key)), key)
        if fresh.num_rows
        else current.select(list(key))
    )
    return gone if gone.num_rows else None
