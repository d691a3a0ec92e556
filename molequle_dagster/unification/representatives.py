"""Representative attribute values per cluster (the `unified` table's columns after the id and counts).

One value per column from the members with a non-null, non-empty value: ``createdAt`` the earliest,
``updatedAt`` the latest, any other column the value of the most recently updated member (ties, and
tables without ``updatedAt``, by the smallest source id). Rows must be in source-id order.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CREATED_COLUMN = "createdAt"
UPDATED_COLUMN = "updatedAt"


def _int_key(column: pa.ChunkedArray, missing: int) -> np.ndarray:
    values = pc.cast(column, pa.int64()) if not pa.types.is_integer(column.type) else column
    return pc.fill_null(values, missing).to_numpy().astype(np.int64)


def _first_valid(
    values: pa.ChunkedArray, comp_of_row: np.ndarray, order: np.ndarray, comp_count: int
) -> pa.Array:
    """Per component, the value of the first row in `order` that has a non-null, non-empty value."""
    valid = values.is_valid()
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        valid = pc.and_(valid, pc.not_equal(pc.fill_null(values, ""), ""))
    valid_np = (
        valid.to_numpy()
        if isinstance(valid, pa.Array)
        else valid.combine_chunks().to_numpy(zero_copy_only=False)
    )
    rows = order[valid_np[order]]
    comps = comp_of_row[rows]
    leads = np.ones(len(comps), dtype=bool)
    leads[1:] = comps[1:] != comps[:-1]
    pick = np.full(comp_count, -1, dtype=np.int64)
    pick[comps[leads]] = rows[leads]
    return pc.take(values, pa.array(pick, mask=pick < 0)).combine_chunks()


def representatives(
    records: pa.Table, id_column: str, comp_of_row: np.ndarray, comp_count: int
) -> dict[str, pa.Array]:
    """Column name -> one value per component, for every column but the id."""
    rank = np.arange(records.num_rows, dtype=np.int64)  # rows are in source-id order
    low = np.iinfo(np.int64).min // 2
    names = records.column_names
    updated = _int_key(records[UPDATED_COLUMN], low) if UPDATED_COLUMN in names else np.zeros_like(rank)
    latest_first = np.lexsort((rank, -updated, comp_of_row))
    values: dict[str, pa.Array] = {}
    for name in names:
        if name == id_column:
            continue
        if name == CREATED_COLUMN:
            earliest_first = np.lexsort((rank, _int_key(records[name], -low), comp_of_row))
            values[name] = _first_valid(records[name], comp_of_row, earliest_first, comp_count)
        else:
            values[name] = _first_valid(records[name], comp_of_row, latest_first, comp_count)
    return values
