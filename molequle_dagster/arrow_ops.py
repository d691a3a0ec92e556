"""Small Arrow operations the sync folds share (no Dagster, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TS = pa.timestamp("s", tz="UTC")
SYNCED_AT = "_synced_at"


def dedupe_latest(table: pa.Table, key: str | Sequence[str], order_by: str = SYNCED_AT) -> pa.Table:
    """Keep one row per `key`: the one with the greatest `order_by` (the last occurrence on ties)."""
    keys = [key] if isinstance(key, str) else list(key)
    if table.num_rows == 0:
        return table
    ranked = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    ranked = ranked.sort_by(
        [*((k, "ascending") for k in keys), (order_by, "ascending"), ("__row", "ascending")]
    )
    n = ranked.num_rows
    differs = None
    for k in keys:
        column = ranked[k].combine_chunks()
        step = pc.fill_null(pc.not_equal(column.slice(0, n - 1), column.slice(1)), True)
        differs = step if differs is None else pc.or_(differs, step)
    last = pa.concat_arrays([differs, pa.array([True])]) if differs is not None else pa.array([True])
    return ranked.filter(last).drop_columns(["__row"])


def stamp(table: pa.Table, synced_at: datetime, column: str = SYNCED_AT) -> pa.Table:
    """Set a second-precision UTC timestamp column to `synced_at` on every row."""
    seconds = np.full(table.num_rows, int(synced_at.timestamp()), dtype="datetime64[s]")
    values = pa.array(seconds, pa.timestamp("s")).cast(TS)
    if column in table.column_names:
        table = table.drop_columns([column])
    return table.append_column(column, values)


def or_empty(table: pa.Table | None, schema: pa.Schema) -> pa.Table:
    return table if table is not None else schema.empty_table()


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns (missing ones null), cast to its types."""
    columns = [
        table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


INT64 = pa.int64()


def ids(values: Any, type_: pa.DataType = INT64) -> pa.Array:
    """A flat Arrow array of distinct, non-null ids from an array, chunked array or list."""
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else pa.array(values, type_)
    return pc.unique(array.cast(type_).drop_null())


def key_table(name: str, values: Any, type_: pa.DataType = INT64) -> pa.Table:
    return pa.table({name: ids(values, type_)})


def is_in(column: pa.ChunkedArray | pa.Array, values: pa.Array) -> pa.ChunkedArray | pa.Array:
    return pc.fill_null(pc.is_in(column, value_set=values.cast(column.type)), False)


def max_time(table: pa.Table | None, column: str = SYNCED_AT) -> datetime | None:
    if table is None or table.num_rows == 0 or column not in table.column_names:
        return None
    return pc.max(table[column]).as_py()
