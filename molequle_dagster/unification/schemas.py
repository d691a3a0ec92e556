"""Arrow schemas and key columns shared by the full and the incremental engine.

Every table the engine reads or writes is a *keyed* table: `KEY_COLUMNS` names the columns that identify a
row, so the lake can store it as upserts and deletes. Source ids are canonical: int64 when the records'
id column holds integers (people), string otherwise (accounts such as ``company:12``).
"""

from __future__ import annotations

from typing import Literal

import pyarrow as pa

Entity = Literal["person", "account"]
TIMESTAMP = pa.timestamp("us", tz="UTC")

IDS_SCHEMA = pa.schema(
    [
        ("unified_id", pa.string()),
        ("first_seen_at", TIMESTAMP),
        ("status", pa.string()),  # active | retired | vanished
        ("status_changed_at", TIMESTAMP),
    ]
)
LINEAGE_SCHEMA = pa.schema(
    [
        ("retired_id", pa.string()),
        ("survivor_id", pa.string()),
        ("reason", pa.string()),
        ("retired_at", TIMESTAMP),
    ]
)
MERGED_SOURCES_COLUMNS = ("loser_id", "winner_id")
CONFIG_SCHEMA = pa.schema([("item", pa.string()), ("value", pa.string())])

# Tables of one entity's unification, by role. `unified`, `links` and `id_lineage` are the outputs
# (UnificationResult); `ids`, `match_keys` and `config` exist only for the next run.
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "unified": ("unified_id",),
    "links": ("source_id",),
    "id_lineage": ("retired_id",),
    "ids": ("unified_id",),
    "match_keys": ("source_id", "rule"),
    "config": ("item",),
}


def source_id_type(id_type: pa.DataType) -> pa.DataType:
    """The canonical type source ids are compared and stored in."""
    return pa.int64() if pa.types.is_integer(id_type) else pa.string()


def links_schema(id_type: pa.DataType) -> pa.Schema:
    return pa.schema([("source_id", id_type), ("unified_id", pa.string()), ("matched_rule", pa.string())])


def match_keys_schema(id_type: pa.DataType) -> pa.Schema:
    # key_hash: 64-bit hash of (rule, normalized key values); see match_keys.py
    return pa.schema([("source_id", id_type), ("rule", pa.string()), ("key_hash", pa.int64())])


def unified_base_schema() -> pa.Schema:
    """The columns every `unified` table starts with; representative columns follow."""
    return pa.schema(
        [("unified_id", pa.string()), ("member_count", pa.int64()), ("first_seen_at", TIMESTAMP)]
    )
