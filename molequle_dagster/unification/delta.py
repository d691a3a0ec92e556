"""Changes to keyed tables: upserted rows and deleted keys, how to compute them and how to apply them.

A keyed table has no row order; a row is identified by its key columns (schemas.KEY_COLUMNS). Applying a
`TableDelta` removes every row whose key is deleted or upserted, then adds the upserted rows. Deletes and
upserts never share a key. `apply_delta` is the reference (tests, benchmark); the lake applies the same
deltas with merge-on-read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.unification.schemas import KEY_COLUMNS

_OLD = "\x00old:"  # prefix of the previous values while comparing rows (cannot clash with a column)


@dataclass(frozen=True)
class TableDelta:
    upserts: pa.Table  # whole rows
    deletes: pa.Table  # key columns only

    @property
    def is_empty(self) -> bool:
        return self.upserts.num_rows == 0 and self.deletes.num_rows == 0


@dataclass(frozen=True)
class UnificationChanges:
    """What one incremental run changed: a delta per table (names and keys: schemas.KEY_COLUMNS)."""

    deltas: dict[str, TableDelta]
    affected_records: int  # records reclustered (changed ones plus the rest of their clusters)
    affected_clusters: int  # previous clusters reclustered

    @property
    def is_empty(self) -> bool:
        return all(delta.is_empty for delta in self.deltas.values())


def _ascending(keys: Sequence[str]) -> list[tuple[str, str]]:
    return [(key, "ascending") for key in keys]


def _same(new: pa.ChunkedArray, old: pa.ChunkedArray) -> np.ndarray:
    """Per row: equal values, or both null."""
    both_null = pc.and_(new.is_null(), old.is_null())
    try:
        equal = pc.fill_null(pc.equal(new, old), False)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # e.g. nested types: compare as Python
        equal = pa.array([a == b for a, b in zip(new.to_pylist(), old.to_pylist(), strict=True)])
    return pc.or_(both_null, equal).to_numpy(zero_copy_only=False)


def changed_rows(new: pa.Table, old: pa.Table, key_columns: Sequence[str]) -> pa.Table:
    """Rows of `new` whose key is not in `old` or whose other columns differ; sorted by key.

    `old` may hold more rows than `new` (they are ignored) and must have unique keys.
    """
    keys = list(key_columns)
    if new.num_rows == 0 or old.num_rows == 0:
        return new.sort_by(_ascending(keys))
    values = [name for name in new.column_names if name not in keys]
    missing = [name for name in values if name not in old.column_names]
    if missing:  # the previous rows lack a column: every row is new in its shape
        return new.sort_by(_ascending(keys))
    old = old.select(keys + values).cast(pa.schema([new.schema.field(n) for n in keys + values]))
    old = old.rename_columns(keys + [_OLD + name for name in values])
    old = old.append_column(_OLD, pa.repeat(pa.scalar(True), old.num_rows))
    joined = new.join(old, keys, join_type="left outer")
    differs = ~joined[_OLD].is_valid().to_numpy(zero_copy_only=False)  # no previous row
    for name in values:
        differs |= ~_same(joined[name], joined[_OLD + name])
    result = joined.filter(pa.array(differs)).select(new.column_names).cast(new.schema)
    return result.sort_by(_ascending(keys))


def missing_keys(old: pa.Table, new: pa.Table, key_columns: Sequence[str]) -> pa.Table:
    """Keys of `old` that `new` does not hold; sorted."""
    keys = list(key_columns)
    old_keys = old.select(keys)
    if old.num_rows and new.num_rows:
        new_keys = new.select(keys).cast(old_keys.schema)
        old_keys = old_keys.join(new_keys, keys, join_type="left anti")
    return old_keys.sort_by(_ascending(keys))


def apply_delta(table: pa.Table, delta: TableDelta, key_columns: Sequence[str]) -> pa.Table:
    """`table` after the delta, sorted by key; upserts are cast to the table's schema."""
    keys = list(key_columns)
    dropped = pa.concat_tables([delta.deletes.select(keys).cast(table.select(keys).schema),
                                delta.upserts.select(keys).cast(table.select(keys).schema)])
    kept = table
    if dropped.num_rows and table.num_rows:
        kept = table.join(dropped, keys, join_type="left anti").select(table.column_names)
    upserts = delta.upserts.select(table.column_names).cast(table.schema)
    return pa.concat_tables([kept, upserts]).sort_by(_ascending(keys))


def apply_changes(
    tables: Mapping[str, pa.Table], changes: UnificationChanges, only: Sequence[str] | None = None
) -> dict[str, pa.Table]:
    """Every table after `changes` (or only the tables named in `only`; the others stay as they are)."""
    chosen = set(changes.deltas if only is None else only)
    return {
        name: apply_delta(table, changes.deltas[name], KEY_COLUMNS[name]) if name in chosen else table
        for name, table in tables.items()
    }
