"""The instance's mutation API: every change a Marketo instance can undergo, each one keeping all dependent
tables consistent (people, activities, memberships, static lists, merges, deleted leads, channels, programs).

Two forms. The convenience functions (`add_people`, `update_attribute`, `change_email`, `merge_leads`,
`delete_leads`, `set_membership_status`, `rename_status`, `add_activities`) take a datetime, validate their
input and lock the state. The batch forms (`insert_people`, `update_field`, `merge_groups`, `delete_ids`,
`set_statuses`, `add_programs`, `generate_activities`) take epoch seconds and expect the caller to hold
`state.lock`; the churn driver uses them so that one round on a million-person instance rebuilds each Arrow
table a handful of times, not once per edit. Deterministic: the same state, time and seed give the same
result.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.sandbox import catalog, generator, lead_fields
from molequle_dagster.sandbox.attributes import explicit_json, program_member_id, render_attributes
from molequle_dagster.sandbox.lead_view import LeadView, profile_seeds
from molequle_dagster.sandbox.model import (
    ACTIVITIES_SCHEMA,
    MEMBERSHIPS_SCHEMA,
    PEOPLE_SCHEMA,
    PROGRAMS_SCHEMA,
    TS,
    InstanceState,
)

EMAIL_PATTERN = re.compile(r"^[\x21-\x7e]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
MAX_CHUNKS = 64  # appends add chunks; compact the activities table past this many
REASON = "Changed by sandbox churn"
API_SOURCE = "Web service API"


# --- helpers ------------------------------------------------------------------------------------------


def epoch_s(now: datetime) -> int:
    return generator.epoch(now)


def _seconds(column: Any) -> np.ndarray:
    seconds = pc.fill_null(pc.cast(column, pa.int64()), 0)  # nulls become 0; callers keep their own mask
    return np.array(seconds.to_numpy(zero_copy_only=False), dtype=np.int64)  # a writable copy


def people_rows(
    state: InstanceState, lead_ids: Sequence[int] | np.ndarray, name: str = "lead_id"
) -> np.ndarray:
    """Row of each lead id in `state.people`; a clear error for ids that are not (or no longer) people."""
    ids = np.asarray(lead_ids, dtype=np.int64)
    rows = pc.index_in(pa.array(ids), value_set=state.people["id"].combine_chunks())
    if rows.null_count:
        missing = ids[pc.is_null(rows).to_numpy(zero_copy_only=False)][:5].tolist()
        raise ValueError(
            f"{name}: no current person with id {missing} (deleted, merged away or never existed)"
        )
    return rows.to_numpy().astype(np.int64)


def _replace_people(state: InstanceState, rows: np.ndarray, column: str, values: pa.Array) -> None:
    """Set `column` at `rows` (unique) to `values` (aligned with rows)."""
    order = np.argsort(rows)
    mask = np.zeros(state.people.num_rows, dtype=bool)
    mask[rows] = True
    index = state.people.schema.get_field_index(column)
    values = pc.cast(values, state.people.schema.field(column).type).take(pa.array(order))
    updated = pc.replace_with_mask(state.people[column].combine_chunks(), pa.array(mask), values)
    state.people = state.people.set_column(index, state.people.schema.field(column), updated)


def _touch_people(state: InstanceState, rows: np.ndarray, now_s: int, visible: bool) -> None:
    stamp = pa.array(np.full(len(rows), now_s, np.int64), TS)
    _replace_people(state, rows, "_modifiedAt", stamp)
    if visible:
        _replace_people(state, rows, "updatedAt", stamp)


def _full_names(state: InstanceState, rows: np.ndarray) -> list[str]:
    people = state.people.take(pa.array(rows))
    first, last = people["firstName"].to_pylist(), people["lastName"].to_pylist()
    return [" ".join(p for p in (f, surname) if p) for f, surname in zip(first, last, strict=True)]


def append_activities(
    state: InstanceState,
    now_s: int,
    lead_ids: np.ndarray,
    type_ids: np.ndarray,
    pav_ids: Sequence[int | None] | np.ndarray | None = None,
    pav_values: Sequence[str | None] | pa.Array | None = None,
    campaign_ids: np.ndarray | None = None,
    seeds: np.ndarray | None = None,
    attributes: Sequence[str | None] | None = None,
) -> np.ndarray:
    """Append activities dated `now`, keeping the table sorted by (activityDate, marketoGUID)."""
    n = len(lead_ids)
    if n == 0:
        return np.array([], dtype=np.int64)
    guids = np.arange(state.next_activity_guid, state.next_activity_guid + n, dtype=np.int64)
    state.next_activity_guid += n

    def nullable_int(values: Any) -> pa.Array:
        if values is None:
            return pa.nulls(n, pa.int64())
        if isinstance(values, np.ndarray):
            return pa.array(values, pa.int64(), mask=values < 0)
        return pa.array(values, pa.int64())

    table = pa.table(
        {
            "marketoGUID": guids,
            "leadId": np.asarray(lead_ids, np.int64),
            "activityDate": pa.array(np.full(n, now_s, np.int64), TS),
            "activityTypeId": np.asarray(type_ids, np.int32),
            "campaignId": nullable_int(campaign_ids),
            "primaryAttributeValueId": nullable_int(pav_ids),
            "primaryAttributeValue": pa.nulls(n, pa.string())
            if pav_values is None
            else pa.array(pav_values, pa.string()),
            "attributeSeed": np.zeros(n, np.int64) if seeds is None else np.asarray(seeds, np.int64),
            "attributesJson": pa.nulls(n, pa.string())
            if attributes is None
            else pa.array(attributes, pa.string()),
        },
        schema=ACTIVITIES_SCHEMA,
    )
    existing = state.activities
    combined = pa.concat_tables([existing, table])
    last = existing["activityDate"][-1].value if existing.num_rows else None  # epoch seconds
    if last is not None and last > now_s:  # churn "in the past": restore the order
        combined = combined.sort_by([("activityDate", "ascending"), ("marketoGUID", "ascending")])
    if combined["marketoGUID"].num_chunks > MAX_CHUNKS:  # merge the small appended chunks, not the history
        batches = combined.to_batches()
        combined = pa.Table.from_batches(
            [batches[0], *pa.Table.from_batches(batches[1:]).combine_chunks().to_batches()]
        )
    state.activities = combined
    return guids


# --- people -------------------------------------------------------------------------------------------


def add_people(state: InstanceState, n: int, now: datetime, seed: int) -> list[int]:
    """Create `n` people now (each with a New Lead activity); returns their ids."""
    if n < 0:
        raise ValueError(f"n: expected a count >= 0, got {n}")
    with state.lock:
        return insert_people(state, n, epoch_s(now), np.random.default_rng(seed))


def insert_people(state: InstanceState, n: int, now_s: int, rng: np.random.Generator) -> list[int]:
    if n == 0:
        return []
    fresh = generator.build_people(rng, n, state.companies, now_s - 1, now_s, profile_seed=state.seed)
    ids = np.arange(state.next_lead_id, state.next_lead_id + n, dtype=np.int64)
    state.next_lead_id += n
    stamp = pa.array(np.full(n, now_s, np.int64), TS)
    email = fresh["email"].combine_chunks()
    clash = pc.fill_null(
        pc.is_in(email, value_set=pc.drop_null(state.people["email"].combine_chunks())), False
    )
    if pc.any(clash).as_py():  # keep emails unique across the instance: add the id to the local part
        parts = pc.split_pattern(email, "@")
        with_id = pc.binary_join_element_wise(
            pc.list_element(parts, 0), pc.cast(pa.array(ids), pa.string()), "@", pc.list_element(parts, 1), ""
        )
        email = pc.if_else(clash, with_id, email)
    fresh = fresh.set_column(0, "id", pa.array(ids))
    for name, values in (
        ("email", email),
        ("createdAt", stamp),
        ("updatedAt", stamp),
        ("_modifiedAt", stamp),
        ("_seed", pa.array(profile_seeds(ids, state.seed))),
    ):
        fresh = fresh.set_column(fresh.schema.get_field_index(name), fresh.schema.field(name), values)
    state.people = pa.concat_tables([state.people, fresh.cast(state.people.schema)])
    append_activities(
        state,
        now_s,
        ids,
        np.full(n, catalog.NEW_LEAD),
        pav_ids=ids,
        seeds=rng.integers(0, 2**62, n, dtype=np.int64),
    )
    return ids.tolist()


def typed_value(field_name: str, value: Any) -> Any:
    """A value for a writable lead field in the field's Python type, or ValueError naming field and type.

    Text for text types (email: ASCII address), int for integer/reference, float for currency/float/percent
    (ints accepted), bool for boolean, `date` or 'YYYY-MM-DD' for date, aware `datetime` or ISO-8601 for
    datetime. Text with a lone surrogate (not encodable as UTF-8) is refused like any invalid value.
    """
    spec = lead_fields.WRITABLE.get(field_name)
    if spec is None:
        raise ValueError(
            f"field: {field_name!r} is not a writable lead field; expected one of "
            f"{sorted(lead_fields.WRITABLE)}"
        )
    if value is None:
        return None
    kind = spec.arrow_type
    expected = spec.data_type
    article = "an" if expected[0] in "aeiou" else "a"
    refused = ValueError(f"value: field {field_name!r} expects {article} {expected} value, got {value!r}")
    if pa.types.is_boolean(kind):
        if not isinstance(value, bool):
            raise refused
        return value
    if isinstance(value, bool):
        raise refused
    if pa.types.is_integer(kind):
        if not isinstance(value, int):
            raise refused
        return value
    if pa.types.is_floating(kind):
        if not isinstance(value, int | float):
            raise refused
        return float(value)
    if pa.types.is_date(kind):
        return _parse_date(value, refused)
    if pa.types.is_timestamp(kind):
        return _parse_datetime(value, refused)
    if not isinstance(value, str) or not _encodable(value):
        raise refused
    if field_name == "email" and not EMAIL_PATTERN.match(value):
        raise ValueError(
            f"value: field 'email' expects an ASCII address like name@example.com, got {value!r}"
        )
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800" from a JSON escape
        return False
    return True


def _parse_date(value: Any, refused: ValueError) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise refused


def _parse_datetime(value: Any, refused: ValueError) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise refused from None
    if not isinstance(value, datetime):
        raise refused
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).replace(microsecond=0)


def update_attribute(state: InstanceState, lead_id: int, field: str, value: Any, now: datetime) -> None:
    """Set one lead field; bumps updatedAt (standard fields) and _modifiedAt, and logs the change activity."""
    typed = typed_value(field, value)
    with state.lock:
        update_field(state, field, np.array([lead_id], np.int64), [typed], epoch_s(now))


def change_email(state: InstanceState, lead_id: int, new_email: str, now: datetime) -> None:
    """Same person (same id), new email address."""
    update_attribute(state, lead_id, "email", new_email, now)


def update_field(
    state: InstanceState,
    field_name: str,
    lead_ids: np.ndarray,
    values: list[Any],
    now_s: int,
    *,
    reason: str = REASON,
    source: str = API_SOURCE,
) -> list[int]:
    """Batch edit of one field (stored or derived) for distinct leads, with one Change Data Value (or Change
    Score, for leadScore) activity per lead whose value really changed; returns those leads' ids.

    A standard field moves the visible `updatedAt` and the hidden `_modifiedAt`; a custom one only the
    hidden time (docs/marketo.md §5.7). Values must already be typed (`typed_value`).
    """
    spec = lead_fields.BY_NAME[field_name]
    lead_ids = np.asarray(lead_ids, np.int64)
    rows = people_rows(state, lead_ids)
    old = LeadView(state).select(state.people.take(pa.array(rows)), [field_name])[field_name].to_pylist()
    changed = np.array([was != new for was, new in zip(old, values, strict=True)], dtype=bool)
    if not changed.any():
        return []
    rows, lead_ids = rows[changed], lead_ids[changed]
    old = [v for v, keep in zip(old, changed.tolist(), strict=True) if keep]
    values = [v for v, keep in zip(values, changed.tolist(), strict=True) if keep]
    if spec.stored:
        _replace_people(state, rows, field_name, pa.array(values, spec.arrow_type))
    else:
        written = state.lead_overrides.setdefault(field_name, {})
        written.update(zip(lead_ids.tolist(), values, strict=True))
    _touch_people(state, rows, now_s, visible=not spec.custom)
    if field_name == "leadScore":
        type_id = catalog.CHANGE_SCORE
        jsons = [
            explicit_json(
                {
                    "Change Value": f"{(new or 0) - (was or 0):+d}",
                    "Old Value": was,
                    "New Value": new,
                    "Reason": reason,
                }
            )
            for was, new in zip(old, values, strict=True)
        ]
    else:
        type_id = catalog.CHANGE_DATA_VALUE
        jsons = [
            explicit_json(
                {
                    "Old Value": change_text(was),
                    "New Value": change_text(new),
                    "Reason": reason,
                    "Source": source,
                }
            )
            for was, new in zip(old, values, strict=True)
        ]
    append_activities(
        state,
        now_s,
        lead_ids,
        np.full(len(rows), type_id),
        pav_ids=[spec.id] * len(rows),
        pav_values=[spec.display] * len(rows),
        attributes=jsons,
    )
    return lead_ids.tolist()


def change_text(value: Any) -> str | None:
    """How Change Data Value shows old and new values: text, `True`/`False`, datetimes as
    `2023-01-26 18:46:00` (fixture realtransformed_airbyte__activity_records_selected)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def create_leads(
    state: InstanceState, records: list[dict[str, Any]], now_s: int, *, attributes: dict[str, Any]
) -> None:
    """Append leads written through the API (each `{"id": …, field: typed value, …}`), with no generated
    profile, and log a New Lead (12) activity for each with `attributes`."""
    if not records:
        return
    stamp = datetime.fromtimestamp(now_s, UTC)
    rows = []
    for record in records:
        row: dict[str, Any] = {name: None for name in PEOPLE_SCHEMA.names}
        for name, value in record.items():
            if name in row:
                row[name] = value
            else:
                state.lead_overrides.setdefault(name, {})[record["id"]] = value
        row.update(createdAt=stamp, updatedAt=stamp, _modifiedAt=stamp)
        rows.append(row)
    state.people = pa.concat_tables([state.people, pa.Table.from_pylist(rows, schema=PEOPLE_SCHEMA)])
    ids = np.array([r["id"] for r in records], np.int64)
    names = [" ".join(str(r[k]) for k in ("firstName", "lastName") if r.get(k)) or None for r in records]
    new_lead, jsons = np.full(len(ids), catalog.NEW_LEAD), [explicit_json(attributes)] * len(ids)
    append_activities(state, now_s, ids, new_lead, pav_ids=ids, pav_values=names, attributes=jsons)


