"""Ticks append to a day instead of rewriting it (issue 11 item 4): only the new rows are written, readers
see one day, a replace drops the deltas, and a crash mid-replace never shows a row twice. On a local
directory and on the S3 server."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from molequle_dagster.arrow_ops import SYNCED_AT
from molequle_dagster.lake import Lake
from molequle_dagster.lake.days import _with_generation
from molequle_dagster.sync.day_files import MAX_DELTAS, DayOutcome, constant_day, merge_into_days
from molequle_dagster_tests.lake.conftest import LakeRoot

DAY = "2026-11-30"
TS = pa.timestamp("s", tz="UTC")
SCHEMA = pa.schema([("guid", pa.string()), ("v", pa.int64()), (SYNCED_AT, TS)])
UNTIL = datetime(2026, 11, 30, 12, tzinfo=UTC)


def _rows(keys: list[int], value: int = 0, at: int = 0) -> pa.Table:
    stamp = datetime(2026, 11, 30, 10, at, tzinfo=UTC)
    return pa.table(
        {"guid": [f"g{k}" for k in keys], "v": [value] * len(keys), SYNCED_AT: [stamp] * len(keys)}, SCHEMA
    )


def _merge(lake: Lake, delta: pa.Table, immutable: bool, max_deltas: int = MAX_DELTAS) -> DayOutcome:
    outcome = DayOutcome()
    merge_into_days(
        lake.days("t"), delta, constant_day(DAY), "guid", SCHEMA, {DAY: UNTIL}, "f", outcome, immutable,
        max_deltas,
    )
    return outcome


def _values(lake: Lake) -> dict[str, int]:
    table = lake.days("t").read(DAY)
    assert table is not None
    keys = table["guid"].to_pylist()
    assert len(keys) == len(set(keys)), "a row shows twice"
    return dict(zip(keys, table["v"].to_pylist(), strict=True))


def test_a_tick_appends_only_its_new_rows(lake_root: LakeRoot, lake_uri: str) -> None:
    lake = Lake(lake_uri)
    _merge(lake, _rows(list(range(100))), immutable=True)
    before = lake.days("t").written()[DAY]
    outcome = _merge(lake, _rows([98, 99, 100, 101], at=5), immutable=True)  # two read again, two new
    assert outcome.new_rows_by_day[DAY] == 2 and outcome.rows_by_day[DAY] == 102
    files = lake_root.names(lake_uri, "t", f"date={DAY}")
    assert files[-1] == "part.parquet" and len(files) == 2 and files[0].startswith("delta-")
    delta = lake.storage.read_parquet(lake.storage.path("t", f"date={DAY}", files[0]))
    assert sorted(delta["guid"].to_pylist()) == ["g100", "g101"]  # the tick wrote two rows, not 102
    assert len(_values(lake)) == 102
    assert lake.days("t").written()[DAY] != before  # consumers see the day changed
    assert lake.days("t").cursor(DAY)["rows"] == 102


def test_a_changed_row_of_a_mutable_day_rewrites_it_and_drops_the_deltas(
    lake_root: LakeRoot, lake_uri: str
) -> None:
    lake = Lake(lake_uri)
    _merge(lake, _rows([1, 2]), immutable=False)
    _merge(lake, _rows([3], at=1), immutable=False)  # new key: appended
    assert len(lake_root.names(lake_uri, "t", f"date={DAY}")) == 2
    _merge(lake, _rows([2], value=7, at=2), immutable=False)  # replaces a row: the day is rewritten
    assert lake_root.names(lake_uri, "t", f"date={DAY}") == ["part.parquet"]
    assert _values(lake) == {"g1": 0, "g2": 7, "g3": 0}


def test_a_day_folds_its_deltas_into_its_base_once_it_holds_enough(lake_uri: str) -> None:
    lake = Lake(lake_uri)
    limit = 3  # MAX_DELTAS in production; small here, the rule is the same
    _merge(lake, _rows([0]), immutable=True, max_deltas=limit)
    counts = []
    for key in range(1, limit + 3):
        _merge(lake, _rows([key], at=key), immutable=True, max_deltas=limit)
        counts.append(lake.days("t").delta_count(DAY))
    assert counts == [1, 2, 3, 0, 1]  # the fourth tick folded the three deltas into a new base
    assert sorted(_values(lake)) == sorted(f"g{k}" for k in range(limit + 3))


def test_a_crash_between_a_new_base_and_dropping_the_deltas_shows_each_row_once(lake_uri: str) -> None:
    lake = Lake(lake_uri)
    days = lake.days("t")
    _merge(lake, _rows([1]), immutable=True)
    _merge(lake, _rows([2], at=1), immutable=True)
    # A replace that published its base (rows 1 and 2, next generation) and died before deleting the delta:
    whole = days.read(DAY)
    assert whole is not None
    lake.storage.write_parquet(days.path(DAY), _with_generation(whole, days.generation(DAY) + 1))
    assert days.delta_count(DAY) == 1
    assert _values(lake) == {"g1": 0, "g2": 0}
    _merge(lake, _rows([3], at=2), immutable=True)  # the next tick appends to the new base
    assert _values(lake) == {"g1": 0, "g2": 0, "g3": 0}
    days.write(DAY, days.read(DAY))  # any replace sweeps the stale delta
    assert days.delta_count(DAY) == 0 and _values(lake) == {"g1": 0, "g2": 0, "g3": 0}


def test_a_day_written_before_deltas_existed_takes_them(lake_uri: str) -> None:
    """Bases written by an earlier version carry no generation: they count as generation 0."""
    lake = Lake(lake_uri)
    lake.storage.write_parquet(lake.days("t").path(DAY), _rows([1]))
    _merge(lake, _rows([2], at=1), immutable=True)
    assert _values(lake) == {"g1": 0, "g2": 0}
