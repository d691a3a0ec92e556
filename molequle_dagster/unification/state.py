"""The incremental engine's state: which tables exist, how to build them, and how the engine reads them.

Tables (one set per entity; key columns in schemas.KEY_COLUMNS):

=============  ==========================  =========================================================
table          key                         rows
=============  ==========================  =========================================================
unified        unified_id                  the `unified` output (one row per live unified id)
links          source_id                   the `links` output (source_id, unified_id, matched_rule)
id_lineage     retired_id                  the `id_lineage` output (an id is retired at most once)
ids            unified_id                  every id ever issued (IDS_SCHEMA)
match_keys     source_id, rule             the match-key index (match_keys.py)
config         item                        what the state was built with: entity, id column, record
                                           columns and types, each rule (see `config_table`)
=============  ==========================  =========================================================

The engine reads the previous state only through `PreviousState`: `config()` (a handful of rows) and
`lookup(table, column, values)` = the rows of `table` whose `column` is in `values`. The lookups it makes
are on links.source_id, links.unified_id, match_keys.source_id, match_keys.key_hash, ids.unified_id and
unified.unified_id, each with values drawn from the affected clusters only. `TablesState` answers them
from in-memory tables (one vectorised scan of one column per lookup); a store with keyed tables can
answer the key-column lookups by key and the two others (links.unified_id, match_keys.key_hash) by a
scan of one narrow column or a secondary sort.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.unification.engine import UnificationResult, sorted_by_id
from molequle_dagster.unification.match_keys import key_hash_rows
from molequle_dagster.unification.schemas import (
    CONFIG_SCHEMA,
    IDS_SCHEMA,
    KEY_COLUMNS,
    LINEAGE_SCHEMA,
    Entity,
    links_schema,
    match_keys_schema,
    source_id_type,
    unified_base_schema,
)

if TYPE_CHECKING:  # types only: settings.py may import this package at load time
    from molequle_dagster.unification.rules import MatchRule

# Columns the engine needs in each table it reads (others, such as representatives, pass through).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "unified": tuple(unified_base_schema().names),
    "links": ("source_id", "unified_id", "matched_rule"),
    "ids": tuple(IDS_SCHEMA.names),
    "match_keys": ("source_id", "rule", "key_hash"),
    "config": tuple(CONFIG_SCHEMA.names),
}


class RebuildRequired(ValueError):
    """The stored state was built with other rules, columns or entity: run `unify()` over the full table
    and store `state_tables()` of its result instead of an incremental run."""


class PreviousState(Protocol):
    def config(self) -> pa.Table:
        """The whole `config` table (empty for a state that was never built)."""
        ...

    def lookup(self, table: str, column: str, values: pa.Array) -> pa.Table:
        """Every row (all columns) of state table `table` whose `column` is one of `values`."""
        ...


class TablesState:
    """`PreviousState` over in-memory Arrow tables (e.g. read whole from the lake, or kept by a benchmark)."""

    def __init__(self, tables: Mapping[str, pa.Table]) -> None:
        missing = [name for name in REQUIRED_COLUMNS if name not in tables]
        if missing:
            raise ValueError(
                f"previous state: missing tables {missing}; expected {', '.join(REQUIRED_COLUMNS)} "
                "(build them with state_tables() or empty_state_tables())"
            )
        for name, columns in REQUIRED_COLUMNS.items():
            absent = [c for c in columns if c not in tables[name].column_names]
            if absent:
                raise ValueError(f"previous state: table {name!r} lacks columns {absent}")
        self._tables = dict(tables)

    def config(self) -> pa.Table:
        return self._tables["config"]

    def lookup(self, table: str, column: str, values: pa.Array) -> pa.Table:
        rows = self._tables[table]
        if rows.num_rows == 0 or len(values) == 0:
            return rows.slice(0, 0)
        values = pc.cast(values, rows.schema.field(column).type)
        return rows.filter(pc.is_in(rows[column], value_set=values))


# --- config ------------------------------------------------------------------------------------------
def config_table(entity: Entity, id_column: str, rules: Sequence[MatchRule], schema: pa.Schema) -> pa.Table:
    """What a state depends on, one item per row; any difference means the state must be rebuilt."""
    columns = sorted([field.name, str(field.type)] for field in schema)
    items = {"entity": entity, "id_column": id_column, "columns": json.dumps(columns)}
    for position, rule in enumerate(rules):
        keys = [{"field": key.field, "normalize": list(key.normalize)} for key in rule.keys]
        items[f"rule[{position}]"] = json.dumps({"name": rule.name, "keys": keys})
    return pa.table({"item": list(items), "value": list(items.values())}, schema=CONFIG_SCHEMA)


def check_config(stored: pa.Table, expected: pa.Table) -> bool:
    """True for a fresh (empty) state; raises RebuildRequired naming the first item that differs."""
    have = dict(zip(stored["item"].to_pylist(), stored["value"].to_pylist(), strict=True))
    if not have:
        return True
    want = dict(zip(expected["item"].to_pylist(), expected["value"].to_pylist(), strict=True))
    if have.get("entity") != want["entity"]:
        raise RebuildRequired(f"previous: state belongs to {have.get('entity')!r}, not {want['entity']!r}")
    for item in sorted(set(have) | set(want)):
        if have.get(item) != want.get(item):
            raise RebuildRequired(
                f"previous state: config item {item!r} was {have.get(item)!r} when the state was built, "
                f"now {want.get(item)!r}; rebuild it with unify() over the full table and state_tables()"
            )
    return False


# --- building a state --------------------------------------------------------------------------------
def state_tables(
    result: UnificationResult,
    records: pa.Table,
    *,
    id_column: str,
    rules: Sequence[MatchRule],
    entity: Entity,
) -> dict[str, pa.Table]:
    """Every table of the state after a full `unify()` run over `records` (normalises every record once)."""
    if result.links.num_rows != records.num_rows:
        raise ValueError(
            f"records: {records.num_rows} rows, but the result links {result.links.num_rows}; "
            "pass the records the result was computed from"
        )
    sorted_records, source_ids = sorted_by_id(records, id_column)
    return {
        "unified": result.unified,
        "links": result.links,
        "id_lineage": result.id_lineage,
        "ids": result.state.ids,
        "match_keys": key_hash_rows(sorted_records, source_ids, rules),
        "config": config_table(entity, id_column, rules, records.schema),
    }


def empty_state_tables(schema: pa.Schema, id_column: str) -> dict[str, pa.Table]:
    """A state that was never built, for records of `schema`: the first `unify_changes` then gets every
    record as changed (and equals a first `unify()` run)."""
    if id_column not in schema.names:
        raise ValueError(f"id_column: {id_column!r} is not a column of the schema; columns: {schema.names}")
    id_type = source_id_type(schema.field(id_column).type)
    representative = [field for field in schema if field.name != id_column]
    tables = {
        "unified": pa.schema([*unified_base_schema(), *representative]).empty_table(),
        "links": links_schema(id_type).empty_table(),
        "id_lineage": LINEAGE_SCHEMA.empty_table(),
        "ids": IDS_SCHEMA.empty_table(),
        "match_keys": match_keys_schema(id_type).empty_table(),
        "config": CONFIG_SCHEMA.empty_table(),
    }
    assert set(tables) == set(KEY_COLUMNS)
    return tables
