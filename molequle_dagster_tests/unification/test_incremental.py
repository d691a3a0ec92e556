"""unify_changes on hand-made ticks: what each delta holds for splits, joins, Marketo merges, vanishing ids
and reruns; that it only reads the affected clusters; how a state is started; and bad input."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from molequle_dagster.settings import MatchKey, MatchRule
from molequle_dagster.unification import (
    RebuildRequired,
    TableDelta,
    TablesState,
    UnificationState,
    apply_changes,
    apply_delta,
    empty_state_tables,
    state_tables,
    unify,
    unify_changes,
)

from .builders import BASE, PEOPLE_RULES, SAME_EMAIL, T0, derived, people_table
from .replay import Replay, Row, assert_same_tables


def people(rows: list[Row]) -> Replay:
    replay = Replay("person", "id", PEOPLE_RULES, people_table)
    replay.start(rows, from_full_run=True)
    return replay


def update(replay: Replay, **emails: str) -> list[int]:
    """Set emails by id (keyword `p3="x@y"` = lead 3) and return the changed ids."""
    ids = [int(name[1:]) for name in emails]
    for source_id, email in zip(ids, emails.values(), strict=True):
        replay.records[source_id] = {**replay.records[source_id], "email": email}
    return ids


def rows_of(delta: TableDelta, *columns: str) -> list[dict[str, Any]]:
    return delta.upserts.select(list(columns)).to_pylist()


# --- what the deltas hold ----------------------------------------------------------------------------
def test_split_upserts_only_the_moved_record_and_both_clusters() -> None:
    replay = people([{"id": n, "email": "a@x.io"} for n in (1, 2, 3)])
    kept = replay.ids()[1]
    changes = replay.tick(changed=update(replay, p3="c@x.io"), removed=[])
    assert_same_tables(replay.tables, replay.expected())
    links = changes.deltas["links"]
    assert rows_of(links, "source_id", "unified_id", "matched_rule") == [
        {"source_id": 3, "unified_id": derived(3)[0], "matched_rule": None}
    ]
    assert links.deletes.num_rows == 0
    assert rows_of(changes.deltas["unified"], "unified_id", "member_count") == sorted(
        [{"unified_id": kept, "member_count": 2}, {"unified_id": derived(3)[0], "member_count": 1}],
        key=lambda row: row["unified_id"],
    )
    assert changes.deltas["unified"].deletes.num_rows == 0
    assert changes.deltas["id_lineage"].is_empty
    assert rows_of(changes.deltas["ids"], "unified_id", "status") == [
        {"unified_id": derived(3)[0], "status": "active"}
    ]
    assert replay.fetched == [[1, 2]]  # the rest of the cluster, nobody else


def test_joining_clusters_retires_the_younger_id() -> None:
    replay = people(BASE)
    before = replay.ids()
    # lead 3, the smallest member of {3, 4}, joins {1, 2} and takes its cluster's id along; 4 stays alone
    changes = replay.tick(changed=update(replay, p3="ann@acme.io"), removed=[])
    assert_same_tables(replay.tables, replay.expected())
    survivor, retired = sorted([before[1], before[3]])  # equally old: the smaller id text survives
    assert rows_of(changes.deltas["id_lineage"], "retired_id", "survivor_id", "reason") == [
        {"retired_id": retired, "survivor_id": survivor, "reason": "merge"}
    ]
    assert replay.ids() == {1: survivor, 2: survivor, 3: survivor, 4: derived(4)[0], 5: before[5]}
    assert changes.deltas["unified"].deletes["unified_id"].to_pylist() == [retired]
    ids = changes.deltas["ids"].upserts
    assert dict(zip(ids["unified_id"].to_pylist(), ids["status"].to_pylist(), strict=True)) == {
        retired: "retired", derived(4)[0]: "active"
    }
    assert changes.affected_clusters == 2  # 3's own cluster and the one its new email joins


def test_marketo_merge_hands_the_losers_id_to_the_winners_cluster() -> None:
    replay = people(BASE)
    before = replay.ids()
    del replay.records[5]  # Marketo merged lead 5 into lead 3; lead 3 itself did not change
    replay.merges.append((5, 3))
    changes = replay.tick(changed=[], removed=[5])
    assert_same_tables(replay.tables, replay.expected())
    survivor, retired = sorted([before[3], before[5]])
    assert rows_of(changes.deltas["id_lineage"], "retired_id", "survivor_id") == [
        {"retired_id": retired, "survivor_id": survivor}
    ]
    assert changes.deltas["links"].deletes["source_id"].to_pylist() == [5]
    assert replay.fetched == [[3, 4]]  # the winner's cluster is recomputed although none of it changed


def test_an_id_whose_members_all_go_vanishes() -> None:
    replay = people(BASE)
    gone = replay.ids()[3]
    del replay.records[3], replay.records[4]
    changes = replay.tick(changed=[], removed=[3, 4])
    assert_same_tables(replay.tables, replay.expected())
    assert changes.deltas["ids"].upserts.to_pylist() == [
        {"unified_id": gone, "first_seen_at": T0, "status": "vanished", "status_changed_at": replay.now()}
    ]
    assert changes.deltas["unified"].deletes["unified_id"].to_pylist() == [gone]
    assert changes.deltas["links"].deletes["source_id"].to_pylist() == [3, 4]
    assert changes.deltas["match_keys"].deletes.to_pylist() == [
        {"source_id": 3, "rule": "same_email"}, {"source_id": 4, "rule": "same_email"}
    ]
    assert replay.fetched == []


def test_no_changes_and_reruns_give_empty_deltas_and_read_no_records() -> None:
    replay = people(BASE)
    assert replay.incremental([], []).is_empty
    assert replay.fetched == []
    changed = update(replay, p5="ann@acme.io")
    replay.tick(changed=changed, removed=[])
    again = replay.incremental(changed, [])
    assert again.is_empty, {name: delta for name, delta in again.deltas.items() if not delta.is_empty}


def test_a_change_that_no_output_shows_writes_nothing_but_the_index() -> None:
    replay = people(BASE)
    replay.records[5] = {**replay.records[5], "email": "CY@acme.io"}  # same normalized key
    changes = replay.tick(changed=[5], removed=[])
    assert_same_tables(replay.tables, replay.expected())
    assert changes.deltas["unified"].upserts["email"].to_pylist() == ["CY@acme.io"]  # the raw value
    assert changes.deltas["links"].is_empty and changes.deltas["match_keys"].is_empty


def test_a_tick_that_crashed_while_committing_is_rerun_from_the_previous_state() -> None:
    replay = people(BASE)
    previous = dict(replay.tables)
    changed = update(replay, p3="ann@acme.io", p5="bo@acme.io")
    replay.ticks += 1
    first_try = replay.incremental(changed, [])
    partly = apply_changes(previous, first_try, only=("unified", "links"))  # then the process died
    replay.ticks += 1  # the rerun happens later: other timestamps
    rerun = unify_changes(TablesState(previous), changed=people_table([replay.records[n] for n in changed]),
                          removed=[], records_by_id=replay.records_by_id, id_column="id",
                          rules=PEOPLE_RULES, entity="person", now=replay.now())
    assert_same_tables(apply_changes(partly, rerun), apply_changes(previous, rerun))


# --- cost follows change -----------------------------------------------------------------------------
class CountingState(TablesState):
    """Records how many values each lookup asked for."""

    def __init__(self, tables: dict[str, pa.Table]) -> None:
        super().__init__(tables)
        self.asked: list[tuple[str, str, int]] = []

    def lookup(self, table: str, column: str, values: pa.Array) -> pa.Table:
        self.asked.append((table, column, len(values)))
        return super().lookup(table, column, values)


def test_only_the_affected_clusters_are_looked_up_and_fetched() -> None:
    rows = [{"id": n, "email": f"p{n // 2}@acme.io"} for n in range(1, 2001)]  # 1,000 pairs and a single
    replay = people(rows)
    state = CountingState(replay.tables)
    replay.records[10] = {**replay.records[10], "email": "p100@acme.io"}  # leaves 10/11, joins 200/201
    changes = unify_changes(state, changed=people_table([replay.records[10]]), removed=[],
                            records_by_id=replay.records_by_id, id_column="id", rules=PEOPLE_RULES,
                            entity="person", now=T0)
    assert changes.affected_clusters == 2 and changes.affected_records == 4
    assert replay.fetched == [[11, 200, 201]]
    assert max(count for _, _, count in state.asked) <= 3
    assert {(table, column) for table, column, _ in state.asked} <= {
        ("links", "source_id"), ("links", "unified_id"), ("match_keys", "source_id"),
        ("match_keys", "key_hash"), ("ids", "unified_id"), ("unified", "unified_id"),
    }


# --- starting a state --------------------------------------------------------------------------------
def test_an_empty_state_with_every_record_changed_equals_a_first_full_run() -> None:
    table = people_table(BASE)
    changes = unify_changes(TablesState(empty_state_tables(table.schema, "id")), changed=table, removed=[9],
                            records_by_id=lambda ids: pytest.fail("nothing to fetch"), id_column="id",
                            rules=PEOPLE_RULES, entity="person", now=T0)
    full = unify(table, id_column="id", rules=PEOPLE_RULES, previous=None, entity="person", now=T0)
    expected = state_tables(full, table, id_column="id", rules=PEOPLE_RULES, entity="person")
    assert_same_tables({name: delta.upserts for name, delta in changes.deltas.items()}, expected)
    assert all(delta.deletes.num_rows == 0 for delta in changes.deltas.values())


def test_a_lake_with_todays_state_tables_is_migrated_by_one_full_run() -> None:
    first = unify(people_table(BASE), id_column="id", rules=PEOPLE_RULES, previous=None, entity="person",
                  now=T0)
    stored = first.state.to_tables()  # today's _unification_<entity>_{links,ids,id_lineage}
    replay = Replay("person", "id", PEOPLE_RULES, people_table, records={r["id"]: r for r in BASE})
    replay.full = unify(people_table(BASE), id_column="id", rules=PEOPLE_RULES,
                        previous=UnificationState.from_tables("person", stored), entity="person", now=T0)
    replay.tables = replay.expected()
    assert replay.full.links.equals(first.links)  # the migration run itself moves no id
    changes = replay.tick(changed=update(replay, p1="bo@acme.io"), removed=[])
    assert_same_tables(replay.tables, replay.expected())
    assert not changes.is_empty


# --- state that no longer fits -----------------------------------------------------------------------
def run_against(replay: Replay, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {"changed": people_table([replay.records[1]]), "removed": [],
                                 "records_by_id": replay.records_by_id, "id_column": "id",
                                 "rules": PEOPLE_RULES, "entity": "person", "now": T0, **overrides}
    return unify_changes(TablesState(replay.tables), **arguments)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"rules": [SAME_EMAIL]}, r"config item 'rule\[1\]' was .*same_name_and_company.* now None; rebuild"),
        ({"rules": [PEOPLE_RULES[1], PEOPLE_RULES[0]]}, r"config item 'rule\[0\]'"),
        ({"rules": [MatchRule(name="same_email", keys=[MatchKey(field="email", normalize=["trim_case"])]),
                    PEOPLE_RULES[1]]}, r"config item 'rule\[0\]'"),
        ({"changed": people_table([BASE[0]]).drop_columns(["title"])}, r"config item 'columns'"),
        ({"entity": "account"}, r"previous: state belongs to 'person', not 'account'"),
    ],
)
def test_a_state_built_with_other_rules_or_columns_must_be_rebuilt(overrides: dict[str, Any],
                                                                   expected: str) -> None:
    with pytest.raises(RebuildRequired, match=expected):
        run_against(people(BASE), **overrides)


# --- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"removed": [1]}, r"removed: id 1 is also in changed"),
        ({"removed": pa.array([2, None])}, r"removed: 1 null ids"),
        ({"removed": ["two"]}, r"removed: expected ids of type int64"),
        ({"changed": people_table([BASE[0], BASE[0]])},
         r"changed: id column 'id' has duplicate values, e.g. 1"),
        ({"records_by_id": lambda ids: people_table([])},
         r"records_by_id: asked for 1 records, got 0 rows with missing ids, e.g. 2;"),
        ({"records_by_id": lambda ids: people_table(BASE[1:3])}, r"2 rows with ids not asked for, e.g. 3;"),
        ({"records_by_id": lambda ids: people_table([BASE[1], BASE[1]])}, r"got 2 rows with duplicate ids;"),
        ({"records_by_id": lambda ids: people_table([BASE[1]]).drop_columns(["email"])},
         r"records_by_id: returned rows lack columns \['email'\]"),
        ({"id_column": "leadId"}, r"id_column: 'leadId' is not a column"),
    ],
)
def test_bad_input_is_named(overrides: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        run_against(people(BASE), **overrides)


def test_a_state_missing_a_table_or_column_is_refused() -> None:
    tables = people(BASE).tables
    with pytest.raises(ValueError, match=r"previous state: missing tables \['match_keys'\]"):
        TablesState({name: table for name, table in tables.items() if name != "match_keys"})
    with pytest.raises(ValueError, match=r"table 'links' lacks columns \['matched_rule'\]"):
        TablesState({**tables, "links": tables["links"].drop_columns(["matched_rule"])})


def test_links_without_config_are_refused() -> None:
    replay = people(BASE)
    replay.tables["config"] = replay.tables["config"].slice(0, 0)
    with pytest.raises(ValueError, match="it has links but no config; build it with state_tables"):
        run_against(replay)


# --- applying deltas ---------------------------------------------------------------------------------
def test_apply_delta_replaces_upserted_keys_and_drops_deleted_ones() -> None:
    table = pa.table({"source_id": [1, 1, 2], "rule": ["a", "b", "a"], "key_hash": [10, 11, 12]})
    delta = TableDelta(upserts=pa.table({"source_id": [1, 3], "rule": ["b", "a"], "key_hash": [99, 13]}),
                       deletes=pa.table({"source_id": [2, 7], "rule": ["a", "a"]}))
    assert apply_delta(table, delta, ("source_id", "rule")).to_pylist() == [
        {"source_id": 1, "rule": "a", "key_hash": 10},
        {"source_id": 1, "rule": "b", "key_hash": 99},
        {"source_id": 3, "rule": "a", "key_hash": 13},
    ]
