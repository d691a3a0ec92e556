"""Property tests: clusters equal a reference union-find; row order never matters; reruns are no-ops;
clusters that did not change keep their ids; lineage always points at a live id."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from molequle_dagster.unification import UnificationResult, UnificationState, normalize_column, unify
from molequle_dagster.unification.components import connected_components

from .builders import PEOPLE_RULES, T0, clusters, ids_by_source, people_table

PROFILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

emails = st.sampled_from([None, "", "a@x.io", "A@X.io", "a+1@x.io", "b@x.io", "c@y.io", "junk", "d@y.io"])
first_names = st.sampled_from([None, "Ann", " ann", "Bo"])
last_names = st.sampled_from([None, "Lee", "LEE "])


@st.composite
def people_rows(draw: st.DrawFn, max_size: int = 14) -> list[dict[str, Any]]:
    ids = draw(st.lists(st.integers(1, 60), min_size=0, max_size=max_size, unique=True))
    return [
        {"id": source_id, "email": draw(emails), "firstName": draw(first_names), "lastName": draw(last_names),
         "title": draw(st.sampled_from([None, "CTO", "VP"])),
         "updatedAt": T0 + timedelta(days=draw(st.integers(0, 3)))}
        for source_id in ids
    ]


def run(rows: list[dict[str, Any]], previous: UnificationState | None = None,
        tick: int = 0) -> UnificationResult:
    return unify(people_table(rows), id_column="id", rules=PEOPLE_RULES, previous=previous, entity="person",
                 now=T0 + timedelta(minutes=30 * tick))


def reference_clusters(rows: list[dict[str, Any]]) -> set[frozenset[int]]:
    """Plain-Python union-find over the rules' normalized keys (normalizers are tested on their own)."""
    table = people_table(rows)
    parent = {r["id"]: r["id"] for r in rows}

    def find(node: int) -> int:
        while parent[node] != node:
            node = parent[node]
        return node

    for rule in PEOPLE_RULES:
        keys = [normalize_column(table[k.field], k.normalize).to_pylist() for k in rule.keys]
        first_with_key: dict[tuple[str, ...], int] = {}
        for row, source_id in enumerate(table["id"].to_pylist()):
            key = tuple(column[row] for column in keys)
            if any(part is None for part in key):
                continue
            other = first_with_key.setdefault(key, source_id)
            parent[find(source_id)] = find(other)
    groups: dict[int, set[int]] = {}
    for source_id in parent:
        groups.setdefault(find(source_id), set()).add(source_id)
    return {frozenset(g) for g in groups.values()}


def assert_same_result(left: UnificationResult, right: UnificationResult) -> None:
    assert left.links.equals(right.links)
    assert left.unified.equals(right.unified)
    assert left.id_lineage.equals(right.id_lineage)
    assert left.state.ids.equals(right.state.ids)


@PROFILE
@given(rows=people_rows())
def test_clusters_match_a_reference_union_find(rows: list[dict[str, Any]]) -> None:
    result = run(rows)
    assert clusters(result) == reference_clusters(rows)
    assert result.unified["member_count"].to_pylist() == [
        len(members) for members in sorted(clusters(result), key=lambda m: ids_by_source(result)[min(m)])
    ]


@PROFILE
@given(data=st.data(), before=people_rows(), after=people_rows())
def test_row_order_never_matters(data: st.DataObject, before: list[dict[str, Any]],
                                 after: list[dict[str, Any]]) -> None:
    first = run(before)
    shuffled_first = run(data.draw(st.permutations(before)))
    assert_same_result(first, shuffled_first)
    assert_same_result(run(after, first.state, tick=1),
                       run(data.draw(st.permutations(after)), shuffled_first.state, tick=1))


@PROFILE
@given(before=people_rows(), after=people_rows())
def test_rerun_with_same_input_and_state_is_a_no_op(before: list[dict[str, Any]],
                                                    after: list[dict[str, Any]]) -> None:
    second = run(after, run(before).state, tick=1)
    assert_same_result(run(after, second.state, tick=2), second)


@st.composite
def churned(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A table and its next state: some rows get a new email or name, some vanish, some are added."""
    before = draw(people_rows())
    after = []
    for row in before:
        fate = draw(st.sampled_from(["keep", "keep", "email", "name", "delete"]))
        if fate == "email":
            row = {**row, "email": draw(emails)}
        elif fate == "name":
            row = {**row, "firstName": draw(first_names)}
        if fate != "delete":
            after.append(row)
    taken = {row["id"] for row in before}
    added = [row for row in draw(people_rows(max_size=4)) if row["id"] not in taken]
    return before, after + added


@PROFILE
@given(change=st.one_of(churned(), st.tuples(people_rows(), people_rows())))
def test_ids_are_stable_and_lineage_is_consistent(
    change: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    before, after = change
    first = run(before)
    second = run(after, first.state, tick=1)
    old_ids = {members: ids_by_source(first)[min(members)] for members in clusters(first)}
    new_ids = {members: ids_by_source(second)[min(members)] for members in clusters(second)}
    for members, unified_id in new_ids.items():
        if members in old_ids:  # an unchanged cluster keeps its id
            assert unified_id == old_ids[members]
    assert len(set(new_ids.values())) == len(new_ids)  # one id per cluster
    issued_before = set(first.state.ids["unified_id"].to_pylist())
    for unified_id in set(new_ids.values()) - set(old_ids.values()):
        assert unified_id not in issued_before  # new ids are never recycled
    live = set(new_ids.values())
    for lineage in second.id_lineage.to_pylist()[first.id_lineage.num_rows:]:
        assert lineage["survivor_id"] in live
        assert lineage["retired_id"] in set(old_ids.values()) - live


@settings(max_examples=100, deadline=None)
@given(
    count=st.integers(0, 40),
    edges=st.lists(st.tuples(st.integers(0, 39), st.integers(0, 39)), max_size=60),
)
def test_components_label_each_node_with_its_smallest_member(count: int,
                                                             edges: list[tuple[int, int]]) -> None:
    edges = [(a, b) for a, b in edges if a < count and b < count]
    labels = connected_components(count, np.array([a for a, _ in edges], dtype=np.int64),
                                  np.array([b for _, b in edges], dtype=np.int64))
    parent = list(range(count))

    def find(node: int) -> int:
        while parent[node] != node:
            node = parent[node]
        return node

    for a, b in edges:
        low, high = sorted((find(a), find(b)))
        parent[high] = low
    assert labels.tolist() == [find(node) for node in range(count)]


def test_large_chain_converges() -> None:
    count = 200_000
    nodes = np.arange(count - 1, dtype=np.int64)
    labels = connected_components(count, nodes[::-1] + 1, nodes[::-1])  # a path, edges listed backwards
    assert (labels == 0).all()


def test_unified_id_column_types() -> None:
    result = run([{"id": 1, "email": "a@x.io"}])
    assert result.links.schema.field("source_id").type == pa.int64()
    assert result.unified.schema.field("first_seen_at").type == pa.timestamp("us", tz="UTC")
