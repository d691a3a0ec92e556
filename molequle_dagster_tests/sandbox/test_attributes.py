"""Activity attributes (bulk JSON cell and REST list form) and Marketo's retention rules."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from molequle_dagster.sandbox import catalog
from molequle_dagster.sandbox.attributes import (
    attributes_as_list,
    render_attributes,
    retention_days,
    visible_activities,
)
from molequle_dagster.sandbox.config import DataSettings
from molequle_dagster.sandbox.generator import generate
from molequle_dagster.sandbox.model import InstanceState
from molequle_dagster_tests.fixtures import MARKETO_FIXTURES

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
FIXTURES = MARKETO_FIXTURES
PYTHON_TYPES = {"integer": int, "boolean": bool, "string": str, "text": str, "date": str, "datetime": str}


@pytest.fixture(scope="module")
def state() -> InstanceState:
    return generate(DataSettings(people=600), NOW)


@pytest.fixture(scope="module")
def rendered(state: InstanceState) -> list[str]:
    return render_attributes(state, state.activities).to_pylist()


def test_every_row_is_a_json_object_of_declared_typed_attributes(
    state: InstanceState, rendered: list[str]
) -> None:
    declared = {
        t["id"]: {a["name"]: a["dataType"].lower() for a in t["attributes"]} for t in catalog.ACTIVITY_TYPES
    }
    assert len(rendered) == state.activities.num_rows
    seen_keys: dict[int, set[str]] = {}
    for type_id, text in zip(state.activities["activityTypeId"].to_pylist(), rendered, strict=True):
        attributes = json.loads(text)
        assert isinstance(attributes, dict)
        for name, value in attributes.items():
            assert name in declared[type_id], (type_id, name)
            assert value is not None, "attributes with no value are omitted"
            assert isinstance(value, PYTHON_TYPES[declared[type_id][name]]), (type_id, name, value)
        seen_keys.setdefault(type_id, set()).update(attributes)
    assert seen_keys[1] >= {"Client IP Address", "Webpage URL", "User Agent"}
    assert seen_keys[2] >= {"Form Fields", "Webpage ID"}
    assert seen_keys[12] >= {"Created Date", "Source Type"}
    assert seen_keys[22] == {"Change Value", "Old Value", "New Value", "Reason"}


def test_rendering_is_per_row_and_order_independent(state: InstanceState, rendered: list[str]) -> None:
    rows = np.random.default_rng(7).permutation(state.activities.num_rows)[:500]
    subset = state.activities.take(pa.array(rows))
    assert render_attributes(state, subset).to_pylist() == [rendered[i] for i in rows]
    assert render_attributes(state, state.activities.slice(100, 50)).to_pylist() == rendered[100:150]
    assert render_attributes(state, state.activities.slice(0, 0)).to_pylist() == []


def test_explicit_attributes_json_wins_over_the_seed(state: InstanceState) -> None:
    two = state.activities.slice(0, 2)
    explicit = pa.array(['{"Reason":"explicit"}', None], pa.string())
    two = two.set_column(two.schema.get_field_index("attributesJson"), "attributesJson", explicit)
    out = render_attributes(state, two).to_pylist()
    assert out[0] == '{"Reason":"explicit"}'
    assert out[1] == render_attributes(state, state.activities.slice(1, 1)).to_pylist()[0]


def test_seeded_values_vary_between_rows(state: InstanceState, rendered: list[str]) -> None:
    opens = [
        json.loads(t)
        for t, k in zip(rendered, state.activities["activityTypeId"].to_pylist(), strict=True)
        if k == 10
    ]
    assert len({o["Campaign Run ID"] for o in opens}) > len(opens) // 2
    assert {o["Device"] for o in opens} == {"Desktop", "Mobile", "Tablet"}


def test_change_score_arithmetic_holds(state: InstanceState, rendered: list[str]) -> None:
    for text, kind in zip(rendered, state.activities["activityTypeId"].to_pylist(), strict=True):
        if kind == 22:
            a = json.loads(text)
            assert a["New Value"] - a["Old Value"] == int(a["Change Value"])
            assert a["New Value"] >= 0


def test_json_cells_survive_a_csv_round_trip(state: InstanceState, rendered: list[str]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([[i, text] for i, text in enumerate(rendered)])
    back = list(csv.reader(io.StringIO(buffer.getvalue())))
    assert [row[1] for row in back] == rendered
    assert any('""' in line for line in buffer.getvalue().splitlines()), "quotes were doubled in cells"


def test_104_cells_have_the_captured_key_set() -> None:
    sample = (
        FIXTURES
        / "bulk-activities/doc_bulk-activity-extract__retrieving-your-data__file__csv-export-file.csv"
    )
    captured = [
        row for row in csv.DictReader(sample.read_text().splitlines()) if row["activityTypeId"] == "104"
    ]
    state = generate(DataSettings(people=50, programs=5), NOW)
    ours = state.activities.filter(pc.equal(state.activities["activityTypeId"], 104))
    our_keys = set(json.loads(render_attributes(state, ours).to_pylist()[0]))
    for row in captured:
        assert set(json.loads(row["attributes"])) - {"Reason"} == our_keys


def test_attributes_as_list_keeps_key_order_and_types() -> None:
    text = '{"Old Status ID":9,"New Status":"Filled-out Form","Success":false,"Merge IDs":[887]}'
    assert attributes_as_list(text) == [
        {"name": "Old Status ID", "value": 9},
        {"name": "New Status", "value": "Filled-out Form"},
        {"name": "Success", "value": False},
        {"name": "Merge IDs", "value": [887]},
    ]
    assert attributes_as_list("{}") == []
    with pytest.raises(ValueError, match="json_text"):
        attributes_as_list("[1, 2]")


def test_retention_follows_the_policy_table() -> None:
    assert retention_days(12) is None
    assert retention_days(37) == 14
    for high_volume in (1, 3, 6, 7, 13, 22, 24, 47):
        assert retention_days(high_volume) == 90, high_volume
    for long_kept in (2, 8, 9, 10, 11, 27, 32, 46, 104, 100001):
        assert retention_days(long_kept) == 761, long_kept


def test_visible_activities_apply_retention_only_when_enforced(state: InstanceState) -> None:
    later = NOW + timedelta(days=200)
    assert visible_activities(state, later, enforce_retention=False).num_rows == state.activities.num_rows
    visible = visible_activities(state, later, enforce_retention=True)
    dates = pc.cast(visible["activityDate"], pa.int64()).to_numpy()
    types = visible["activityTypeId"].to_numpy()
    cutoff_90 = (later - timedelta(days=90)).timestamp()
    assert (dates[np.isin(types, [1, 3, 6, 7, 13, 22, 24])] >= cutoff_90).all()
    assert (dates[~np.isin(types, [12])] >= (later - timedelta(days=761)).timestamp()).all()
    all_new_leads = pc.sum(pc.equal(state.activities["activityTypeId"], 12)).as_py()
    assert pc.sum(pc.equal(visible["activityTypeId"], 12)).as_py() == all_new_leads, "New Lead is permanent"
    assert 0 < visible.num_rows < state.activities.num_rows
    dropped = state.activities.num_rows - visible.num_rows
    old_90 = pc.and_(
        pc.is_in(state.activities["activityTypeId"], pa.array([1, 3, 6, 7, 13, 22, 24], pa.int32())),
        pc.less(pc.cast(state.activities["activityDate"], pa.int64()), int(cutoff_90)),
    )
    assert dropped >= pc.sum(old_90).as_py()
