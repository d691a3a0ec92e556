"""Marketo's deletions and merges applied to activity rows, as Marketo applies them to its own history:
a deleted lead's activities vanish, a merged-away lead's activities belong to the lead it ended in.

Applied when activities are read (cheap: the deletion and merge maps are small), so a deletion or merge
costs no rewrite of the days it touches; `compaction` below decides when a day is worth rewriting.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def final_winners(losers: pa.Array, winners: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Each losing id and the winner it ends with, following chains (A→B then B→C gives A→C)."""
    pairs = dict(zip(losers.to_pylist(), winners.to_pylist(), strict=True))
    final = {}
    for loser in pairs:
        winner, hops = pairs[loser], 0
        while winner in pairs and hops < len(pairs):  # the bound: a cycle cannot loop forever
            winner, hops = pairs[winner], hops + 1
        final[loser] = winner
    return pa.array(list(final), pa.int64()), pa.array(list(final.values()), pa.int64())


def apply(activities: pa.Table, deleted: pa.Array, losers: pa.Array, winners: pa.Array) -> pa.Table:
    """Remap merged-away leads first, then drop deleted ones: a loser whose winner was deleted is gone."""
    if activities.num_rows == 0:
        return activities
    lead = activities["leadId"]
    if len(losers):
        index = pc.index_in(lead, value_set=losers)
        lead = pc.if_else(pc.is_valid(index), pc.take(winners, index), lead)
        activities = activities.set_column(activities.column_names.index("leadId"), "leadId", lead)
    if len(deleted):
        activities = activities.filter(pc.invert(pc.fill_null(pc.is_in(lead, value_set=deleted), False)))
    return activities


def stale_share(leads: pa.ChunkedArray | pa.Array, affected: pa.Array) -> tuple[int, float]:
    """How many rows of a day belong to deleted or merged-away leads, and their share of the day."""
    if len(leads) == 0 or len(affected) == 0:
        return 0, 0.0
    hits = int(pc.sum(pc.fill_null(pc.is_in(leads, value_set=affected), False)).as_py() or 0)
    return hits, hits / len(leads)
