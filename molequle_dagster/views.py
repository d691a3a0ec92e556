"""Reading Molequle's tables: stored ones from the lake, and the views computed on read from them.

`read_pandas(name)` reads either kind into pandas (the documented way, see the README).

`activities`: the configured activity types of `marketo_activities`, with Marketo's deletions and merges
applied (see `sync/overlay.py`). Reading it costs one pass over the requested days plus the small
deletion and merge maps; no write is ever needed to make a deletion visible.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.lake import Lake, LakeError
from molequle_dagster.settings import MolequleSettings, load_settings
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


def default_lake_uri() -> str:
    return load_settings().storage.lake_uri  # $MOLEQULE_LAKE_URI overrides it (settings.ENV_OVERRIDES)


def read_pandas(table_name: str, lake_uri: str | None = None) -> Any:
    """Any lake table or view as a pandas DataFrame; the lake is the settings' unless `lake_uri` is given."""
    lake = Lake(lake_uri or default_lake_uri())
    if table_name in VIEWS:
        table = VIEWS[table_name](lake, load_settings())
        if table is None:
            raise LakeError(f"view {table_name!r} has no data yet under {lake.location(table_name)}")
        return table.to_pandas()
    return lake.read_table(table_name).to_pandas()
