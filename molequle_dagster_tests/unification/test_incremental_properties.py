"""Property tests: over random sequences of ticks (inserts, updates that split and join clusters, deletions,
Marketo merges), applying `unify_changes`' deltas gives exactly the tables a full `unify()` gives after
every tick, for people and for accounts; and a rerun of a tick, or a tick without changes, changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from molequle_dagster.settings import MatchKey, MatchRule

from .builders import PEOPLE_RULES, T0, people_table
from .replay import Replay, Row, assert_same_tables

PROFILE = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Small value pools, so that random rows share keys often: clusters form, join and split.
PERSON_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "email": st.sampled_from([None, "", "a@x.io", "A@X.io", "a+1@x.io", "b@x.io", "c@y.io", "junk",
                              "d@y.io"]),
    "firstName": st.sampled_from([None, "Ann", " ann", "Bo"]),
    "lastName": st.sampled_from([None, "Lee", "LEE "]),
    "title": st.sampled_from([None, "", "CTO", "VP"]),
    "updatedAt": st.integers(0, 3).map(lambda day: T0 + timedelta(days=day)),
}
ACCOUNT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "website": st.sampled_from([None, "acme.io", "https://www.acme.io/x", "globex.com", "junk",
                                "initech.com"]),
    "company": st.sampled_from([None, "Acme Inc.", "ACME", "Globex", "Initech Ltd"]),
    "billingCountry": st.sampled_from([None, "US", "us ", "DE"]),
    "industry": st.sampled_from([None, "Software", "Energy"]),
    "numberOfEmployees": st.sampled_from([None, 5, 100]),
}
ACCOUNT_RULES = [
    MatchRule(name="same_domain", keys=[MatchKey(field="website", normalize=["domain"])]),
    MatchRule(name="same_name_and_country", keys=[MatchKey(field="company", normalize=["company_name"]),
                                                  MatchKey(field="billingCountry")]),
]


def accounts_table(rows: list[Row]) -> pa.Table:
    return pa.table({
        "account_id": pa.array([r["account_id"] for r in rows], pa.string()),
        **{name: pa.array([r.get(name) for r in rows], pa.string())
           for name in ("website", "company", "billingCountry", "industry")},
        "numberOfEmployees": pa.array([r.get("numberOfEmployees") for r in rows], pa.int32()),
    })


def person_id(number: int) -> int:
    return number


def account_id(number: int) -> str:
    return f"company:{number}" if number % 3 else f"named:{number:04x}"  # text order != number order


ENTITIES: dict[str, tuple[Callable[[], Replay], dict[str, st.SearchStrategy[Any]], Callable[[int], Any]]] = {
    "person": (lambda: Replay("person", "id", PEOPLE_RULES, people_table), PERSON_FIELDS, person_id),
    "account": (lambda: Replay("account", "account_id", ACCOUNT_RULES, accounts_table), ACCOUNT_FIELDS,
                account_id),
}


def draw_row(data: st.DataObject, fields: dict[str, st.SearchStrategy[Any]], id_column: str, key: Any,
             base: Row | None = None) -> Row:
    """A new row, or `base` with a random subset of its fields redrawn."""
    row = dict(base) if base else {id_column: key}
    for name, values in fields.items():
        if base is None or data.draw(st.booleans()):
            row[name] = data.draw(values)
    return row


def draw_tick(data: st.DataObject, replay: Replay, fields: dict[str, st.SearchStrategy[Any]],
              make_id: Callable[[int], Any], next_number: list[int]) -> tuple[list[Any], list[Any]]:
    """Mutate `replay.records` by a few random operations; return (changed ids, removed ids)."""
    before = set(replay.records)
    changed: set[Any] = set()
    for _ in range(data.draw(st.integers(0, 5))):
        present = sorted(replay.records, key=str)
        operation = data.draw(st.sampled_from(["insert", "update", "update", "touch", "delete", "merge"]))
        if operation == "insert" or not present:
            key = make_id(next_number[0])
            next_number[0] += 1
            replay.records[key] = draw_row(data, fields, replay.id_column, key)
            changed.add(key)
        elif operation in ("update", "touch"):
            key = data.draw(st.sampled_from(present))
            if operation == "update":
                replay.records[key] = draw_row(data, fields, replay.id_column, key, replay.records[key])
            changed.add(key)  # "touch": the feed reports a record whose synced fields did not change
        elif operation == "delete":
            key = data.draw(st.sampled_from(present))
            del replay.records[key]
            changed.discard(key)
        elif len(present) >= 2:  # Marketo merge: the loser disappears, the winner may take its email
            loser, winner = data.draw(st.lists(st.sampled_from(present), min_size=2, max_size=2, unique=True))
            replay.merges.append((loser, winner))
            if data.draw(st.booleans()):
                winner_row = replay.records[winner]
                replay.records[winner] = draw_row(data, fields, replay.id_column, winner, winner_row)
                changed.add(winner)
            del replay.records[loser]
            changed.discard(loser)
    removed = sorted(before - set(replay.records), key=str)
    return sorted(changed & set(replay.records), key=str), removed


def _record_events(deltas: dict[str, Any]) -> None:
    """What the tick exercised (see pytest --hypothesis-show-statistics)."""
    if deltas["id_lineage"].upserts.num_rows:
        event("an id retired by a merge")
    statuses = set(deltas["ids"].upserts["status"].to_pylist())
    for status in statuses - {"active"}:
        event(f"an id {status}")
    if deltas["unified"].deletes.num_rows:
        event("a unified row deleted")


@PROFILE
@given(data=st.data(), entity=st.sampled_from(sorted(ENTITIES)), from_full_run=st.booleans(),
       initial=st.integers(0, 10), ticks=st.integers(1, 5))
def test_incremental_equals_full_after_every_tick(data: st.DataObject, entity: str, from_full_run: bool,
                                                  initial: int, ticks: int) -> None:
    make_replay, fields, make_id = ENTITIES[entity]
    replay = make_replay()
    next_number = [1 + initial]
    replay.start([draw_row(data, fields, replay.id_column, make_id(n)) for n in range(1, 1 + initial)],
                 from_full_run)
    assert_same_tables(replay.tables, replay.expected())
    for _ in range(ticks):
        changed, removed = draw_tick(data, replay, fields, make_id, next_number)
        changes = replay.tick(changed, removed)
        assert_same_tables(replay.tables, replay.expected())
        _record_events(changes.deltas)
        # the same tick again, against the state it produced: nothing left to change
        assert replay.incremental(changed, removed).is_empty
        assert replay.incremental([], []).is_empty
