"""Invariants every mutation of an instance must keep, and small readers, shared by the mutation and churn
tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.sandbox.attributes import render_attributes
from molequle_dagster.sandbox.config import DataSettings
from molequle_dagster.sandbox.generator import generate
from molequle_dagster.sandbox.model import InstanceState

BUILT = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
LATER = BUILT + timedelta(hours=6)


def small_instance() -> InstanceState:
    return generate(DataSettings(people=400, programs=12), BUILT)


def person(state: InstanceState, lead_id: int) -> dict:
    rows = state.people.filter(pc.equal(state.people["id"], lead_id)).to_pylist()
    assert len(rows) == 1
    return rows[0]


def last_activity(state: InstanceState) -> dict:
    row = state.activities.slice(state.activities.num_rows - 1).to_pylist()[0]
    row["attributes"] = json.loads(
        render_attributes(state, state.activities.slice(state.activities.num_rows - 1)).to_pylist()[0]
    )
    return row


def assert_consistent(state: InstanceState) -> None:
    acts = state.activities
    dates = pc.cast(acts["activityDate"], pa.int64()).to_numpy()
    guids = acts["marketoGUID"].to_numpy()
    assert (np.lexsort((guids, dates)) == np.arange(len(dates))).all(), "activities stay sorted"
    assert len(np.unique(guids)) == len(guids)
    assert state.next_activity_guid > guids.max()
    people = state.people["id"]
    assert len(pc.unique(people)) == state.people.num_rows
    assert pc.all(pc.is_in(acts["leadId"], value_set=people)).as_py()
    assert pc.all(pc.is_in(state.memberships["leadId"], value_set=people)).as_py()
    keys = state.memberships["programId"].to_numpy() * (1 << 32) + state.memberships["leadId"].to_numpy()
    assert len(np.unique(keys)) == len(keys), "one membership per (program, lead)"
    live = set(people.to_pylist())
    for static in state.static_lists:
        assert set(static["lead_ids"]) <= live and len(set(static["lead_ids"])) == len(static["lead_ids"])
    assert state.next_lead_id > pc.max(people).as_py()
