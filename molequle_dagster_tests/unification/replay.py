"""Run the full and the incremental engine side by side over the same ticks, as the lake would.

`Replay` holds the source records, the cumulative Marketo merge map, the full engine's last result and
the incremental engine's tables (deltas applied with `apply_changes`). Each `tick` computes both and the
caller compares them with `assert_same_tables`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.settings import MatchRule
from molequle_dagster.unification import (
    KEY_COLUMNS,
    TablesState,
    UnificationChanges,
    UnificationResult,
    apply_changes,
    empty_state_tables,
    state_tables,
    unify,
    unify_changes,
)
from molequle_dagster.unification.schemas import Entity

from .builders import T0

Row = dict[str, Any]
TableOf = Callable[[list[Row]], pa.Table]


def sorted_by_key(name: str, table: pa.Table) -> pa.Table:
    return table.sort_by([(key, "ascending") for key in KEY_COLUMNS[name]])


def assert_same_tables(actual: dict[str, pa.Table], expected: dict[str, pa.Table]) -> None:
    assert set(actual) == set(expected)
    for name in expected:
        left, right = sorted_by_key(name, actual[name]), sorted_by_key(name, expected[name])
        assert left.schema.equals(right.schema), f"{name}: {left.schema} != {right.schema}"
        assert left.equals(right), f"{name}:\n{left.to_pylist()}\n!=\n{right.to_pylist()}"


@dataclass
class Replay:
    entity: Entity
    id_column: str
    rules: Sequence[MatchRule]
    table_of: TableOf
    records: dict[Any, Row] = field(default_factory=dict)
    merges: list[tuple[Any, Any]] = field(default_factory=list)
    full: UnificationResult | None = None
    tables: dict[str, pa.Table] = field(default_factory=dict)
    ticks: int = 0
    fetched: list[list[Any]] = field(default_factory=list)  # ids asked of records_by_id, per call

    def now(self) -> Any:
        return T0 + timedelta(minutes=30 * self.ticks)

    def _table(self) -> pa.Table:
        return self.table_of([self.records[key] for key in sorted(self.records)])

    def _merge_table(self) -> pa.Table | None:
        if not self.merges:
            return None
        id_type = self._table().schema.field(self.id_column).type
        losers, winners = zip(*self.merges, strict=True)
        return pa.table({"loser_id": pa.array(losers, id_type), "winner_id": pa.array(winners, id_type)})

    def start(self, rows: list[Row], from_full_run: bool) -> UnificationChanges | None:
        """First run: a full `unify()` turned into state tables, or an empty state with every row changed."""
        self.records = {row[self.id_column]: row for row in rows}
        if not from_full_run:
            self.tables = empty_state_tables(self._table().schema, self.id_column)
            return self.tick(changed=list(self.records), removed=[])
        table = self._table()
        self.full = unify(table, id_column=self.id_column, rules=self.rules, previous=None,
                          entity=self.entity, now=self.now())
        self.tables = state_tables(self.full, table, id_column=self.id_column, rules=self.rules,
                                   entity=self.entity)
        return None

    def records_by_id(self, ids: pa.Array) -> pa.Table:
        self.fetched.append(ids.to_pylist())
        table = self._table()
        return table.filter(pc.is_in(table[self.id_column], value_set=ids))

    def incremental(self, changed: list[Any], removed: list[Any]) -> UnificationChanges:
        """unify_changes against the current tables, without applying the result."""
        return unify_changes(
            TablesState(self.tables),
            changed=self.table_of([self.records[key] for key in changed]),
            removed=removed,
            records_by_id=self.records_by_id,
            id_column=self.id_column,
            rules=self.rules,
            entity=self.entity,
            now=self.now(),
            merged_sources=self._merge_table(),
        )

    def tick(self, changed: list[Any], removed: list[Any]) -> UnificationChanges:
        """Both engines on the records as they are now; `changed`/`removed` say what the feed reported."""
        self.ticks += 1
        table = self._table()
        self.full = unify(table, id_column=self.id_column, rules=self.rules,
                          previous=self.full.state if self.full else None, entity=self.entity,
                          now=self.now(), merged_sources=self._merge_table())
        changes = self.incremental(changed, removed)
        self.tables = apply_changes(self.tables, changes)
        return changes

    def expected(self) -> dict[str, pa.Table]:
        assert self.full is not None
        return state_tables(self.full, self._table(), id_column=self.id_column, rules=self.rules,
                            entity=self.entity)

    def ids(self) -> dict[Any, str]:
        links = self.tables["links"]
        return dict(zip(links["source_id"].to_pylist(), links["unified_id"].to_pylist(), strict=True))
