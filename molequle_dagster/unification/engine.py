"""Unify people (or accounts) by the customer's ordered match rules, with stable unified ids.

Matching
    A rule is a list of keys (column + normalizer chain, see `normalize.py`). Two records match under a
    rule when every key's normalized value is non-null and equal for both. Records are the same entity
    when a chain of matches under any rules connects them (transitive closure = connected components).
    ``matched_rule`` of a link is the first rule, in settings order, under which the record matches at
    least one other record (that record is then in its cluster); null for singletons.

Stable ids (``up_…`` for people, ``ua_…`` for accounts)
    Each previous unified id U is *claimed* by the new cluster that holds U's smallest-source-id member
    still present (a Marketo merge loser counts as sitting where its winner sits, when `merged_sources`
    says so). So when a cluster splits, the part holding that member keeps U; the other parts are new.
    When a cluster holds several claims (clusters merged), the survivor is the oldest id: smallest
    ``first_seen_at``, ties by the id's text; every other claimed id is retired and mapped to the
    survivor in ``id_lineage`` (reason "merge", ``retired_at`` = `now`). A cluster without a claim gets a
    new id derived from a hash of its smallest source id (`ids.py`); an id is never issued twice, so
    retired/vanished ids are never reused. An id whose members all disappeared is "vanished" in the
    state's id registry (no lineage row: there is no survivor).
    Consequences: unrelated changes never move an id; the same input in any row order gives the same
    output; rerunning with the same input and previous state changes nothing (idempotent).
    "Smallest source id" means numeric order for integer ids (people) and UTF-8 byte order for text
    ids (accounts such as ``company:12`` / ``named:<guid>``).

Representative attributes (the ``unified`` table)
    One value per attribute column, taken from the members that have a non-null, non-empty value:
    ``createdAt`` = the earliest, ``updatedAt`` = the latest, any other column = the value of the most
    recently updated member (largest ``updatedAt`` when that column exists; ties and tables without it by
    the smallest source id).

Cost
    `unify` recomputes the clustering from the full current table (vectorised: normalizers in Arrow,
    group codes and union-find in numpy); scripts/bench_unification.py measured on the shared 2-core dev
    box, 1M people: ~5-7 s and ~0.65 GB above the input per run, whatever changed. It is for the first run
    and rebuilds (rules or synced columns changed). Ticks use `unify_changes` (incremental.py): the same
    rules, applied by the same code (`unify_rows`) to only the previous clusters a change can reach; at 1M
    people a 0.1%-churn tick takes ~0.2 s and a 1% tick ~0.4 s (docs/benchmarks.md), and its output is
    upserts and deletes per table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.unification.ids import IsIssued
from molequle_dagster.unification.matching import match
from molequle_dagster.unification.representatives import representatives
from molequle_dagster.unification.rules import validate_rules
from molequle_dagster.unification.schemas import (
    IDS_SCHEMA,
    LINEAGE_SCHEMA,
    MERGED_SOURCES_COLUMNS,
    TIMESTAMP,
    Entity,
    source_id_type,
)
from molequle_dagster.unification.stable_ids import (
    Ghosts,
    assign_ids,
    claims,
    first_seen,
    merge_pairs,
    next_registry,
    previous_ids,
    resolve_ghosts,
)

if TYPE_CHECKING:  # types only: settings.py may import this package at load time
    from molequle_dagster.unification.rules import MatchRule

__all__ = ["IDS_SCHEMA", "LINEAGE_SCHEMA", "MERGED_SOURCES_COLUMNS", "Entity", "UnificationResult",
           "UnificationState", "unify"]


@dataclass(frozen=True)
class UnificationState:
    """What the next full run needs as `previous`; store each table of `to_tables()` (e.g. as Parquet).

    links: source_id, unified_id (this run's assignment); ids: every id ever issued (IDS_SCHEMA), so ids
    are never reused; id_lineage: cumulative (LINEAGE_SCHEMA). The `links` and `id_lineage` outputs of a
    run (UnificationResult) are accepted as these tables too.
    """

    entity: Entity
    links: pa.Table
    ids: pa.Table
    id_lineage: pa.Table

    def to_tables(self) -> dict[str, pa.Table]:
        return {"links": self.links, "ids": self.ids, "id_lineage": self.id_lineage}

    @classmethod
    def from_tables(cls, entity: Entity, tables: dict[str, pa.Table]) -> UnificationState:
        """Rebuild a stored state; checks the shape so a wrong file fails here, not mid-run."""
        missing = {"links", "ids", "id_lineage"} - set(tables)
        if missing:
            raise ValueError(f"previous unification state: missing tables {sorted(missing)}")
        links = tables["links"]
        if {"source_id", "unified_id"} - set(links.column_names):
            raise ValueError("previous unification state: links needs columns source_id, unified_id")
        return cls(
            entity=entity,
            links=links.select(["source_id", "unified_id"]),
            ids=conform(tables["ids"], IDS_SCHEMA, "ids"),
            id_lineage=conform(tables["id_lineage"], LINEAGE_SCHEMA, "id_lineage"),
        )


@dataclass(frozen=True)
class UnificationResult:
    links: pa.Table  # source_id, unified_id, matched_rule (null for singletons); sorted by source_id
    unified: pa.Table  # unified_id, member_count, first_seen_at, representative columns; sorted by id
    id_lineage: pa.Table  # LINEAGE_SCHEMA, cumulative
    state: UnificationState


def conform(table: pa.Table, schema: pa.Schema, name: str) -> pa.Table:
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise ValueError(f"previous unification state: {name} lacks columns {missing}")
    return table.select(schema.names).cast(schema)


# --- input checks ------------------------------------------------------------------------------------
def check_inputs(
    records: pa.Table, id_column: str, rules: Sequence[MatchRule], entity: str, now: datetime
) -> None:
    """Entity, time, id column and rules; raises ValueError naming the argument and what was expected."""
    if entity not in ("person", "account"):
        raise ValueError(f"entity: expected 'person' or 'account', got {entity!r}")
    if now.tzinfo is None:
        raise ValueError("now: expected a timezone-aware datetime (UTC), got a naive one")
    if id_column not in records.column_names:
        raise ValueError(
            f"id_column: {id_column!r} is not a column of the records; "
            f"columns: {', '.join(records.column_names)}"
        )
    id_type = records.schema.field(id_column).type
    if not (pa.types.is_integer(id_type) or pa.types.is_string(id_type) or pa.types.is_large_string(id_type)):
        raise ValueError(f"id_column: {id_column!r} must hold integers or strings, got {id_type}")
    validate_rules(rules, set(records.column_names), entity)


def sorted_by_id(records: pa.Table, id_column: str, name: str = "records") -> tuple[pa.Table, pa.Array]:
    """Rows in source-id order (so row index order == source id order) and the ids as one array."""
    ids = records[id_column]
    if ids.null_count:
        raise ValueError(
            f"{name}: id column {id_column!r} has {ids.null_count} null values; every record needs an id"
        )
    records = records.take(pc.sort_indices(ids))
    source_ids = pc.cast(records[id_column], source_id_type(ids.type)).combine_chunks()
    if len(source_ids) > 1:
        same_as_next = pc.equal(source_ids.slice(1), source_ids.slice(0, len(source_ids) - 1))
        if pc.any(same_as_next).as_py():
            first = source_ids.slice(1).filter(same_as_next)[0].as_py()
            raise ValueError(f"{name}: id column {id_column!r} has duplicate values, e.g. {first!r}")
    return records, source_ids


# --- the shared core ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """One run over a set of records that is closed under matching (whole clusters only)."""

    links: pa.Table  # source_id, unified_id, matched_rule; sorted by source_id
    unified: pa.Table  # sorted by unified_id
    retired: pa.Table  # this run's lineage rows (LINEAGE_SCHEMA)
    registry: pa.Table  # the given registry rows with this run's statuses, plus the new ids


def unify_rows(
    records: pa.Table,
    source_ids: pa.Array,
    *,
    id_column: str,
    rules: Sequence[MatchRule],
    previous_links: pa.Table | None,
    ghosts: Ghosts,
    registry: pa.Table,
    is_issued: IsIssued,
    entity: str,
    now: datetime,
) -> Outcome:
    """Cluster `records` (sorted by id, see `sorted_by_id`) and assign stable ids.

    The result is the full run's answer for these records as long as they are whole clusters of the new
    input, `previous_links` holds the previous link of every one of them that had one plus those of every
    other previous member of their previous clusters, `ghosts` the merge losers claiming into them, and
    `registry` the rows of every previous id involved.
    """
    now_scalar = pa.scalar(now, TIMESTAMP)
    labels, matched_rule = match(records, rules)
    comp_roots, comp_of_row = np.unique(labels, return_inverse=True)
    comp_of_row = comp_of_row.astype(np.int64)

    prior_ids = previous_ids(source_ids, previous_links)
    claimed = claims(source_ids, comp_of_row, prior_ids, ghosts)
    assignment = assign_ids(entity, source_ids, comp_roots, claimed, registry, is_issued, now_scalar)

    rule_names = pa.array([rule.name for rule in rules], pa.string())
    links = pa.table(
        {
            "source_id": source_ids,
            "unified_id": assignment.comp_ids.take(pa.array(comp_of_row)),
            "matched_rule": rule_names.take(pa.array(matched_rule, mask=matched_rule < 0)),
        }
    )
    registry_after = next_registry(registry, assignment, now_scalar)
    unified = pa.table(
        {
            "unified_id": assignment.comp_ids,
            "member_count": pa.array(np.bincount(comp_of_row, minlength=len(comp_roots)), pa.int64()),
            "first_seen_at": first_seen(assignment.comp_ids, registry_after, now_scalar),
            **representatives(records, id_column, comp_of_row, len(comp_roots)),
        }
    ).sort_by("unified_id")
    retired_count = assignment.retired.num_rows
    retired = pa.table(
        {
            "retired_id": assignment.retired["retired_id"],
            "survivor_id": assignment.retired["survivor_id"],
            "reason": pa.array(["merge"] * retired_count, pa.string()),
            "retired_at": pa.array([now] * retired_count, TIMESTAMP),
        },
        schema=LINEAGE_SCHEMA,
    )
    return Outcome(links=links, unified=unified, retired=retired, registry=registry_after)


# --- the entry point ---------------------------------------------------------------------------------
def unify(
    records: pa.Table,
    *,
    id_column: str,
    rules: Sequence[MatchRule],
    previous: UnificationState | None,
    entity: Entity,
    now: datetime,
    merged_sources: pa.Table | None = None,
) -> UnificationResult:
    """Cluster `records` by `rules`, keep unified ids stable against `previous`, report lineage.

    `merged_sources` (optional; columns loser_id, winner_id) lists Marketo lead merges: a loser that is
    gone hands its previous unified id to the winner's cluster, so a merge retires an id instead of
    dropping it. See the module docstring for the exact semantics.
    """
    check_inputs(records, id_column, rules, entity, now)
    if previous is not None and previous.entity != entity:
        raise ValueError(f"previous: state belongs to {previous.entity!r}, not {entity!r}")
    records, source_ids = sorted_by_id(records, id_column)
    ghosts = Ghosts.none(source_ids.type)
    if previous is not None:
        losers, winners = merge_pairs(merged_sources, source_ids.type)
        ghosts = resolve_ghosts(losers, winners, source_ids, previous.links)
    registry = previous.ids if previous is not None else IDS_SCHEMA.empty_table()
    issued = registry["unified_id"].combine_chunks()
    outcome = unify_rows(
        records,
        source_ids,
        id_column=id_column,
        rules=rules,
        previous_links=previous.links if previous is not None else None,
        ghosts=ghosts,
        registry=registry,
        is_issued=lambda ids: pc.is_in(ids, value_set=issued).to_numpy(zero_copy_only=False),
        entity=entity,
        now=now,
    )
    previous_lineage = previous.id_lineage if previous is not None else LINEAGE_SCHEMA.empty_table()
    id_lineage = pa.concat_tables([previous_lineage, outcome.retired])
    state = UnificationState(
        entity=entity,
        links=outcome.links.select(["source_id", "unified_id"]),
        ids=outcome.registry,
        id_lineage=id_lineage,
    )
    return UnificationResult(links=outcome.links, unified=outcome.unified, id_lineage=id_lineage, state=state)
