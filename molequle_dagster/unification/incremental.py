"""Incremental unification: from what changed since the previous run to upserts and deletes per table.

    changes = unify_changes(
        previous,                 # PreviousState, e.g. TablesState(tables) (state.py)
        changed=rows,             # full rows of records inserted or updated since the previous run
        removed=ids,              # ids of records gone since then (deleted, or Marketo merge losers)
        records_by_id=fetch,      # fetch(ids: pa.Array) -> the current full rows of those records
        id_column="id", rules=rules, entity="person", now=now,
        merged_sources=merges,    # Marketo merge map (loser_id, winner_id), as unify() takes it
    )
    changes.deltas["links"].upserts / .deletes   # likewise unified, id_lineage, ids, match_keys, config

Contract: with N = (previous input minus `removed`) plus `changed` (a changed row replaces the record
with its id), applying every delta to the previous tables (delta.apply_delta) gives exactly the tables
`unify(N, previous=<the previous state>, merged_sources=..., now=now)` gives, and `state_tables()` of
that result: same unified ids, links and matched rules, lineage, id registry, representatives and index.
A record must not be both changed and removed; removing an unknown id does nothing. A rerun with the
same changes against the new state returns only empty deltas (rows are diffed against the stored ones).

Why it is exact: only clusters that held a touched record can change. The affected set is every previous
cluster that held a changed or removed record, every previous cluster holding a record that shares one of
the changed records' new keys (found by the match-key index, so nobody else is normalised), and every
previous cluster of a merge winner that receives a loser's claim. Unchanged records only ever shared keys
inside their previous clusters, so these whole clusters are closed under matching in the new input: they
are reclustered from scratch with the full run's code (engine.unify_rows), and every claim, survivor and
new id they produce is the one the full run produces.

Cost: normalising and hashing the changed records; fetching the affected records (one `records_by_id`
call); clustering those. Every state read is a `PreviousState.lookup` whose values come from the affected
clusters only (8 per tick, plus one when records were removed and the merge map names them); the merge
map is scanned once per merge-chain step. `TablesState` answers each lookup with one vectorised scan of
one column (10-20 ms per million rows): those scans are the only passes over all N records, and a keyed
store answering by key removes them. At 1M people, 0.1% churn: ~0.2 s, ~7 MiB (docs/benchmarks.md).

Wiring it (the lake stores the tables of state.py; keys in schemas.KEY_COLUMNS):
* Start: from a full run, ``state_tables(unify(...), records, ...)`` gives every table whole (this is
  also how a lake holding the older ``_unification_<entity>_{links,ids,id_lineage}`` tables migrates:
  one `unify()` with ``UnificationState.from_tables`` of them). Or ``empty_state_tables(schema, id)``
  and a first tick with every record changed.
* Each tick: read the state tables at the versions the previous run committed, pass the source table's
  change feed since the previous run's version, and apply every delta (``apply_delta`` semantics: drop
  deleted and upserted keys, add the upserts). Deltas are idempotent, so a tick that crashed while
  committing can be rerun from the same previous state and applied again.
* `RebuildRequired` (rules, synced columns or id column changed since the state was built): run
  `unify()` over the full table with the stored links/ids/id_lineage and store `state_tables` anew.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.unification.delta import TableDelta, UnificationChanges, changed_rows, missing_keys
from molequle_dagster.unification.engine import Outcome, check_inputs, sorted_by_id, unify_rows
from molequle_dagster.unification.match_keys import key_hash_rows
from molequle_dagster.unification.schemas import (
    CONFIG_SCHEMA,
    KEY_COLUMNS,
    LINEAGE_SCHEMA,
    Entity,
)
from molequle_dagster.unification.stable_ids import Ghosts, merge_pairs, resolve_ghosts
from molequle_dagster.unification.state import PreviousState, check_config, config_table

if TYPE_CHECKING:  # types only: settings.py may import this package at load time
    from molequle_dagster.unification.rules import MatchRule

RecordsById = Callable[[pa.Array], pa.Table]
_MAX_CHAIN_STEPS = 257  # resolve_ghosts follows chains up to 2**8 merges long


def _as_ids(values: pa.Array | pa.ChunkedArray | Sequence[int | str], id_type: pa.DataType) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    elif not isinstance(values, pa.Array):
        values = pa.array(list(values))
    if values.null_count:
        raise ValueError(f"removed: {values.null_count} null ids; expected ids of the records that are gone")
    if len(values) == 0:
        return pa.array([], id_type)
    try:
        values = pc.cast(values, id_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise ValueError(f"removed: expected ids of type {id_type} like the changed records', got "
                         f"{values.type} ({error})") from None
    return pc.unique(values)


def _without(values: pa.Array, excluded: pa.Array) -> pa.Array:
    return values.filter(pc.invert(pc.is_in(values, value_set=excluded)))


def _fetch(records_by_id: RecordsById, ids: pa.Array, changed: pa.Table, id_column: str) -> pa.Table:
    """The current rows of unchanged members of the affected clusters, in the changed rows' schema."""
    if len(ids) == 0:
        return changed.slice(0, 0)
    rows = records_by_id(ids)
    missing = [name for name in changed.column_names if name not in rows.column_names]
    if missing:
        raise ValueError(f"records_by_id: returned rows lack columns {missing} that the changed rows have")
    rows = rows.select(changed.column_names).cast(changed.schema)
    got = pc.cast(rows[id_column], ids.type).combine_chunks()
    problems = [
        f"{what}, e.g. {examples[0].as_py()!r}"
        for what, examples in (("missing ids", _without(ids, got)), ("ids not asked for", _without(got, ids)))
        if len(examples)
    ]
    if not problems and rows.num_rows != len(ids):
        problems.append("duplicate ids")
    if problems:
        raise ValueError(
            f"records_by_id: asked for {len(ids)} records, got {rows.num_rows} rows with "
            f"{'; '.join(problems)}; it must return the current row of each asked record exactly once"
        )
    return rows


