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
    Every call recomputes the clustering from the full current table (vectorised: normalizers in Arrow,
    group codes and union-find in numpy). scripts/bench_unification.py measured, on the 2-core dev box,
    1M people: first run ~4.5 s, 1%-churn rerun ~4.6 s, peak RSS ~0.9 GB incl. the input. That is far
    below the 30-minute sync interval, so an incremental variant (which must still detect splits, i.e.
    re-cluster every touched cluster) is not worth its complexity yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.unification.components import connected_components
from molequle_dagster.unification.ids import derive_unused_ids
from molequle_dagster.unification.normalize import normalize_column
from molequle_dagster.unification.rules import validate_rules

if TYPE_CHECKING:  # types only: settings.py may import this package at load time
    from molequle_dagster.settings import MatchRule

Entity = Literal["person", "account"]
TIMESTAMP = pa.timestamp("us", tz="UTC")
CREATED_COLUMN = "createdAt"
UPDATED_COLUMN = "updatedAt"

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


@dataclass(frozen=True)
class UnificationState:
    """What the next run needs as `previous`; store each table of `to_tables()` (e.g. as Parquet).

    links: source_id, unified_id (this run's assignment); ids: every id ever issued (IDS_SCHEMA), so ids
    are never reused; id_lineage: cumulative (LINEAGE_SCHEMA).
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
            ids=_conform(tables["ids"], IDS_SCHEMA, "ids"),
            id_lineage=_conform(tables["id_lineage"], LINEAGE_SCHEMA, "id_lineage"),
        )


@dataclass(frozen=True)
class UnificationResult:
    links: pa.Table  # source_id, unified_id, matched_rule (null for singletons); sorted by source_id
    unified: pa.Table  # unified_id, member_count, first_seen_at, representative columns; sorted by id
    id_lineage: pa.Table  # LINEAGE_SCHEMA, cumulative
    state: UnificationState


def _conform(table: pa.Table, schema: pa.Schema, name: str) -> pa.Table:
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise ValueError(f"previous unification state: {name} lacks columns {missing}")
    return table.select(schema.names).cast(schema)


# --- input checks ------------------------------------------------------------------------------------
def _check_inputs(
    records: pa.Table,
    id_column: str,
    rules: Sequence[MatchRule],
    entity: str,
    now: datetime,
    previous: UnificationState | None,
) -> None:
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
    if previous is not None and previous.entity != entity:
        raise ValueError(f"previous: state belongs to {previous.entity!r}, not {entity!r}")


def _sorted_by_id(records: pa.Table, id_column: str) -> tuple[pa.Table, pa.Array]:
    """Rows in source-id order (so row index order == source id order) and the ids as one array."""
    ids = records[id_column]
    if ids.null_count:
        raise ValueError(
            f"records: id column {id_column!r} has {ids.null_count} null values; every record needs an id"
        )
    target = pa.int64() if pa.types.is_integer(ids.type) else pa.string()
    records = records.take(pc.sort_indices(ids))
    source_ids = pc.cast(records[id_column], target).combine_chunks()
    if len(source_ids) > 1:
        same_as_next = pc.equal(source_ids.slice(1), source_ids.slice(0, len(source_ids) - 1))
        if pc.any(same_as_next).as_py():
            first = source_ids.slice(1).filter(same_as_next)[0].as_py()
            raise ValueError(f"records: id column {id_column!r} has duplicate values, e.g. {first!r}")
    return records, source_ids


# --- matching ----------------------------------------------------------------------------------------
def _codes(values: pa.Array) -> np.ndarray:
    """Dense group code per row (by value); -1 for null."""
    encoded = pc.dictionary_encode(values)
    return pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int64)


def _rule_group_codes(records: pa.Table, rule: MatchRule) -> np.ndarray:
    """One code per row: equal codes <=> all keys equal and non-null; -1 when any key is null."""
    combined: np.ndarray | None = None
    for key in rule.keys:
        codes = _codes(normalize_column(records[key.field], key.normalize))
        if combined is None:
            combined = codes
            continue
        missing = (combined < 0) | (codes < 0)
        paired = combined * (int(codes.max(initial=0)) + 1) + codes
        paired[missing] = -1
        # re-densify so the next pairing cannot overflow int64
        dense = np.unique(paired, return_inverse=True)[1].astype(np.int64)
        combined = np.where(missing, -1, dense)
    assert combined is not None  # rules have at least one key (validated)
    return combined


def _match(records: pa.Table, rules: Sequence[MatchRule]) -> tuple[np.ndarray, np.ndarray]:
    """Component label per row (= smallest row index of its cluster) and first matching rule (-1 = none)."""
    count = records.num_rows
    matched_rule = np.full(count, -1, dtype=np.int32)
    lefts, rights = [], []
    for rule_index, rule in enumerate(rules):
        codes = _rule_group_codes(records, rule)
        rows = np.nonzero(codes >= 0)[0]
        if rows.size == 0:
            continue
        _, first_pos, inverse, sizes = np.unique(
            codes[rows], return_index=True, return_inverse=True, return_counts=True
        )
        group_root = rows[first_pos][inverse]  # smallest row of the group: a star centre
        shared = sizes[inverse] > 1
        newly = rows[shared & (matched_rule[rows] < 0)]
        matched_rule[newly] = rule_index
        spoke = group_root != rows
        lefts.append(rows[spoke])
        rights.append(group_root[spoke])
    empty = np.zeros(0, dtype=np.int64)
    labels = connected_components(
        count, np.concatenate(lefts) if lefts else empty, np.concatenate(rights) if rights else empty
    )
    return labels, matched_rule


# --- stable ids --------------------------------------------------------------------------------------
def _previous_ids_per_row(source_ids: pa.Array, previous: UnificationState | None) -> pa.Array:
    if previous is None or previous.links.num_rows == 0:
        return pa.nulls(len(source_ids), pa.string())
    prev_sources = pc.cast(previous.links["source_id"], source_ids.type)
    position = pc.index_in(source_ids, value_set=prev_sources)
    return pc.take(previous.links["unified_id"], position).combine_chunks()


def _ghost_claims(
    source_ids: pa.Array,
    comp_of_row: np.ndarray,
    previous: UnificationState | None,
    merged_sources: pa.Table | None,
) -> tuple[pa.Array, np.ndarray, pa.Array]:
    """Claims of Marketo merge losers (gone now) on their old id, placed in the winner's cluster."""
    none = (pa.array([], source_ids.type), np.zeros(0, np.int64), pa.array([], pa.string()))
    if previous is None or merged_sources is None or merged_sources.num_rows == 0:
        return none
    missing = [c for c in MERGED_SOURCES_COLUMNS if c not in merged_sources.column_names]
    if missing:
        raise ValueError(f"merged_sources: missing columns {missing}; expected loser_id and winner_id")
    losers = pc.cast(merged_sources["loser_id"], source_ids.type).combine_chunks()
    winners = pc.cast(merged_sources["winner_id"], source_ids.type).combine_chunks()
    for _ in range(8):  # follow chains (a merged into b, b into c) to a present winner
        hop = pc.index_in(winners, value_set=losers)
        hop = pc.if_else(pc.is_in(winners, value_set=source_ids), pa.scalar(None, hop.type), hop)
        if hop.null_count == len(hop):
            break
        winners = pc.coalesce(pc.take(winners, hop), winners)
    gone = pc.invert(pc.is_in(losers, value_set=source_ids))
    winner_row = pc.index_in(winners, value_set=source_ids)
    usable = pc.and_(gone, winner_row.is_valid())
    losers, winner_row = losers.filter(usable), winner_row.filter(usable)
    old_ids = _previous_ids_per_row(losers, previous)
    known = old_ids.is_valid()
    rows = winner_row.filter(known).to_numpy().astype(np.int64)
    return losers.filter(known), comp_of_row[rows], old_ids.filter(known)


