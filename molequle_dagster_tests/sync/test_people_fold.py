"""The people fold, alone: newest row wins, smart-list flags, who is kept when leaving the list, deletions
and merges never resurrected."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from molequle_dagster.arrow_ops import SYNCED_AT, TS
from molequle_dagster.sync.people_fold import IN_SYNC_LIST, fold_people

T0 = datetime(2026, 11, 1, tzinfo=UTC)
T1 = datetime(2026, 11, 2, tzinfo=UTC)
T2 = datetime(2026, 11, 3, tzinfo=UTC)


def rows(ids, email="e", at=T1, flag=None) -> pa.Table:
    table = pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "email": [f"{email}{i}" for i in ids],
            SYNCED_AT: pa.array([at] * len(ids), TS),
        }
    )
    if flag is not None:
        table = table.append_column(IN_SYNC_LIST, pa.array([flag] * len(ids)))
    return table


def ids(*values: int) -> pa.Array:
    return pa.array(list(values), pa.int64())


def fold(**kw):
    base = dict(
        fetched=[],
        current=None,
        members_joined=ids(),
        members_left=ids(),
        is_member=ids(),
        removed=ids(),
        winners=ids(),
        list_refreshed_at=T0,
    )
    return fold_people(**{**base, **kw})


def as_dict(table: pa.Table | None) -> dict[int, tuple]:
    if table is None:
        return {}
    return {r["id"]: (r["email"], r.get(IN_SYNC_LIST)) for r in table.to_pylist()}


def test_a_newer_fetch_replaces_our_row_and_an_older_one_does_not() -> None:
    current = rows([1, 2], email="old", at=T1, flag=True)
    delta = fold(
        fetched=[rows([1], email="new", at=T2), rows([2], email="stale", at=T0)],
        current=current,
        is_member=ids(1, 2),
    )
    assert as_dict(delta.upserts) == {1: ("new1", True)}
    assert delta.deletes is None


def test_new_people_are_flagged_by_list_membership() -> None:
    delta = fold(fetched=[rows([5, 6])], is_member=ids(5))
    assert as_dict(delta.upserts) == {5: ("e5", True), 6: ("e6", False)}


def test_joining_flags_an_untouched_row_and_leaving_drops_it_unless_kept() -> None:
    current = pa.concat_tables([rows([1], flag=False), rows([2, 3, 4], flag=True)])
    current = current.set_column(
        current.column_names.index(SYNCED_AT), SYNCED_AT, pa.array([T0, T0, T0, T2], TS)
    )  # 4 was fetched after the snapshot
    delta = fold(
        current=current,
        members_joined=ids(1),
        members_left=ids(2, 3, 4),
        winners=ids(3),
        list_refreshed_at=T1,
    )
    assert as_dict(delta.upserts) == {1: ("e1", True), 3: ("e3", False), 4: ("e4", False)}
    assert delta.deletes["id"].to_pylist() == [2]


def test_deleted_and_merged_away_ids_are_deleted_and_never_come_back() -> None:
    current = rows([1, 2], flag=True)
    delta = fold(fetched=[rows([2, 9], at=T2)], current=current, removed=ids(2, 9), is_member=ids(2, 9))
    assert delta.upserts is None or delta.upserts.num_rows == 0
    assert sorted(delta.deletes["id"].to_pylist()) == [2, 9]