def _chain_rows(losers: pa.Array, winners: pa.Array, start: pa.Array) -> pa.Array:
    """Mask of the merge map rows reachable from losers in `start` by following winner -> loser."""
    mask = pc.is_in(losers, value_set=start)
    step = mask
    for _ in range(_MAX_CHAIN_STEPS):
        frontier = winners.filter(step)
        step = pc.and_(pc.is_in(losers, value_set=frontier), pc.invert(mask))
        if not pc.any(step).as_py():
            break
        mask = pc.or_(mask, step)
    return mask


def _merge_ghosts(
    previous: PreviousState,
    merged_sources: pa.Table | None,
    removed_links: pa.Table,
    changed_ids: pa.Array,
    removed_ids: pa.Array,
) -> tuple[Ghosts, pa.Table]:
    """Claims of removed merge losers, and the previous links of their (unchanged) winners."""
    none = (Ghosts.none(changed_ids.type), removed_links.slice(0, 0))
    if merged_sources is None or removed_links.num_rows == 0:
        return none
    losers, winners = merge_pairs(merged_sources, changed_ids.type)
    rows = _chain_rows(losers, winners, removed_links["source_id"].combine_chunks())
    losers, winners = losers.filter(rows), winners.filter(rows)
    if len(losers) == 0:
        return none
    mentioned = pc.unique(pa.concat_arrays([losers, winners]))
    known = previous.lookup("links", "source_id", _without(mentioned, changed_ids))
    still_there = _without(known["source_id"].combine_chunks(), removed_ids)
    present = pa.concat_arrays([changed_ids, still_there])
    ghosts = resolve_ghosts(losers, winners, present, removed_links)
    winner_links = known.filter(pc.is_in(known["source_id"], value_set=ghosts.winners))
    return ghosts, winner_links


def _keys_only(table: str, rows: pa.Table) -> pa.Table:
    return rows.select(list(KEY_COLUMNS[table]))


@dataclass(frozen=True)
class _Affected:
    """The previous clusters a tick can change, and what reclustering them needs from the state."""

    dirty: pa.Array  # their unified ids
    members: pa.Table  # their previous links: every member, changed or not
    removed_links: pa.Table  # previous links of the removed records
    ghosts: Ghosts


def _affected(
    previous: PreviousState,
    new_keys: pa.Table,
    changed_ids: pa.Array,
    removed_ids: pa.Array,
    merged_sources: pa.Table | None,
    fresh: bool,
) -> _Affected:
    """Clusters of touched records, of records sharing a changed record's new key, of merge winners."""
    touched = pa.concat_arrays([changed_ids, removed_ids])
    sharing = previous.lookup("match_keys", "key_hash", pc.unique(new_keys["key_hash"].combine_chunks()))
    candidates = pc.unique(pa.concat_arrays([touched, sharing["source_id"].combine_chunks()]))
    candidate_links = previous.lookup("links", "source_id", candidates)
    if fresh and candidate_links.num_rows:
        raise ValueError("previous state: it has links but no config; build it with state_tables()")
    removed_links = candidate_links.filter(pc.is_in(candidate_links["source_id"], value_set=removed_ids))
    ghosts, winner_links = _merge_ghosts(previous, merged_sources, removed_links, changed_ids, removed_ids)
    dirty = pc.unique(pa.concat_tables([candidate_links, winner_links])["unified_id"].combine_chunks())
    members = previous.lookup("links", "unified_id", dirty)
    return _Affected(dirty=dirty, members=members, removed_links=removed_links, ghosts=ghosts)


