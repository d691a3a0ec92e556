"""Rule semantics, stable ids under churn (changes, merges, splits, deletes), representatives, bad input."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from molequle_dagster.settings import MatchKey, MatchRule
from molequle_dagster.unification import UnificationResult, UnificationState, derive_ids, unify

from .builders import (
    BASE,
    PEOPLE_RULES,
    SAME_EMAIL,
    T0,
    Runner,
    clusters,
    derived,
    ids_by_source,
    people_table,
)


def registry_status(result: UnificationResult) -> dict[str, str]:
    ids = result.state.ids
    return dict(zip(ids["unified_id"].to_pylist(), ids["status"].to_pylist(), strict=True))


# --- rule semantics ----------------------------------------------------------------------------------
def test_a_rule_matches_only_when_all_keys_are_equal(run_people: Runner) -> None:
    result = run_people([
        {"id": 1, "email": "ada@acme.io", "firstName": "Ada", "lastName": "Lovelace"},
        {"id": 2, "email": "a.lovelace@ACME.io", "firstName": " ada ", "lastName": "LOVELACE"},
        {"id": 3, "email": "ada@other.io", "firstName": "Ada", "lastName": "Lovelace"},  # other domain
        {"id": 4, "email": "ada.b@acme.io", "firstName": "Ada", "lastName": "Byron"},  # other last name
    ])
    assert clusters(result) == {frozenset({1, 2}), frozenset({3}), frozenset({4})}
    assert result.links["matched_rule"].to_pylist() == ["same_name_and_company", "same_name_and_company",
                                                        None, None]


def test_null_and_junk_keys_never_match(run_people: Runner) -> None:
    result = run_people([
        {"id": 1, "email": None},
        {"id": 2, "email": None},
        {"id": 3, "email": ""},
        {"id": 4, "email": "not-an-email"},
        {"id": 5, "email": "not-an-email"},
    ])
    assert len(clusters(result)) == 5
    assert result.links["matched_rule"].null_count == 5
    assert result.unified["member_count"].to_pylist() == [1] * 5


def test_matching_is_transitive_and_matched_rule_is_the_first_rule_that_links(run_people: Runner) -> None:
    result = run_people([
        {"id": 10, "email": "Bob+crm@Acme.io", "firstName": "Bob", "lastName": "Stone"},
        {"id": 11, "email": "bob@acme.io"},  # same email as 10 (plus-addressing, case)
        {"id": 12, "email": "robert@acme.io", "firstName": "BOB", "lastName": "stone"},  # name+domain of 10
        {"id": 13, "email": "robert@acme.io", "firstName": "Robert"},  # same email as 12
    ])
    assert clusters(result) == {frozenset({10, 11, 12, 13})}
    assert result.links["matched_rule"].to_pylist() == ["same_email"] * 4

    only_names = run_people([
        {"id": 10, "email": "bob@acme.io", "firstName": "Bob", "lastName": "Stone"},
        {"id": 12, "email": "robert@acme.io", "firstName": "BOB", "lastName": "stone"},
    ])
    assert only_names.links["matched_rule"].to_pylist() == ["same_name_and_company"] * 2


def test_first_run_ids_derive_from_the_smallest_source_id(run_people: Runner) -> None:
    result = run_people([{"id": 7, "email": "x@acme.io"}, {"id": 3, "email": "X@acme.io"}, {"id": 5}])
    assert ids_by_source(result) == {3: derived(3)[0], 7: derived(3)[0], 5: derived(5)[0]}
    assert all(uid.startswith("up_") and len(uid) == 19 for uid in result.unified["unified_id"].to_pylist())
    assert result.id_lineage.num_rows == 0


# --- stability under churn ---------------------------------------------------------------------------
def test_unrelated_change_moves_no_id(run_people: Runner) -> None:
    first = run_people(BASE)
    changed = [*BASE[:4], {"id": 5, "email": "cy.new@acme.io"}]
    second = run_people(changed, previous=first.state, tick=1)
    assert ids_by_source(second) == ids_by_source(first)
    assert second.id_lineage.num_rows == 0


def test_email_change_moves_a_record_between_clusters(run_people: Runner) -> None:
    first = run_people(BASE)
    before = ids_by_source(first)
    moved = [*BASE[:3], {"id": 4, "email": "ann@acme.io"}, BASE[4]]
    second = run_people(moved, previous=first.state, tick=1)
    after = ids_by_source(second)
    assert after == {1: before[1], 2: before[1], 3: before[3], 4: before[1], 5: before[5]}
    assert second.id_lineage.num_rows == 0


def test_split_keeps_the_id_with_the_smallest_previous_member(run_people: Runner) -> None:
    chain = [{"id": 1, "email": "a@x.io"}, {"id": 2, "email": "a@x.io"}, {"id": 3, "email": "a@x.io"}]
    first = run_people(chain)
    kept = ids_by_source(first)[1]

    tail_leaves = [chain[0], chain[1], {"id": 3, "email": "c@x.io"}]
    second = run_people(tail_leaves, previous=first.state, tick=1)
    assert ids_by_source(second) == {1: kept, 2: kept, 3: derived(3)[0]}

    head_leaves = [{"id": 1, "email": "z@x.io"}, chain[1], chain[2]]
    third = run_people(head_leaves, previous=first.state, tick=1)
    assert ids_by_source(third) == {1: kept, 2: derived(2)[0], 3: derived(2)[0]}
    assert third.id_lineage.num_rows == 0


def test_merge_keeps_the_oldest_id_and_records_lineage(run_people: Runner) -> None:
    first = run_people([{"id": 5, "email": "a@x.io"}])
    # a newer cluster with a smaller source id appears one tick later
    second = run_people([{"id": 5, "email": "a@x.io"}, {"id": 1, "email": "b@x.io"}], previous=first.state,
                        tick=1)
    old_id, new_id = ids_by_source(second)[5], ids_by_source(second)[1]
    assert new_id == derived(1)[0]

    third = run_people([{"id": 5, "email": "a@x.io"}, {"id": 1, "email": "A@x.io"}], previous=second.state,
                       tick=2)
    assert ids_by_source(third) == {1: old_id, 5: old_id}
    assert third.id_lineage.to_pylist() == [
        {"retired_id": new_id, "survivor_id": old_id, "reason": "merge",
         "retired_at": T0 + timedelta(hours=1)}
    ]
    assert registry_status(third) == {old_id: "active", new_id: "retired"}
    assert third.unified["first_seen_at"].to_pylist() == [T0]


def test_merge_between_equally_old_ids_keeps_the_smaller_id_text(run_people: Runner) -> None:
    first = run_people([{"id": 1, "email": "a@x.io"}, {"id": 2, "email": "b@x.io"}])
    merged = run_people([{"id": 1, "email": "a@x.io"}, {"id": 2, "email": "a@x.io"}], previous=first.state,
                        tick=1)
    survivor, retired = sorted(derived(1, 2))
    assert set(ids_by_source(merged).values()) == {survivor}
    assert merged.id_lineage["retired_id"].to_pylist() == [retired]


def test_a_retired_id_is_never_issued_again(run_people: Runner) -> None:
    first = run_people([{"id": 1, "email": "a@x.io"}, {"id": 2, "email": "b@x.io"}])
    retired_id = max(derived(1, 2))
    source_of_retired = 1 if derived(1)[0] == retired_id else 2
    merged = run_people([{"id": 1, "email": "a@x.io"}, {"id": 2, "email": "a@x.io"}], previous=first.state,
                        tick=1)
    assert merged.id_lineage["retired_id"].to_pylist() == [retired_id]
    # the record whose derived id was retired splits off alone and is the smallest member of its part
    rows = [{"id": 1, "email": "a@x.io"}, {"id": 2, "email": "a@x.io"}]
    rows[source_of_retired - 1] = {"id": source_of_retired, "email": "alone@x.io"}
    split = run_people(rows, previous=merged.state, tick=2)
    fresh = ids_by_source(split)[source_of_retired]
    assert fresh != retired_id
    assert fresh == derive_ids("person", pa.array([source_of_retired]), attempt=1)[0].as_py()
    assert registry_status(split)[retired_id] == "retired"


def test_deleted_members_leave_their_cluster_and_a_deleted_singleton_vanishes(run_people: Runner) -> None:
    first = run_people(BASE)
    before = ids_by_source(first)
    # lead 1 (smallest member of its cluster) and singleton 5 are deleted in Marketo
    second = run_people(BASE[1:4], previous=first.state, tick=1)
    assert ids_by_source(second) == {2: before[1], 3: before[3], 4: before[3]}
    assert registry_status(second)[before[5]] == "vanished"
    assert second.id_lineage.num_rows == 0


def test_marketo_lead_merge_without_and_with_merged_sources(run_people: Runner) -> None:
    first = run_people(BASE)
    before = ids_by_source(first)
    # Marketo merges lead 5 into lead 3: lead 5 disappears, lead 3 keeps its own email
    after_merge = [BASE[0], BASE[1], BASE[2], BASE[3]]

    unaware = run_people(after_merge, previous=first.state, tick=1)
    assert registry_status(unaware)[before[5]] == "vanished"
    assert unaware.id_lineage.num_rows == 0

    merges = pa.table({"loser_id": pa.array([5], pa.int64()), "winner_id": pa.array([3], pa.int64())})
    aware = run_people(after_merge, previous=first.state, tick=1, merged_sources=merges)
    survivor, retired = sorted([before[3], before[5]])
    assert ids_by_source(aware)[3] == survivor
    assert aware.id_lineage.select(["retired_id", "survivor_id"]).to_pylist() == [
        {"retired_id": retired, "survivor_id": survivor}
    ]
    assert ids_by_source(aware)[1] == before[1]


def test_merged_sources_follow_chains_and_ignore_unknown_losers(run_people: Runner) -> None:
    first = run_people([{"id": 1, "email": "a@x.io"}, {"id": 2, "email": "b@x.io"},
                        {"id": 3, "email": "c@x.io"}])
    before = ids_by_source(first)
    merges = pa.table({"loser_id": [3, 2, 99], "winner_id": [2, 1, 3]})  # 3 -> 2 -> 1; 99 never existed
    result = run_people([{"id": 1, "email": "a@x.io"}], previous=first.state, tick=1, merged_sources=merges)
    survivor = min(before.values())
    assert ids_by_source(result) == {1: survivor}
    assert sorted(result.id_lineage["retired_id"].to_pylist()) == sorted(set(before.values()) - {survivor})


def test_rerun_with_same_input_is_a_no_op(run_people: Runner) -> None:
    first = run_people(BASE)
    changed = [*BASE[:4], {"id": 5, "email": "ann@acme.io"}, {"id": 6, "email": "new@acme.io"}]
    second = run_people(changed, previous=first.state, tick=1)
    again = run_people(changed, previous=second.state, tick=2)
    assert again.links.equals(second.links)
    assert again.unified.equals(second.unified)
    assert again.id_lineage.equals(second.id_lineage)
    assert again.state.ids.equals(second.state.ids)


def test_state_survives_a_parquet_round_trip(run_people: Runner, tmp_path: Path) -> None:
    first = run_people(BASE)
    for name, table in first.state.to_tables().items():
        pq.write_table(table, tmp_path / f"{name}.parquet")
    loaded = UnificationState.from_tables(
        "person", {name: pq.read_table(tmp_path / f"{name}.parquet") for name in first.state.to_tables()}
    )
    again = run_people(BASE, previous=loaded, tick=1)
    assert again.links.equals(first.links)
    assert again.state.ids.equals(first.state.ids)


def test_empty_input_vanishes_every_id(run_people: Runner) -> None:
    first = run_people(BASE)
    empty = unify(people_table([]), id_column="id", rules=PEOPLE_RULES, previous=first.state, entity="person",
                  now=T0 + timedelta(hours=1))
    assert empty.links.num_rows == 0 and empty.unified.num_rows == 0
    assert set(registry_status(empty).values()) == {"vanished"}


# --- representatives ---------------------------------------------------------------------------------
def test_representative_values_come_from_the_latest_updated_member_with_a_value(run_people: Runner) -> None:
    day = timedelta(days=1)
    result = run_people([
        {"id": 1, "email": "a@x.io", "firstName": "Old", "title": "CTO", "createdAt": T0 + day,
         "updatedAt": T0 + day},
        {"id": 2, "email": "A@x.io", "firstName": "New", "title": "", "country": None, "createdAt": T0,
         "updatedAt": T0 + 3 * day},
        {"id": 3, "email": "a@x.io", "firstName": "Tie", "country": "DE", "createdAt": T0 + 2 * day,
         "updatedAt": T0 + 3 * day},
    ], rules=[SAME_EMAIL])
    (row,) = result.unified.to_pylist()
    assert row["member_count"] == 3
    assert row["firstName"] == "New"  # updated last; the tie with lead 3 goes to the smaller id
    assert row["title"] == "CTO"  # the newer members have no title ("" counts as none)
    assert row["country"] == "DE"
    assert row["email"] == "A@x.io"  # representatives are raw values, not normalized keys
    assert row["createdAt"] == T0
    assert row["updatedAt"] == T0 + 3 * day
    assert "id" not in row


# --- accounts ----------------------------------------------------------------------------------------
def test_accounts_with_string_ids() -> None:
    accounts = pa.table({
        "account_id": ["named:9f1c", "company:12", "company:3", "company:4"],
        "company": ["Acme Inc.", "ACME", "Globex", "Initech"],
        "website": [None, "https://www.acme.io/about", "globex.com", None],
        "billingCountry": ["US", "us", "DE", None],
        "industry": ["Software", None, "Energy", None],
        "numberOfEmployees": pa.array([100, 120, None, 5], pa.int32()),
    })
    rules = [
        MatchRule(name="same_domain", keys=[MatchKey(field="website", normalize=["domain"])]),
        MatchRule(name="same_name_and_country", keys=[MatchKey(field="company", normalize=["company_name"]),
                                                      MatchKey(field="billingCountry")]),
    ]
    result = unify(accounts, id_column="account_id", rules=rules, previous=None, entity="account", now=T0)
    assert clusters(result) == {frozenset({"named:9f1c", "company:12"}), frozenset({"company:3"}),
                                frozenset({"company:4"})}
    assert all(uid.startswith("ua_") for uid in result.unified["unified_id"].to_pylist())
    # string ids order as text: "company:12" < "named:9f1c" is the smallest member
    assert ids_by_source(result)["named:9f1c"] == derive_ids("account", pa.array(["company:12"]))[0].as_py()


# --- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("table", "options", "expected"),
    [
        (people_table([{"id": 1}, {"id": 1}]), {}, r"records: id column 'id' has duplicate values, e.g. 1"),
        (pa.table({"id": pa.array([1, None], pa.int64()), "email": ["a", "b"]}), {},
         r"records: id column 'id' has 1 null values"),
        (people_table([{"id": 1}]), {"id_column": "leadId"}, r"id_column: 'leadId' is not a column"),
        (pa.table({"id": [1.5], "email": ["a"]}), {}, r"id_column: 'id' must hold integers or strings"),
        (people_table([{"id": 1}]), {"now": datetime(2024, 1, 1)}, r"now: expected a timezone-aware"),
        (people_table([{"id": 1}]), {"entity": "lead"}, r"entity: expected 'person' or 'account'"),
    ],
)
def test_bad_input_is_named(table: pa.Table, options: dict[str, object], expected: str) -> None:
    arguments: dict[str, object] = {"id_column": "id", "rules": [SAME_EMAIL], "previous": None,
                                    "entity": "person", "now": T0, **options}
    with pytest.raises(ValueError, match=expected):
        unify(table, **arguments)  # type: ignore[arg-type]


def test_merged_sources_without_its_columns(run_people: Runner) -> None:
    first = run_people(BASE)
    with pytest.raises(ValueError, match=r"merged_sources: missing columns \['loser_id', 'winner_id'\]"):
        run_people(BASE, previous=first.state, merged_sources=pa.table({"loser": [1]}))


def test_state_of_the_other_entity_is_refused(run_people: Runner) -> None:
    first = run_people(BASE)
    account_state = UnificationState.from_tables("account", first.state.to_tables())
    with pytest.raises(ValueError, match="previous: state belongs to 'account', not 'person'"):
        run_people(BASE, previous=account_state)


def test_stored_state_missing_a_table_is_refused() -> None:
    with pytest.raises(ValueError, match=r"missing tables \['id_lineage'\]"):
        UnificationState.from_tables("person", {"links": pa.table({}), "ids": pa.table({})})


def test_rules_on_unknown_columns_fail_before_any_work() -> None:
    rule = MatchRule(name="same_phone", keys=[MatchKey(field="phone", normalize=["digits"])])
    with pytest.raises(ValueError, match=r"unification.people\[0\].keys\[0\].field: unknown column 'phone'"):
        unify(people_table([{"id": 1}]), id_column="id", rules=[rule], previous=None, entity="person", now=T0)


def test_merged_sources_stop_at_a_winner_that_is_still_present(run_people: Runner) -> None:
    first = run_people([{"id": 1, "email": "a@x.io"}, {"id": 2, "email": "b@x.io"},
                        {"id": 3, "email": "c@x.io"}])
    before = ids_by_source(first)
    # 3 merged into 2 now; an old record says 2 was merged into 1, but 2 is still here, so 3 goes to 2
    merges = pa.table({"loser_id": [3, 2], "winner_id": [2, 1]})
    result = run_people([{"id": 1, "email": "a@x.io"}, {"id": 2, "email": "b@x.io"}], previous=first.state,
                        tick=1, merged_sources=merges)
    assert ids_by_source(result)[1] == before[1]
    assert result.id_lineage.select(["retired_id", "survivor_id"]).to_pylist() == [
        {"retired_id": max(before[2], before[3]), "survivor_id": min(before[2], before[3])}
    ]
