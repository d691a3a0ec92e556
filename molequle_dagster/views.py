"""Tables Molequle reads that are computed on read from stored ones.

`activities`: the configured activity types of `marketo_activities`, with Marketo's deletions and merges
applied (see `sync/overlay.py`). Reading it costs one pass over the requested days plus the small
deletion and merge maps; no write is ever needed to make a deletion visible.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.lake import Lake
from molequle_dagster.settings import MolequleSettings
from molequle_dagster.sync import overlay

MARKETO_ACTIVITIES = "marketo_activities"
TOMBSTONES = "person_tombstones"
MERGES = "person_merges"


def lifecycle_maps(lake: Lake) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(deleted lead ids, merged-away ids, the winner each ends in)."""
    tombstones = lake.read_current(TOMBSTONES, ["id"])
    merges = lake.read_current(MERGES, ["loser_id", "winner_id"])
    deleted = (
        tombstones["id"].combine_chunks().cast(pa.int64())
        if tombstones is not None
        else pa.array([], pa.int64())
    )
    if merges is None or merges.num_rows == 0:
        return deleted, pa.array([], pa.int64()), pa.array([], pa.int64())
    losers, winners = overlay.final_winners(
        merges["loser_id"].combine_chunks(), merges["winner_id"].combine_chunks()
    )
    return deleted, losers, winners


def read_activities(
    lake: Lake,
    settings: MolequleSettings,
    days: Iterable[str] | None = None,
    columns: list[str] | None = None,
) -> pa.Table | None:
    wanted = None if columns is None else list(dict.fromkeys([*columns, "leadId", "activityTypeId"]))
    raw = lake.days(MARKETO_ACTIVITIES).read_days(days, wanted)
    if raw is None:
        return None
    configured = pa.array(settings.activities.type_ids, pa.int32())
    raw = raw.filter(pc.is_in(raw["activityTypeId"].cast(pa.int32()), value_set=configured))
    table = overlay.apply(raw, *lifecycle_maps(lake))
    return table if columns is None else table.select(columns)


VIEWS = {"activities": read_activities}