def _deltas(
    previous: PreviousState,
    affected: _Affected,
    outcome: Outcome,
    registry: pa.Table,
    new_keys: pa.Table,
    touched: pa.Array,
    config: pa.Table | None,
) -> dict[str, TableDelta]:
    """Each table's rows that differ from the stored ones, and the keys that are gone."""
    old_unified = previous.lookup("unified", "unified_id", affected.dirty)
    old_keys = previous.lookup("match_keys", "source_id", touched)
    live = outcome.unified["unified_id"].combine_chunks()
    return {
        "unified": TableDelta(
            upserts=changed_rows(outcome.unified, old_unified, KEY_COLUMNS["unified"]),
            deletes=pa.table({"unified_id": _without(affected.dirty, live)}).sort_by("unified_id"),
        ),
        "links": TableDelta(
            upserts=changed_rows(outcome.links, affected.members, KEY_COLUMNS["links"]),
            deletes=_keys_only("links", affected.removed_links).sort_by("source_id"),
        ),
        "id_lineage": TableDelta(  # an id is retired once, and lineage is never withdrawn
            upserts=outcome.retired, deletes=_keys_only("id_lineage", LINEAGE_SCHEMA.empty_table())
        ),
        "ids": TableDelta(
            upserts=changed_rows(outcome.registry, registry, KEY_COLUMNS["ids"]),
            deletes=_keys_only("ids", registry.slice(0, 0)),  # ids are never forgotten
        ),
        "match_keys": TableDelta(
            upserts=changed_rows(new_keys, old_keys, KEY_COLUMNS["match_keys"]),
            deletes=missing_keys(old_keys, new_keys, KEY_COLUMNS["match_keys"]),
        ),
        "config": TableDelta(  # written once, by the run that starts the state
            upserts=config if config is not None else CONFIG_SCHEMA.empty_table(),
            deletes=_keys_only("config", CONFIG_SCHEMA.empty_table()),
        ),
    }


def unify_changes(
    previous: PreviousState,
    *,
    changed: pa.Table,
    removed: pa.Array | pa.ChunkedArray | Sequence[int | str],
    records_by_id: RecordsById,
    id_column: str,
    rules: Sequence[MatchRule],
    entity: Entity,
    now: datetime,
    merged_sources: pa.Table | None = None,
) -> UnificationChanges:
    """Upserts and deletes for every unification table after `changed` and `removed`; see the module
    docstring for the contract. `changed` may be empty, and must hold every column of the records."""
    check_inputs(changed, id_column, rules, entity, now)
    config = config_table(entity, id_column, rules, changed.schema)
    fresh = check_config(previous.config(), config)
    changed, changed_ids = sorted_by_id(changed, id_column, "changed")
    removed_ids = _as_ids(removed, changed_ids.type)
    both = removed_ids.filter(pc.is_in(removed_ids, value_set=changed_ids))
    if len(both):
        raise ValueError(f"removed: id {both[0].as_py()!r} is also in changed; a record is either changed "
                         "(present, with its new row) or removed")
    touched = pa.concat_arrays([changed_ids, removed_ids])
    new_keys = key_hash_rows(changed, changed_ids, rules)
    affected = _affected(previous, new_keys, changed_ids, removed_ids, merged_sources, fresh)

    unchanged = _without(affected.members["source_id"].combine_chunks(), touched)
    fetched = _fetch(records_by_id, unchanged, changed, id_column)
    records, source_ids = sorted_by_id(pa.concat_tables([changed, fetched]), id_column)
    registry = previous.lookup("ids", "unified_id", affected.dirty)

    def is_issued(ids: pa.Array) -> np.ndarray:
        found = previous.lookup("ids", "unified_id", ids)["unified_id"]
        return pc.is_in(ids, value_set=found.combine_chunks()).to_numpy(zero_copy_only=False)

    outcome = unify_rows(
        records,
        source_ids,
        id_column=id_column,
        rules=rules,
        previous_links=affected.members,
        ghosts=affected.ghosts,
        registry=registry,
        is_issued=is_issued,
        entity=entity,
        now=now,
    )
    deltas = _deltas(previous, affected, outcome, registry, new_keys, touched, config if fresh else None)
    return UnificationChanges(
        deltas=deltas, affected_records=records.num_rows, affected_clusters=len(affected.dirty)
    )