# --- merges and deletions -----------------------------------------------------------------------------


def merge_leads(state: InstanceState, winner_id: int, loser_ids: Sequence[int], now: datetime) -> None:
    """Merge losers into the winner: losers disappear; their activities, memberships and lists move over."""
    with state.lock:
        merge_groups(state, [(int(winner_id), [int(x) for x in loser_ids])], epoch_s(now))


def merge_groups(state: InstanceState, groups: list[tuple[int, list[int]]], now_s: int) -> None:
    winners = np.array([w for w, losers in groups for _ in losers], dtype=np.int64)
    losers = np.array([x for _, ls in groups for x in ls], dtype=np.int64)
    if len(losers) == 0:
        raise ValueError("loser_ids: expected at least one losing lead id")
    involved = np.concatenate([np.array([w for w, _ in groups], np.int64), losers])
    if len(np.unique(involved)) != len(involved):
        raise ValueError("loser_ids: a lead may appear only once across winners and losers of one merge")
    winner_rows = people_rows(state, winners, "winner_id")
    loser_rows = people_rows(state, losers, "loser_ids")

    # Field conflicts keep the winner's value unless it is empty (docs/marketo.md §12.3): fill the winner's
    # gaps from losers.
    first_loser = {}
    for w_row, l_row in zip(winner_rows.tolist(), loser_rows.tolist(), strict=True):
        first_loser.setdefault(w_row, l_row)
    w_unique = np.array(list(first_loser), np.int64)
    l_first = np.array(list(first_loser.values()), np.int64)
    fillable = [name for name in lead_fields.WRITABLE if name != "email"]
    view = LeadView(state)
    mine = view.select(state.people.take(pa.array(w_unique)), fillable)
    theirs = view.select(state.people.take(pa.array(l_first)), fillable)
    winner_ids = state.people["id"].to_numpy()[w_unique]
    for column in fillable:
        fill = pc.and_(pc.is_null(mine[column]), pc.is_valid(theirs[column])).to_numpy(zero_copy_only=False)
        if not fill.any():
            continue
        values = theirs[column].combine_chunks().filter(pa.array(fill))
        if lead_fields.BY_NAME[column].stored:
            _replace_people(state, w_unique[fill], column, values)
        else:
            written = state.lead_overrides.setdefault(column, {})
            written.update(zip(winner_ids[fill].tolist(), values.to_pylist(), strict=True))
    _touch_people(state, w_unique, now_s, visible=True)
    names = _full_names(state, np.array([r for r in people_rows(state, [w for w, _ in groups])], np.int64))

    _drop_people(state, losers)
    sorted_losers = np.sort(losers)
    winner_of = winners[np.argsort(losers)]

    lead = state.activities["leadId"].to_numpy()
    moved = np.isin(lead, sorted_losers)
    if moved.any():
        lead = lead.copy()
        lead[moved] = winner_of[np.searchsorted(sorted_losers, lead[moved])]
        index = state.activities.schema.get_field_index("leadId")
        state.activities = state.activities.set_column(index, "leadId", pa.array(lead))

    _fold_memberships(state, sorted_losers, winner_of, now_s)
    for static in state.static_lists:
        mapping = dict(zip(losers.tolist(), winners.tolist(), strict=True))
        static["lead_ids"] = list(dict.fromkeys(mapping.get(x, x) for x in static["lead_ids"]))
    _append_rows(
        state,
        "merges",
        {"winnerId": winners, "loserId": losers, "mergedAt": pa.array(np.full(len(losers), now_s), TS)},
    )
    group_winners = np.array([w for w, _ in groups], np.int64)
    jsons = [
        explicit_json(
            {"Merge IDs": ls, "Merged in Sales": False, "Merge Source": "leaddb", "Master Updated": True}
        )
        for _, ls in groups
    ]
    append_activities(
        state,
        now_s,
        group_winners,
        np.full(len(groups), catalog.MERGE_LEADS),
        pav_ids=group_winners,
        pav_values=names,
        attributes=jsons,
    )