def _claims(
    source_ids: pa.Array,
    comp_of_row: np.ndarray,
    previous_ids: pa.Array,
    ghosts: tuple[pa.Array, np.ndarray, pa.Array],
) -> pa.Table:
    """One row per previous id: the component holding its smallest-source-id member still present."""
    has_previous = previous_ids.is_valid()
    claim_sources = pa.concat_arrays([source_ids.filter(has_previous), ghosts[0]])
    claim_comps = np.concatenate([comp_of_row[has_previous.to_numpy(zero_copy_only=False)], ghosts[1]])
    claim_ids = pa.concat_arrays([previous_ids.filter(has_previous), ghosts[2]])
    if len(claim_ids) == 0:
        return pa.table({"unified_id": pa.array([], pa.string()), "comp": pa.array([], pa.int64())})
    order = pc.sort_indices(claim_sources).to_numpy()
    claim_ids = claim_ids.take(pa.array(order))
    encoded = pc.dictionary_encode(claim_ids)
    _, first_pos = np.unique(encoded.indices.to_numpy(), return_index=True)
    return pa.table(
        {
            "unified_id": claim_ids.take(pa.array(first_pos)),
            "comp": pa.array(claim_comps[order][first_pos], pa.int64()),
        }
    )


def _first_seen(unified_ids: pa.Array, registry: pa.Table, now: pa.Scalar) -> pa.Array:
    position = pc.index_in(unified_ids, value_set=registry["unified_id"])
    return pc.fill_null(pc.take(registry["first_seen_at"], position), now).combine_chunks()


