"""Ground-truth views of an instance, computed straight from `InstanceState`, for test assertions.

Tests compare what a client extracted over HTTP with these views; they never go through the routes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.sandbox import lead_fields
from molequle_dagster.sandbox.attributes import render_attributes, retained_mask
from molequle_dagster.sandbox.lead_view import LeadView
from molequle_dagster.sandbox.model import InstanceState

SMART_LIST_RULE_KINDS = ("all", "subscribed", "unsubscribed", "min_lead_score", "country")


def smart_list_lead_ids(state: InstanceState, smart_list: dict[str, Any]) -> pa.Array:
    """int64 ids of the current people matching the smart list's rule, ascending."""
    rule = smart_list.get("rule")
    if not isinstance(rule, dict) or rule.get("kind") not in SMART_LIST_RULE_KINDS:
        raise ValueError(
            f"smart_list.rule: expected {{'kind': one of {list(SMART_LIST_RULE_KINDS)}}}, got {rule!r}"
        )
    with state.lock:
        people = state.people
    kind = rule["kind"]
    if kind == "all":
        mask = pa.repeat(pa.scalar(True), people.num_rows)
    elif kind == "subscribed":
        mask = pc.invert(pc.fill_null(people["unsubscribed"], False))
    elif kind == "unsubscribed":
        mask = pc.fill_null(people["unsubscribed"], False)
    elif kind == "min_lead_score":
        mask = pc.fill_null(pc.greater_equal(people["leadScore"], int(rule["value"])), False)
    else:
        mask = pc.fill_null(pc.equal(people["country"], str(rule["value"])), False)
    ids = people["id"].filter(mask).combine_chunks()
    return ids.take(pc.sort_indices(ids))


def people_truth(state: InstanceState, fields: Sequence[str]) -> pa.Table:
    """The current people (deleted and merged-away leads excluded) with `fields` (any lead field, stored or
    derived, or the hidden `_modifiedAt`), sorted by id."""
    view = LeadView(state)
    people = view.people
    hidden = [f for f in fields if f in people.column_names and f.startswith("_")]
    unknown = [f for f in fields if f not in lead_fields.BY_NAME and f not in hidden]
    if unknown:
        raise ValueError(
            f"fields: unknown lead field(s) {unknown}; expected REST names from describe, such as "
            f"{', '.join(lead_fields.STORED)}"
        )
    ordered = people.take(pc.sort_indices(people["id"]))
    wanted = [f for f in fields if f not in hidden]
    table = view.select(ordered, wanted)
    for name in hidden:
        table = table.append_column(name, ordered[name])
    return table.select(list(fields))


def activities_truth(
    state: InstanceState,
    type_ids: Sequence[int] | None,
    start: datetime,
    end: datetime,
    now: datetime,
    enforce_retention: bool,
) -> pa.Table:
    """Activities a bulk export over [start, end] (inclusive, docs/marketo.md §6.4) would hold, with
    rendered `attributes`.

    `type_ids=None` means every type. Sorted by activityDate then marketoGUID, like the instance.
    """
    if end < start:
        raise ValueError(f"end: expected >= start ({start.isoformat()}), got {end.isoformat()}")
    with state.lock:
        activities = state.activities
    date = pc.cast(activities["activityDate"], pa.int64()).to_numpy(zero_copy_only=False)
    mask = (date >= int(start.timestamp())) & (date <= int(end.timestamp()))
    if type_ids is not None:
        mask &= np.isin(activities["activityTypeId"].to_numpy(), np.array(list(type_ids), dtype=np.int32))
    if enforce_retention:
        mask &= retained_mask(activities, now)
    picked = activities.filter(pa.array(mask))
    attributes = render_attributes(state, picked)
    return picked.drop_columns(["attributeSeed", "attributesJson"]).append_column("attributes", attributes)


def memberships_truth(state: InstanceState) -> pa.Table:
    """Program memberships sorted by (programId, leadId), with the program's name as `program`."""
    with state.lock:
        memberships, programs = state.memberships, state.programs
    names = (
        programs["name"]
        .combine_chunks()
        .take(pc.index_in(memberships["programId"], value_set=programs["id"]))
    )
    table = memberships.append_column("program", names)
    return table.take(pc.sort_indices(table, [("programId", "ascending"), ("leadId", "ascending")]))