def _fold_memberships(
    state: InstanceState, sorted_losers: np.ndarray, winner_of: np.ndarray, now_s: int
) -> None:
    """Losers' memberships move to the winner unless the winner is already a member of that program."""
    members = state.memberships
    lead = members["leadId"].to_numpy()
    is_loser = np.isin(lead, sorted_losers)
    if not is_loser.any():
        return
    new_lead = lead.copy()
    new_lead[is_loser] = winner_of[np.searchsorted(sorted_losers, lead[is_loser])]
    key = members["programId"].to_numpy() * (1 << 32) + new_lead
    # Keep the first row per (program, lead): existing winner rows come first when sorted by "is loser".
    order = np.lexsort((is_loser, key))
    keep = np.zeros(len(key), dtype=bool)
    first = np.ones(len(order), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    keep[order[first]] = True
    touched = is_loser & keep
    updated = _seconds(members["updatedAt"])
    updated[touched] = now_s
    members = members.set_column(members.schema.get_field_index("leadId"), "leadId", pa.array(new_lead))
    members = members.set_column(
        members.schema.get_field_index("updatedAt"), "updatedAt", pa.array(updated, TS)
    )
    state.memberships = members.filter(pa.array(keep))


def _filter_table(state: InstanceState, name: str, keep: Any) -> None:
    """Filter a state table column by column, releasing each old column before the next (peak memory).

    Runs under the lock. Readers still holding the old table keep it alive, which only costs memory.
    """
    table: pa.Table = getattr(state, name)
    schema = table.schema
    setattr(state, name, None)  # ours is then the only reference, so dropped columns are freed
    columns = []
    for column in schema.names:
        columns.append(table[column].filter(keep))
        table = table.drop_columns([column])
    setattr(state, name, pa.Table.from_arrays(columns, schema=schema))


def _append_rows(state: InstanceState, name: str, columns: dict[str, Any]) -> None:
    """Append rows, given as columns, to one of the state's tables (in its schema)."""
    table: pa.Table = getattr(state, name)
    setattr(state, name, pa.concat_tables([table, pa.table(columns, schema=table.schema)]))


def _drop_people(state: InstanceState, lead_ids: np.ndarray) -> None:
    gone = pc.is_in(state.people["id"], value_set=pa.array(lead_ids, pa.int64()))
    state.people = state.people.filter(pc.invert(gone))
    dropped = set(np.asarray(lead_ids).tolist())
    for written in state.lead_overrides.values():  # ids are never reused, but the values go with the person
        for lead_id in dropped & written.keys():
            del written[lead_id]


def delete_lead(state: InstanceState, lead_id: int, now: datetime) -> None:
    """Delete a person: gone from people, memberships, lists and activities; a Delete Lead record remains."""
    delete_leads(state, [lead_id], now)


def delete_leads(state: InstanceState, lead_ids: Sequence[int], now: datetime) -> None:
    """Delete several people in one pass over the activities (Delete Leads takes up to 300 at once)."""
    with state.lock:
        delete_ids(state, np.array(list(lead_ids), np.int64), epoch_s(now))


def delete_ids(state: InstanceState, lead_ids: np.ndarray, now_s: int) -> None:
    rows = people_rows(state, lead_ids)
    names = _full_names(state, rows)
    guids = np.arange(state.next_activity_guid, state.next_activity_guid + len(rows), dtype=np.int64)
    state.next_activity_guid += len(rows)
    _append_rows(
        state,
        "deleted_leads",
        {
            "marketoGUID": guids,
            "leadId": lead_ids,
            "deletedAt": pa.array(np.full(len(rows), now_s), TS),
            "name": names,
        },
    )
    _drop_people(state, lead_ids)
    gone = pa.array(lead_ids, pa.int64())
    # Marketo drops a deleted person's activity history and memberships with them.
    _filter_table(state, "activities", pc.invert(pc.is_in(state.activities["leadId"], value_set=gone)))
    _filter_table(state, "memberships", pc.invert(pc.is_in(state.memberships["leadId"], value_set=gone)))
    removed = set(lead_ids.tolist())
    for static in state.static_lists:
        static["lead_ids"] = [x for x in static["lead_ids"] if x not in removed]


# --- programs and statuses ----------------------------------------------------------------------------


def channel_named(state: InstanceState, channel_name: str) -> dict[str, Any]:
    for channel in state.channels:
        if channel["name"] == channel_name:
            return channel
    raise ValueError(
        f"channel_name: no channel named {channel_name!r}; expected one of "
        f"{[c['name'] for c in state.channels]}"
    )


def program_row(state: InstanceState, program_id: int) -> dict[str, Any]:
    match = state.programs.filter(pc.equal(state.programs["id"], program_id))
    if match.num_rows == 0:
        raise ValueError(f"program_id: no program with id {program_id}")
    return match.to_pylist()[0]


def set_membership_status(
    state: InstanceState, program_id: int, lead_id: int, status_name: str, now: datetime
) -> bool:
    """Upsert a membership at `status_name` and log a Change Status in Progression (104) activity.

    Returns False (and changes nothing) when the member already has that status.
    """
    with state.lock:
        return bool(set_statuses(state, [(int(program_id), int(lead_id), status_name)], epoch_s(now)))


def set_statuses(
    state: InstanceState, changes: list[tuple[int, int, str]], now_s: int
) -> list[tuple[int, int, str]]:
    """Batch upsert of distinct (program, lead) memberships; returns the changes actually made."""
    if not changes:
        return []
    program_info = {pid: program_row(state, pid) for pid in {c[0] for c in changes}}
    people_rows(state, [c[1] for c in changes])
    statuses: dict[int, list[dict[str, Any]]] = {}
    channel_ids: dict[int, int] = {}
    for pid, program in program_info.items():
        channel = channel_named(state, program["channel"])
        statuses[pid], channel_ids[pid] = channel["progressionStatuses"], channel["id"]
    for pid, _lead, status in changes:
        if status not in [s["name"] for s in statuses[pid]]:
            raise ValueError(
                f"status_name: {status!r} is not a status of program {pid}'s channel "
                f"{program_info[pid]['channel']!r}; expected one of {[s['name'] for s in statuses[pid]]}"
            )

    members = state.memberships
    key = members["programId"].to_numpy() * (1 << 32) + members["leadId"].to_numpy()
    sorter = np.argsort(key, kind="stable")
    current = members["statusName"].to_pylist()
    reached = members["reachedSuccess"].to_pylist()
    acquired = members["acquiredBy"].to_pylist()
    row_updates: dict[int, tuple[str, bool]] = {}
    new_rows: list[dict[str, Any]] = []
    made: list[tuple[int, int, str]] = []
    jsons: list[str] = []
    for pid, lead, status in changes:
        k = pid * (1 << 32) + lead
        pos = np.searchsorted(key, k, sorter=sorter) if len(key) else 0
        row = int(sorter[pos]) if pos < len(key) and key[sorter[pos]] == k else None
        old = current[row] if row is not None else "Not in Program"
        if old == status:
            continue
        names = [s["name"] for s in statuses[pid]]
        position_old = names.index(old) if old in names else 0
        position_new = names.index(status)
        success = bool(statuses[pid][position_new]["success"])
        if row is not None:
            row_updates[row] = (status, success)
            was_acquired = bool(acquired[row])
        else:
            was_acquired = False
            new_rows.append(
                {
                    "programId": pid,
                    "leadId": lead,
                    "statusName": status,
                    "membershipDate": now_s,
                    "reachedSuccess": success,
                    "reachedSuccessDate": now_s if success else None,
                    "acquiredBy": False,
                    "isExhausted": status == "Exhausted",
                    "createdAt": now_s,
                    "updatedAt": now_s,
                }
            )
        made.append((pid, lead, status))
        jsons.append(
            explicit_json(
                {
                    "Old Status ID": catalog.status_id(channel_ids[pid], position_old),
                    "New Status ID": catalog.status_id(channel_ids[pid], position_new),
                    "Acquired By": was_acquired,
                    "Old Status": old,
                    "New Status": status,
                    "Program Member ID": program_member_id(pid, lead),
                    "Success": success,
                    "Reason": REASON,
                }
            )
        )
    if row_updates:
        rows = np.array(list(row_updates), np.int64)
        new_status = [row_updates[r][0] for r in rows.tolist()]
        success_now = np.array([row_updates[r][1] for r in rows.tolist()])
        status_col = pa.array(current, pa.string()).to_numpy(zero_copy_only=False).astype(object)
        status_col[rows] = new_status
        reached_np = np.array(reached, dtype=bool)
        newly = success_now & ~reached_np[rows]
        reached_np[rows] |= success_now
        success_date = _seconds(members["reachedSuccessDate"])
        success_valid = pc.is_valid(members["reachedSuccessDate"]).to_numpy(zero_copy_only=False).copy()
        success_date[rows[newly]] = now_s
        success_valid[rows[newly]] = True
        updated = _seconds(members["updatedAt"])
        updated[rows] = now_s
        exhausted = members["isExhausted"].to_numpy(zero_copy_only=False).copy()
        exhausted[rows] = np.array([s == "Exhausted" for s in new_status])
        columns = {
            "statusName": pa.array(status_col, pa.string()),
            "reachedSuccess": pa.array(reached_np),
            "reachedSuccessDate": pa.array(success_date, TS, mask=~success_valid),
            "isExhausted": pa.array(exhausted),
            "updatedAt": pa.array(updated, TS),
        }
        for name, values in columns.items():
            members = members.set_column(members.schema.get_field_index(name), name, values)
    if new_rows:
        added = pa.Table.from_pylist(new_rows).select(MEMBERSHIPS_SCHEMA.names)
        for name in ("membershipDate", "reachedSuccessDate", "createdAt", "updatedAt"):
            added = added.set_column(added.schema.get_field_index(name), name, pc.cast(added[name], TS))
        members = pa.concat_tables([members, added.cast(MEMBERSHIPS_SCHEMA)])
    state.memberships = members
    if made:
        pids = np.array([m[0] for m in made], np.int64)
        append_activities(
            state,
            now_s,
            np.array([m[1] for m in made], np.int64),
            np.full(len(made), catalog.CHANGE_STATUS),
            pav_ids=pids,
            pav_values=[program_info[int(p)]["name"] for p in pids],
            attributes=jsons,
        )
    return made


def add_programs(state: InstanceState, specs: list[tuple[str, str]], now_s: int) -> list[int]:
    kinds = {c[0]: c[1] for c in catalog.CHANNEL_SPECS}
    start = int(pc.max(state.programs["id"]).as_py() or generator.FIRST_PROGRAM_ID - 1) + 1
    rows = []
    for offset, (channel_name, name) in enumerate(specs):
        channel_named(state, channel_name)
        kind = kinds.get(channel_name, "Default")
        folder_id, folder_name = catalog.FOLDERS[offset % len(catalog.FOLDERS)]
        rows.append(
            {
                "id": start + offset,
                "name": name,
                "description": f"{name} (sandbox)",
                "type": kind,
                "channel": channel_name,
                "folderId": folder_id,
                "folderName": folder_name,
                "status": catalog.PROGRAM_STATUS_BY_TYPE[kind][0],
                "workspace": "Default",
                "createdAt": datetime.fromtimestamp(now_s, UTC),
                "updatedAt": datetime.fromtimestamp(now_s, UTC),
            }
        )
    first = state.programs.num_rows
    state.programs = pa.concat_tables([state.programs, pa.Table.from_pylist(rows, schema=PROGRAMS_SCHEMA)])
    # A program comes with its assets, as when cloned from a template: emails, a send campaign, My Tokens.
    state.emails += generator.build_emails(state.programs, now_s, state.seed, first_program=first)
    next_campaign = max((c["id"] for c in state.campaigns), default=generator.FIRST_CAMPAIGN_ID - 1) + 1
    state.campaigns += generator.build_campaigns(
        state.programs, now_s, state.seed, first_program=first, first_id=next_campaign
    )
    state.my_tokens += generator.build_tokens(state.programs, first_program=first)
    return [r["id"] for r in rows]


def touch_campaigns(state: InstanceState, campaign_ids: Sequence[int], now_s: int) -> list[int]:
    """Edit smart campaigns (their smart list or flow): `updatedAt` moves to now; returns the ids touched."""
    wanted = set(campaign_ids)
    stamp = datetime.fromtimestamp(now_s, UTC)
    touched = []
    for campaign in state.campaigns:
        if campaign["id"] in wanted:
            campaign["updatedAt"] = max(campaign["updatedAt"], stamp)
            touched.append(campaign["id"])
    missing = sorted(wanted - set(touched))
    if missing:
        raise ValueError(f"campaign_ids: no smart campaign with id {missing[:5]}")
    return touched


ACCOUNT_TABLES = {"companies": "id", "named_accounts": "marketoGUID"}


def update_accounts(state: InstanceState, table: str, keys: Sequence[Any], now_s: int) -> list[Any]:
    """Edit companies or named accounts (their industry and size): `updatedAt` moves to now; returns the
    keys edited. Runs under the lock."""
    if table not in ACCOUNT_TABLES:
        raise ValueError(f"table: expected one of {sorted(ACCOUNT_TABLES)}, got {table!r}")
    if not keys:
        return []
    rows: pa.Table = getattr(state, table)
    key = ACCOUNT_TABLES[table]
    hit = pc.is_in(rows[key], value_set=pa.array(list(keys), rows.schema.field(key).type))
    size = pc.if_else(hit, pc.add(pc.coalesce(rows["numberOfEmployees"], 0), 7), rows["numberOfEmployees"])
    industry = pc.if_else(hit, pa.scalar("Retail"), rows["industry"])
    stamp = pa.scalar(datetime.fromtimestamp(now_s, UTC), rows.schema.field("updatedAt").type)
    updated = pc.if_else(hit, stamp, rows["updatedAt"])
    for name, column in (("numberOfEmployees", size), ("industry", industry), ("updatedAt", updated)):
        typed = column.cast(rows.schema.field(name).type)
        rows = rows.set_column(rows.schema.get_field_index(name), name, typed)
    setattr(state, table, rows)
    return sorted(rows.filter(hit)[key].to_pylist())


def rename_status(
    state: InstanceState, channel_name: str, old: str, new: str, now: datetime | None = None
) -> None:
    """Rename a channel's progression status; members keep their status, which now carries the new name.

    Past type-104 activities keep the names they were logged with (their attributes are frozen first).
    Membership `updatedAt` does not move: in Marketo the member record itself did not change.
    """
    if not new or not isinstance(new, str):
        raise ValueError(f"new: expected a non-empty status name, got {new!r}")
    with state.lock:
        channel = channel_named(state, channel_name)
        names = [s["name"] for s in channel["progressionStatuses"]]
        if old not in names:
            raise ValueError(f"old: channel {channel_name!r} has no status {old!r}; expected one of {names}")
        if new in names:
            raise ValueError(f"new: channel {channel_name!r} already has a status named {new!r}")
        in_channel = state.programs.filter(pc.equal(state.programs["channel"], channel_name))["id"]
        _freeze_status_attributes(state, in_channel.combine_chunks())
        channel["progressionStatuses"][names.index(old)]["name"] = new
        channel["updatedAt"] = now if now is not None else datetime.now(UTC)
        members = state.memberships
        hit = pc.and_(
            pc.is_in(members["programId"], value_set=in_channel.combine_chunks()),
            pc.equal(members["statusName"], old),
        )
        renamed = pc.if_else(hit, pa.scalar(new), members["statusName"])
        state.memberships = members.set_column(
            members.schema.get_field_index("statusName"), "statusName", renamed
        )


def _freeze_status_attributes(state: InstanceState, program_ids: pa.Array) -> None:
    """Write explicit JSON for seed-rendered 104 activities of these programs, before names change."""
    acts = state.activities
    is_status = pc.and_(
        pc.equal(acts["activityTypeId"], catalog.CHANGE_STATUS), pc.is_null(acts["attributesJson"])
    )
    in_programs = pc.fill_null(pc.is_in(acts["primaryAttributeValueId"], value_set=program_ids), False)
    mask = pc.and_(is_status, in_programs).combine_chunks().to_numpy(zero_copy_only=False)
    if not mask.any():
        return
    rows = np.flatnonzero(mask)
    rendered = render_attributes(state, acts.take(pa.array(rows)))
    order = np.argsort(rows)
    column = pc.replace_with_mask(
        acts["attributesJson"].combine_chunks(), pa.array(mask), rendered.take(pa.array(order))
    )
    state.activities = acts.set_column(
        acts.schema.get_field_index("attributesJson"), "attributesJson", column
    )


# --- new activities -----------------------------------------------------------------------------------

STRUCTURAL_TYPES = frozenset(
    {catalog.NEW_LEAD, catalog.MERGE_LEADS, catalog.DELETE_LEAD, catalog.CHANGE_STATUS}
)


def add_activities(
    state: InstanceState, lead_ids: Sequence[int], type_ids: Sequence[int] | int, now: datetime, seed: int
) -> list[int]:
    """Log activities now: one per lead, of `type_ids[i]` (or one type for all); returns their GUIDs.

    Attributes and primary attributes are generated like the initial history. New Lead, Merge Leads,
    Delete Lead and Change Status in Progression come only from the operations that cause them.
    """
    leads = np.asarray(lead_ids, dtype=np.int64)
    types = np.full(len(leads), type_ids) if isinstance(type_ids, int) else np.asarray(type_ids, np.int64)
    if len(types) != len(leads):
        raise ValueError(f"type_ids: expected one type id or {len(leads)} (one per lead), got {len(types)}")
    bad = sorted(set(types.tolist()) & STRUCTURAL_TYPES)
    known = {t["id"] for t in state.activity_types}
    unknown = sorted(set(types.tolist()) - known)
    if bad or unknown:
        raise ValueError(
            f"type_ids: cannot add types {bad or unknown}; expected ids from the instance's "
            f"activity types other than {sorted(STRUCTURAL_TYPES)}"
        )
    with state.lock:
        people_rows(state, leads)
        return generate_activities(state, leads, types, epoch_s(now), np.random.default_rng(seed)).tolist()


def generate_activities(
    state: InstanceState, leads: np.ndarray, types: np.ndarray, now_s: int, rng: np.random.Generator
) -> np.ndarray:
    assets = generator.build_assets(state.programs, state.static_lists)
    code = np.full(len(leads), -1, dtype=np.int64)
    for type_group, section in (
        ((*catalog.EMAIL_TYPES, 9), assets.emails),
        ((2,), assets.forms),
        ((1,), assets.pages),
        ((3,), assets.links),
        ((13,), assets.fields),
        ((24, 25), assets.lists),
    ):
        mask = np.isin(types, type_group)
        if mask.any() and section[1] > section[0]:
            code[mask] = rng.integers(section[0], section[1], int(mask.sum()))
    code[types == catalog.CHANGE_SCORE] = assets.score
    batch = [c["id"] for c in state.campaigns if c["type"] == "batch"] or [-1]
    campaign = np.where(
        np.isin(types, catalog.EMAIL_TYPES), np.array(batch)[rng.integers(0, len(batch), len(leads))], -1
    )
    pav_ids = np.where(code >= 0, assets.ids[np.maximum(code, 0)], -1)
    pav_values = assets.names.take(pa.array(code, mask=code < 0))
    return append_activities(
        state,
        now_s,
        leads,
        types,
        pav_ids=pav_ids,
        pav_values=pav_values,
        campaign_ids=campaign,
        seeds=rng.integers(0, 2**62, len(leads), dtype=np.int64),
    )


# --- one churn step -----------------------------------------------------------------------------------
