"""Stable unified ids: claims of previous ids, survivors of merged clusters, new ids, the id registry.

Semantics are in engine.py's module docstring. Everything here works on whatever rows it is given: the
full table (`unify`) or only the affected clusters (`unify_changes`); the results are the same because a
claim, a survivor and a new id depend only on the members of the clusters involved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.unification.ids import IsIssued, derive_unused_ids
from molequle_dagster.unification.schemas import IDS_SCHEMA, MERGED_SOURCES_COLUMNS, TIMESTAMP

_MAX_MERGE_HOPS = 8  # pointer-jumping rounds: chains up to 2**8 merges long


def previous_ids(source_ids: pa.Array, previous_links: pa.Table | None) -> pa.Array:
    """The previous unified id of each source id (null when it had none)."""
    if previous_links is None or previous_links.num_rows == 0:
        return pa.nulls(len(source_ids), pa.string())
    prev_sources = pc.cast(previous_links["source_id"], source_ids.type)
    position = pc.index_in(source_ids, value_set=prev_sources)
    return pc.take(previous_links["unified_id"], position).combine_chunks()


# --- Marketo merges ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ghosts:
    """Merge losers gone since the previous run: each claims its old id from its present winner's cluster."""

    losers: pa.Array
    winners: pa.Array
    old_ids: pa.Array

    @classmethod
    def none(cls, id_type: pa.DataType) -> Ghosts:
        return cls(pa.array([], id_type), pa.array([], id_type), pa.array([], pa.string()))


def merge_pairs(merged_sources: pa.Table | None, id_type: pa.DataType) -> tuple[pa.Array, pa.Array]:
    """(losers, winners) of the Marketo merge map, in its row order, as `id_type`."""
    if merged_sources is None or merged_sources.num_rows == 0:
        return pa.array([], id_type), pa.array([], id_type)
    missing = [c for c in MERGED_SOURCES_COLUMNS if c not in merged_sources.column_names]
    if missing:
        raise ValueError(f"merged_sources: missing columns {missing}; expected loser_id and winner_id")
    losers = pc.cast(merged_sources["loser_id"], id_type).combine_chunks()
    winners = pc.cast(merged_sources["winner_id"], id_type).combine_chunks()
    return losers, winners


def resolve_ghosts(
    losers: pa.Array, winners: pa.Array, present: pa.Array, previous_links: pa.Table | None
) -> Ghosts:
    """Follow merge chains (a into b, b into c) to a present winner; keep losers that are gone now.

    `present` must hold every present id among `losers` and `winners` (more is fine); `previous_links`
    the previous links of the losers. Given the same chains, a sub-map gives the same result as the whole.
    """
    for _ in range(_MAX_MERGE_HOPS):
        hop = pc.index_in(winners, value_set=losers)
        hop = pc.if_else(pc.is_in(winners, value_set=present), pa.scalar(None, hop.type), hop)
        if hop.null_count == len(hop):
            break
        winners = pc.coalesce(pc.take(winners, hop), winners)
    gone = pc.invert(pc.is_in(losers, value_set=present))
    usable = pc.and_(gone, pc.is_in(winners, value_set=present))
    losers, winners = losers.filter(usable), winners.filter(usable)
    old_ids = previous_ids(losers, previous_links)
    known = old_ids.is_valid()
    return Ghosts(losers.filter(known), winners.filter(known), old_ids.filter(known))


# --- claims and survivors ----------------------------------------------------------------------------
def claims(
    source_ids: pa.Array, comp_of_row: np.ndarray, prior_ids: pa.Array, ghosts: Ghosts
) -> pa.Table:
    """One row per previous id: the component holding its smallest-source-id member still present."""
    ghost_rows = pc.index_in(ghosts.winners, value_set=source_ids)
    if ghost_rows.null_count:
        raise AssertionError("merge winners must be among the rows being unified")
    ghost_comps = comp_of_row[ghost_rows.to_numpy().astype(np.int64)]
    has_previous = prior_ids.is_valid()
    claim_sources = pa.concat_arrays([source_ids.filter(has_previous), ghosts.losers])
    claim_comps = np.concatenate([comp_of_row[has_previous.to_numpy(zero_copy_only=False)], ghost_comps])
    claim_ids = pa.concat_arrays([prior_ids.filter(has_previous), ghosts.old_ids])
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


def first_seen(unified_ids: pa.Array, registry: pa.Table, now: pa.Scalar) -> pa.Array:
    position = pc.index_in(unified_ids, value_set=registry["unified_id"])
    return pc.fill_null(pc.take(registry["first_seen_at"], position), now).combine_chunks()


@dataclass(frozen=True)
class Assignment:
    comp_ids: pa.Array  # unified id per component
    retired: pa.Table  # retired_id, survivor_id (sorted by retired_id)
    new_ids: pa.Array


def assign_ids(
    entity: str,
    source_ids: pa.Array,
    comp_roots: np.ndarray,
    claimed: pa.Table,
    registry: pa.Table,
    is_issued: IsIssued,
    now: pa.Scalar,
) -> Assignment:
    """Survivor per component (oldest claim), retired claims, new ids for unclaimed components.

    `registry` must hold the rows of every claimed id; `is_issued` answers for any id.
    """
    claimed = claimed.append_column(
        "first_seen_at", first_seen(claimed["unified_id"].combine_chunks(), registry, now)
    )
    claimed = claimed.sort_by(
        [("comp", "ascending"), ("first_seen_at", "ascending"), ("unified_id", "ascending")]
    )
    comps = claimed["comp"].to_numpy()
    leads = np.ones(len(comps), dtype=bool)
    leads[1:] = comps[1:] != comps[:-1]
    survivors = claimed.filter(pa.array(leads))
    survivor_of_claim = np.cumsum(leads) - 1
    retired_rows = pa.array(~leads)
    retired = pa.table(
        {
            "retired_id": claimed["unified_id"].filter(retired_rows),
            "survivor_id": survivors["unified_id"].take(pa.array(survivor_of_claim)).filter(retired_rows),
        }
    ).sort_by("retired_id")

    has_claim = np.zeros(len(comp_roots), dtype=bool)
    has_claim[survivors["comp"].to_numpy()] = True
    unclaimed = np.nonzero(~has_claim)[0]
    new_ids = derive_unused_ids(entity, source_ids.take(pa.array(comp_roots[unclaimed])), is_issued)
    comp_order = np.concatenate([survivors["comp"].to_numpy(), unclaimed])
    all_ids = pa.concat_arrays([survivors["unified_id"].combine_chunks(), new_ids])
    comp_ids = all_ids.take(pa.array(np.argsort(comp_order, kind="stable")))
    return Assignment(comp_ids=comp_ids, retired=retired, new_ids=new_ids)


def next_registry(registry: pa.Table, assignment: Assignment, now: pa.Scalar) -> pa.Table:
    """`registry`'s rows with this run's statuses, plus the new ids; sorted by unified_id.

    An active id that no component holds and that was not retired has vanished. Given only the rows of
    the affected ids, this returns exactly those rows of the full next registry.
    """
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