@dataclass(frozen=True)
class _Assignment:
    comp_ids: pa.Array  # unified id per component
    retired: pa.Table  # retired_id, survivor_id
    new_ids: pa.Array


def _assign_ids(
    entity: str,
    source_ids: pa.Array,
    comp_roots: np.ndarray,
    claims: pa.Table,
    registry: pa.Table,
    now: pa.Scalar,
) -> _Assignment:
    claims = claims.append_column(
        "first_seen_at", _first_seen(claims["unified_id"].combine_chunks(), registry, now)
    )
    claims = claims.sort_by(
        [("comp", "ascending"), ("first_seen_at", "ascending"), ("unified_id", "ascending")]
    )
    comps = claims["comp"].to_numpy()
    leads = np.ones(len(comps), dtype=bool)
    leads[1:] = comps[1:] != comps[:-1]
    survivors = claims.filter(pa.array(leads))
    survivor_of_claim = np.cumsum(leads) - 1
    retired_rows = pa.array(~leads)
    retired = pa.table(
        {
            "retired_id": claims["unified_id"].filter(retired_rows),
            "survivor_id": survivors["unified_id"].take(pa.array(survivor_of_claim)).filter(retired_rows),
        }
    ).sort_by("retired_id")

    claimed = np.zeros(len(comp_roots), dtype=bool)
    claimed[survivors["comp"].to_numpy()] = True
    unclaimed = np.nonzero(~claimed)[0]
    new_ids = derive_unused_ids(
        entity, source_ids.take(pa.array(comp_roots[unclaimed])), registry["unified_id"].combine_chunks()
    )
    comp_order = np.concatenate([survivors["comp"].to_numpy(), unclaimed])
    all_ids = pa.concat_arrays([survivors["unified_id"].combine_chunks(), new_ids])
    comp_ids = all_ids.take(pa.array(np.argsort(comp_order, kind="stable")))
    return _Assignment(comp_ids=comp_ids, retired=retired, new_ids=new_ids)


def _next_registry(registry: pa.Table, assignment: _Assignment, now: pa.Scalar) -> pa.Table:
    active = pc.is_in(registry["unified_id"], value_set=assignment.comp_ids)
    retired = pc.is_in(registry["unified_id"], value_set=assignment.retired["retired_id"])
    was_active = pc.equal(registry["status"], "active")
    status = pc.if_else(
        active,
        "active",
        pc.if_else(retired, "retired", pc.if_else(was_active, "vanished", registry["status"])),
    )
    changed = pc.if_else(pc.equal(status, registry["status"]), registry["status_changed_at"], now)
    kept = pa.table(
        {
            "unified_id": registry["unified_id"],
            "first_seen_at": registry["first_seen_at"],
            "status": status,
            "status_changed_at": changed,
        },
        schema=IDS_SCHEMA,
    )
    count = len(assignment.new_ids)
    added = pa.table(
        {
            "unified_id": assignment.new_ids,
            "first_seen_at": pa.repeat(now, count) if count else pa.array([], TIMESTAMP),
            "status": pa.array(["active"] * count, pa.string()),
            "status_changed_at": pa.repeat(now, count) if count else pa.array([], TIMESTAMP),
        },
        schema=IDS_SCHEMA,
    )
    return pa.concat_tables([kept, added]).sort_by("unified_id")


# --- representative values ---------------------------------------------------------------------------
def _int_key(column: pa.ChunkedArray, missing: int) -> np.ndarray:
    values = pc.cast(column, pa.int64()) if not pa.types.is_integer(column.type) else column
    return pc.fill_null(values, missing).to_numpy().astype(np.int64)


