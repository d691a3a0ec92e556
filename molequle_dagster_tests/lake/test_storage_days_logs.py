"""The Parquet lake: atomic writes, second-precision timestamps, append-only logs under concurrency."""

from __future__ import annotations

import multiprocessing
import os
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from molequle_dagster.lake import Lake, LakeError

TS = pa.timestamp("s", tz="UTC")


def test_current_tables_round_trip_with_second_timestamps(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    table = pa.table({"id": [1, 2], "at": pa.array([datetime(2026, 1, 1, tzinfo=UTC)] * 2, TS)})
    lake.write_current("people", table)
    assert lake.read_current("people").equals(table)  # Parquet stores ms; the lake restores seconds
    assert lake.read_table("people").num_rows == 2


def test_a_failed_write_leaves_the_previous_file(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    lake.write_current("t", pa.table({"x": [1]}))
    path = lake.current_path("t")
    with pytest.raises(RuntimeError), lake.writer(path, pa.schema([("x", pa.int64())])) as writer:
        writer.write_table(pa.table({"x": [2, 3]}))
        raise RuntimeError("crash mid-write")
    assert lake.read_current("t")["x"].to_pylist() == [1]
    assert [p.name for p in (tmp_path / "t").iterdir()] == ["current.parquet"]  # no temp file left


def test_partitions_and_state(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    lake.write_partition("activities", "2026-11-02", pa.table({"x": [2]}))
    lake.write_partition("activities", "2026-11-01", pa.table({"x": [1]}))
    assert lake.partition_keys("activities") == ["2026-11-01", "2026-11-02"]
    assert lake.read_table("activities")["x"].to_pylist() == [1, 2]
    lake.write_state("a/b", {"covered_until": "2026-11-02T00:00:00+00:00"})
    assert lake.read_state("a/b") == {"covered_until": "2026-11-02T00:00:00+00:00"}
    assert lake.read_state("missing") == {}
    with pytest.raises(LakeError, match="no data"):
        lake.read_table("nothing")


def _append_rows(root: str, writer: int, count: int) -> None:
    lake = Lake(root)
    for i in range(count):
        lake.append("log", pa.table({"writer": [writer], "i": [i]}))


def test_concurrent_appends_lose_nothing_and_keep_each_writers_order(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_append_rows, args=(str(tmp_path), w, 40)) for w in range(3)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(60)
        assert process.exitcode == 0
    lake = Lake(str(tmp_path))
    rows = lake.read_appended("log").to_pylist()
    assert len(rows) == 120
    for w in range(3):
        assert [r["i"] for r in rows if r["writer"] == w] == list(range(40))
    assert lake.compact_appended("log", min_parts=100) == 120
    assert lake.read_table("log").to_pylist() == rows  # same rows, same order, one file


def test_partition_mtimes_change_when_a_day_is_rewritten(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    lake.write_partition("activities", "2026-11-01", pa.table({"x": [1]}))
    lake.write_partition("activities", "2026-11-02", pa.table({"x": [2]}))
    old = Path(lake.partition_path("activities", "2026-11-02"))
    os.utime(old, ns=(old.stat().st_mtime_ns - 10**9, old.stat().st_mtime_ns - 10**9))  # an older write
    before = lake.partition_mtimes("activities")
    assert list(before) == ["2026-11-01", "2026-11-02"]
    lake.write_partition("activities", "2026-11-02", pa.table({"x": [3]}))
    after = lake.partition_mtimes("activities")
    assert after["2026-11-01"] == before["2026-11-01"] and after["2026-11-02"] != before["2026-11-02"]
