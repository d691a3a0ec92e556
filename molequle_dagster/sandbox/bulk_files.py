"""Render Bulk Extract files from Arrow record batches, the way Marketo writes them (docs/marketo.md §7).

Every cell is turned into text with pyarrow compute (no Python loop per row): timestamps as
`2017-09-08T16:38:14Z`, booleans `true`/`false` (or `0`/`1`), nulls as the literal `null`, and text quoted
RFC-4180 style only when it holds the delimiter, a quote, CR or LF. Rows are joined with compute too and
the resulting string buffer is written straight to the file while a SHA-256 runs over it.

`pyarrow.csv.write_csv` is not used: its `quoting_style="needed"` quotes *every* string cell (checked on
pyarrow 26), which real Marketo exports do not do, and `"none"` rejects cells that need quotes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NULL_TEXT = "null"
BooleanStyle = Literal["true_false", "zero_one"]


class RenderCancelled(Exception):
    """The job was cancelled (or the service closed) while its file was being written."""


@dataclass(frozen=True)
class FileFacts:
    """What the job object reports about a finished file."""

    number_of_records: int
    file_size: int
    file_checksum: str  # "sha256:<hex>"


def _needs_quotes_pattern(delimiter: str) -> str:
    return "[" + re.escape(delimiter) + '"\r\n]'


def quote_text(values: pa.Array, delimiter: str, quote_null: bool = False) -> pa.Array:
    """Wrap cells holding the delimiter, a quote, CR or LF in quotes, doubling inner quotes; with
    `quote_null`, the text `null` too (bare, it reads as an empty value)."""
    needs = pc.match_substring_regex(values, _needs_quotes_pattern(delimiter))
    if quote_null:
        needs = pc.or_kleene(needs, pc.equal(values, NULL_TEXT))
    if not pc.any(needs).as_py():
        return values
    doubled = pc.replace_substring(values, '"', '""')
    quoted = pc.binary_join_element_wise('"', doubled, '"', "")
    return pc.if_else(needs, quoted, values)


def timestamp_text(values: pa.Array) -> pa.Array:
    """`2017-09-08T16:38:14Z` (UTC). Casting is ~8x faster than pc.strftime with a time zone."""
    naive_utc = pc.cast(values, pa.timestamp("s"), safe=False)  # Arrow stores UTC: drops the zone only
    text = pc.replace_substring(pc.cast(naive_utc, pa.string()), " ", "T", max_replacements=1)
    return pc.binary_join_element_wise(text, "Z", "")


def render_cells(
    values: pa.Array, delimiter: str, booleans: BooleanStyle = "true_false", quote_null: bool = True
) -> pa.Array:
    """One column of any supported Arrow type -> its cells as text, nulls as `null` (`quote_null`: the
    text "null" as `"null"`, see BulkSettings.null_text)."""
    kind = values.type
    if pa.types.is_timestamp(kind):
        text = timestamp_text(values)
    elif pa.types.is_boolean(kind):
        text = pc.cast(pc.cast(values, pa.int8()) if booleans == "zero_one" else values, pa.string())
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
        text = pc.cast(values, pa.string())
    elif pa.types.is_null(kind):
        text = pa.nulls(len(values), pa.string())
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = quote_text(pc.cast(values, pa.string()), delimiter, quote_null)
    else:
        raise TypeError(f"bulk file column of type {kind} has no Marketo rendering")
    return pc.fill_null(text, NULL_TEXT)


def header_line(names: Sequence[str], delimiter: str) -> bytes:
    cells = quote_text(pa.array(list(names), pa.string()), delimiter).to_pylist()
    return (delimiter.join(cells) + "\n").encode("utf-8")


def _string_bytes(lines: pa.Array) -> memoryview:
    """The contiguous UTF-8 bytes of a string array (zero copy)."""
    _, offsets_buf, data_buf = lines.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
    if data_buf is None:
        return memoryview(b"")
    return memoryview(data_buf)[int(offsets[0]) : int(offsets[-1])]


def render_lines(
    batch: pa.RecordBatch,
    delimiter: str,
    booleans: Sequence[BooleanStyle] | None = None,
    quote_null: bool = True,
) -> pa.Array:
    """A batch -> one string per row, each ending in a newline."""
    styles = booleans or ["true_false"] * batch.num_columns
    cells = [
        render_cells(batch.column(i), delimiter, styles[i], quote_null) for i in range(batch.num_columns)
    ]
    joined = cells[0] if len(cells) == 1 else pc.binary_join_element_wise(*cells, delimiter)
    return pc.binary_join_element_wise(joined, "", "\n")


def write_export(
    path: Path,
    header: Sequence[str],
    batches: Iterable[pa.RecordBatch],
    delimiter: str,
    booleans: Sequence[BooleanStyle] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    quote_null: bool = True,
) -> FileFacts:
    """Stream the batches into `path` (header first) and return the job's file facts. `cancelled` is asked
    before each batch: when it says so, writing stops with `RenderCancelled`."""
    digest = hashlib.sha256()
    rows = 0
    size = 0
    with path.open("wb") as out:
        head = header_line(header, delimiter)
        out.write(head)
        digest.update(head)
        size += len(head)
        for batch in batches:
            if cancelled():
                raise RenderCancelled(str(path))
            if batch.num_rows == 0:
                continue
            chunk = _string_bytes(render_lines(batch, delimiter, booleans, quote_null))
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            rows += batch.num_rows
    return FileFacts(number_of_records=rows, file_size=size, file_checksum=f"sha256:{digest.hexdigest()}")