def _first_valid(
    values: pa.ChunkedArray, comp_of_row: np.ndarray, order: np.ndarray, comp_count: int
) -> pa.Array:
    """Per component, the value of the first row in `order` that has a non-null, non-empty value."""
    valid = values.is_valid()
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        valid = pc.and_(valid, pc.not_equal(pc.fill_null(values, ""), ""))
    valid_np = (
        valid.to_numpy()
        if isinstance(valid, pa.Array)
        else valid.combine_chunks().to_numpy(zero_copy_only=False)
    )
    rows = order[valid_np[order]]
    comps = comp_of_row[rows]
    leads = np.ones(len(comps), dtype=bool)
    leads[1:] = comps[1:] != comps[:-1]
    pick = np.full(comp_count, -1, dtype=np.int64)
    pick[comps[leads]] = rows[leads]
    return pc.take(values, pa.array(pick, mask=pick < 0)).combine_chunks()


def _representatives(
    records: pa.Table, id_column: str, comp_of_row: np.ndarray, comp_count: int
) -> dict[str, pa.Array]:
    rank = np.arange(records.num_rows, dtype=np.int64)  # rows are in source-id order
    low = np.iinfo(np.int64).min // 2
    names = records.column_names
    updated = _int_key(records[UPDATED_COLUMN], low) if UPDATED_COLUMN in names else np.zeros_like(rank)
    latest_first = np.lexsort((rank, -updated, comp_of_row))
    values: dict[str, pa.Array] = {}
    for name in names:
        if name == id_column:
            continue
        if name == CREATED_COLUMN:
            earliest_first = np.lexsort((rank, _int_key(records[name], -low), comp_of_row))
            values[name] = _first_valid(records[name], comp_of_row, earliest_first, comp_count)
        else:
            values[name] = _first_valid(records[name], comp_of_row, latest_first, comp_count)
    return values


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
    _check_inputs(records, id_column, rules, entity, now, previous)
    now_scalar = pa.scalar(now, TIMESTAMP)
    records, source_ids = _sorted_by_id(records, id_column)
    labels, matched_rule = _match(records, rules)
    comp_roots, comp_of_row = np.unique(labels, return_inverse=True)
    comp_of_row = comp_of_row.astype(np.int64)

    registry = previous.ids if previous is not None else IDS_SCHEMA.empty_table()
    previous_ids = _previous_ids_per_row(source_ids, previous)
    ghosts = _ghost_claims(source_ids, comp_of_row, previous, merged_sources)
    claims = _claims(source_ids, comp_of_row, previous_ids, ghosts)
    assignment = _assign_ids(entity, source_ids, comp_roots, claims, registry, now_scalar)

    rule_names = pa.array([rule.name for rule in rules], pa.string())
    links = pa.table(
        {
            "source_id": source_ids,
            "unified_id": assignment.comp_ids.take(pa.array(comp_of_row)),
            "matched_rule": rule_names.take(pa.array(matched_rule, mask=matched_rule < 0)),
        }
    )
    next_registry = _next_registry(registry, assignment, now_scalar)
    unified = pa.table(
        {
            "unified_id": assignment.comp_ids,
            "member_count": pa.array(np.bincount(comp_of_row, minlength=len(comp_roots)), pa.int64()),
            "first_seen_at": _first_seen(assignment.comp_ids, next_registry, now_scalar),
            **_representatives(records, id_column, comp_of_row, len(comp_roots)),
        }
    ).sort_by("unified_id")
    new_lineage = pa.table(
        {
            "retired_id": assignment.retired["retired_id"],
            "survivor_id": assignment.retired["survivor_id"],
            "reason": pa.array(["merge"] * assignment.retired.num_rows, pa.string()),
            "retired_at": pa.array([now] * assignment.retired.num_rows, TIMESTAMP),
        },
        schema=LINEAGE_SCHEMA,
    )
    previous_lineage = previous.id_lineage if previous is not None else LINEAGE_SCHEMA.empty_table()
    id_lineage = pa.concat_tables([previous_lineage, new_lineage])
    state = UnificationState(
        entity=entity,
        links=links.select(["source_id", "unified_id"]),
        ids=next_registry,
        id_lineage=id_lineage,
    )
    return UnificationResult(links=links, unified=unified, id_lineage=id_lineage, state=state)
