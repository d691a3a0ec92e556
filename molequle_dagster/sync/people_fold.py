"""The people fold: how changed leads, smart-list membership, deletions and merges become the `people`
table's upserts and deletes. Pure: every input is an Arrow table; the asset does the reading.

Rules (identity is the Marketo lead id; a changed email updates the same row):
* a fetched row replaces ours only if it is newer (`_synced_at`), whatever order the runs finished in;
* `in_sync_list` is true exactly for the smart list's members at its last refresh;
* people who left the list are dropped, except merge winners (their history moved to them) and people
  fetched after the list's snapshot (they changed since, and may have joined it);
* deleted and merged-away ids never (re)appear.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.arrow_ops import SYNCED_AT, TS, dedupe_latest, is_in

IN_SYNC_LIST = "in_sync_list"


@dataclass
class PeopleDelta:
    upserts: pa.Table | None
    deletes: pa.Table | None  # {"id"}

    @property
    def changed(self) -> int:
        return (self.upserts.num_rows if self.upserts is not None else 0) + (
            self.deletes.num_rows if self.deletes is not None else 0
        )


def _ids(table: pa.Table | None, column: str = "id") -> pa.Array:
    if table is None or table.num_rows == 0:
        return pa.array([], pa.int64())
    return table[column].combine_chunks().cast(pa.int64())


def newest_rows(fetched: list[pa.Table], current: pa.Table | None) -> pa.Table | None:
    """The fetched rows that are new ids or newer than our current row for that id (one per id)."""
    parts = [t for t in fetched if t is not None and t.num_rows]
    if not parts:
        return None
    rows = dedupe_latest(pa.concat_tables(parts, promote_options="default"), "id", SYNCED_AT)
    if current is None or current.num_rows == 0:
        return rows
    ours = current.select(["id", SYNCED_AT]).rename_columns(["id", "__ours"])
    joined = rows.join(ours, "id", join_type="left outer")
    newer = pc.or_(
        pc.is_null(joined["__ours"]), pc.fill_null(pc.greater(joined[SYNCED_AT], joined["__ours"]), True)
    )
    return joined.filter(newer).drop_columns(["__ours"])


def fold_people(
    *,
    fetched: list[pa.Table],
    current: pa.Table | None,
    members_joined: pa.Array,
    members_left: pa.Array,
    is_member: pa.Array,
    removed: pa.Array,
    winners: pa.Array,
    list_refreshed_at: datetime | None,
) -> PeopleDelta:
    """One fold step.

    fetched: leads read since the last fold (updates days, and rows of people who joined the list).
    current: our rows for every id any input mentions (`id`, `_synced_at`, `in_sync_list`, fields).
    members_joined / members_left: ids that entered / left the smart list since the last fold.
    is_member: the list's member ids among the fetched ids (for `in_sync_list` of new rows).
    removed: deleted and merged-away ids (all known; they never reappear).
    winners: merge winners (kept when they leave the list).
    list_refreshed_at: when the list's snapshot was taken (people fetched later are kept).
    """
    upserts: list[pa.Table] = []
    newer = newest_rows(fetched, current)
    if newer is not None and newer.num_rows:
        newer = newer.filter(pc.invert(is_in(newer["id"], removed)))
        flag = is_in(newer["id"], is_member)
        base = newer.drop_columns([IN_SYNC_LIST]) if IN_SYNC_LIST in newer.column_names else newer
        upserts.append(base.append_column(IN_SYNC_LIST, flag))
    touched = _ids(upserts[0]) if upserts else pa.array([], pa.int64())
    deletes: list[pa.Array] = []
    if current is not None and current.num_rows:
        untouched = current.filter(pc.invert(is_in(current["id"], touched)))
        untouched = untouched.filter(pc.invert(is_in(untouched["id"], removed)))
        joined = untouched.filter(
            pc.and_(
                is_in(untouched["id"], members_joined),
                pc.invert(pc.fill_null(untouched[IN_SYNC_LIST], False)),
            )
        )
        if joined.num_rows:
            upserts.append(
                joined.set_column(
                    joined.column_names.index(IN_SYNC_LIST),
                    IN_SYNC_LIST,
                    pa.repeat(pa.scalar(True), joined.num_rows),
                )
            )
        left = untouched.filter(is_in(untouched["id"], members_left))
        if left.num_rows:
            keep = is_in(left["id"], winners)
            if list_refreshed_at is not None:
                cutoff = pa.scalar(list_refreshed_at, TS)
                keep = pc.or_(keep, pc.fill_null(pc.greater(left[SYNCED_AT].cast(TS), cutoff), False))
            kept = left.filter(keep)
            if kept.num_rows:
                upserts.append(
                    kept.set_column(
                        kept.column_names.index(IN_SYNC_LIST),
                        IN_SYNC_LIST,
                        pa.repeat(pa.scalar(False), kept.num_rows),
                    )
                )
            deletes.append(_ids(left.filter(pc.invert(keep))))
        deletes.append(_ids(current.filter(is_in(current["id"], removed))))
    # Removed ids are deleted even when our current row was not loaded (cheap: deleting an absent key is
    # a no-op in the keyed table).
    deletes.append(removed)
    upsert_table = pa.concat_tables(upserts, promote_options="default") if upserts else None
    delete_ids = pc.unique(pa.concat_arrays([d.cast(pa.int64()) for d in deletes])) if deletes else None
    delete_table = pa.table({"id": delete_ids}) if delete_ids is not None and len(delete_ids) else None
    return PeopleDelta(upsert_table, delete_table)
