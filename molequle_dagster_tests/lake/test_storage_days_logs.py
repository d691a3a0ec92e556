"""The lake's files: atomic writes, second-precision timestamps, day tables and their cursors, append-only
logs under concurrency, temp files swept, no I/O when a lake is merely constructed; each on a local
directory and on the S3 server (conftest.py)."""

from __future__ import annotations

import multiprocessing
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from molequle_dagster.lake import Lake, LakeError
from molequle_dagster.lake.days import TEMP_GRACE_S
from molequle_dagster.lake.log import PARTS
from molequle_dagster.lake.storage import SWEEPS, SweepSchedule
from molequle_dagster_tests.lake.conftest import LakeRoot

TS = pa.timestamp("s", tz="UTC")


def test_keyed_tables_round_trip_with_second_timestamps(lake_uri: str) -> None:
    lake = Lake(lake_uri)
    table = pa.table({"id": [1, 2], "at": pa.array([datetime(2026, 1, 1, tzinfo=UTC)] * 2, TS)})
    lake.keyed("people", "id").commit(table)
    assert lake.read_current("people").equals(table)  # Parquet stores ms; the lake restores seconds
    assert lake.read_table("people").num_rows == 2
    assert lake.kind("people") == "keyed"


def test_a_failed_streamed_write_leaves_the_previous_day_and_no_temp_file(
    lake_root: LakeRoot, lake_uri: str
) -> None:
    days = Lake(lake_uri).days("t")
    days.write("2026-11-01", pa.table({"x": [1]}))
    with pytest.raises(RuntimeError), days.writer("2026-11-01", pa.schema([("x", pa.int64())])) as writer:
        writer.write_table(pa.table({"x": [2, 3]}))
        raise RuntimeError("crash mid-write")
    assert days.read("2026-11-01")["x"].to_pylist() == [1]
    assert lake_root.names(lake_uri, "t", "date=2026-11-01") == ["part.parquet"]


def test_day_tables_keep_a_cursor_per_day(lake_uri: str) -> None:
    lake = Lake(lake_uri)
    days = lake.days("activities")
    days.write("2026-11-02", pa.table({"x": [2]}), {"covered_until": "2026-11-03T00:00:00+00:00"})
    days.write("2026-11-01", pa.table({"x": [1]}))
    assert days.days() == ["2026-11-01", "2026-11-02"]
    assert lake.read_table("activities")["x"].to_pylist() == [1, 2]
    assert days.cursor("2026-11-02") == {"covered_until": "2026-11-03T00:00:00+00:00", "rows": 1}
    assert days.cursor("2026-11-01") == {}
    with pytest.raises(LakeError, match="no data"):
        lake.read_table("nothing")


def test_written_stamps_change_when_a_day_is_rewritten(lake_root: LakeRoot, lake_uri: str) -> None:
    days = Lake(lake_uri).days("activities")
    days.write("2026-11-01", pa.table({"x": [1]}))
    days.write("2026-11-02", pa.table({"x": [2]}))
    if lake_root.local:  # make the first write older than the rewrite (object stores set their own times)
        old = Path(days.path("2026-11-02"))
        os.utime(old, ns=(old.stat().st_mtime_ns - 10**9, old.stat().st_mtime_ns - 10**9))
    before = days.written()
    # Within the same second on S3 (whole-second Last-Modified): the size tells the rewrite apart.
    days.write("2026-11-02", pa.table({"x": [3, 4, 5]}))
    after = days.written()
    assert before["2026-11-01"] == after["2026-11-01"] and before["2026-11-02"] != after["2026-11-02"]


def _append_rows(root: str, writer: int, count: int) -> None:
    log = Lake(root).log("log")
    for i in range(count):
        log.append(pa.table({"writer": [writer], "i": [i]}))


def test_concurrent_appends_lose_nothing_and_keep_each_writers_order(
    lake_root: LakeRoot, lake_uri: str
) -> None:
    count = 40 if lake_root.local else 15  # fewer parts on S3, where each is a request to write and read
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_append_rows, args=(lake_uri, w, count)) for w in range(3)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(60)
        assert process.exitcode == 0
    log = Lake(lake_uri).log("log")
    rows = log.read().to_pylist()
    assert len(rows) == 3 * count
    for w in range(3):
        assert [r["i"] for r in rows if r["writer"] == w] == list(range(count))
    assert log.compact(min_parts=3 * count) == 3 * count
    assert Lake(lake_uri).read_table("log").to_pylist() == rows  # same rows, same order, one file


def test_temp_files_left_by_a_killed_writer_are_swept_once_old(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path))
    lake.days("t").write("2026-11-01", pa.table({"x": [1]}))
    stale = tmp_path / "t" / "date=2026-11-01" / ".part.parquet.tmp-deadbeef"
    fresh = tmp_path / "t" / ".current.parquet.tmp-cafebabe"
    stale.write_bytes(b"half a file")
    fresh.write_bytes(b"being written")
    hour_ago = time.time() - 7200
    os.utime(stale, (hour_ago, hour_ago))
    swept = lake.sweep_temp_files(older_than_s=3600)
    assert [Path(p).name for p in swept] == [stale.name]
    assert fresh.exists() and lake.days("t").read("2026-11-01")["x"].to_pylist() == [1]


def test_day_and_log_writes_sweep_their_table_once_an_hour_sparing_young_temp_files(tmp_path: Path) -> None:
    """Issue 16 item 4, for the tables written without a lock: a temp file older than any run is a dead
    writer's and goes with the table's next write; a young one may be a live writer's and stays."""
    lake = Lake(str(tmp_path))
    lake.days("t").write("2026-11-01", pa.table({"x": [1]}))  # the table's sweep for this hour: nothing
    lake.log("actions").append(pa.table({"x": [1]}))
    day_old = time.time() - TEMP_GRACE_S - 60
    stale = [
        tmp_path / "t" / "date=2026-11-01" / ".part.parquet.tmp-dead",
        tmp_path / "actions" / PARTS / ".0001.parquet.tmp-dead",
    ]
    young = tmp_path / "t" / "date=2026-11-02" / ".part.parquet.tmp-live"
    for path in [*stale, young]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
    for path in stale:
        os.utime(path, (day_old, day_old))
    lake.days("t").write("2026-11-03", pa.table({"x": [3]}))
    lake.log("actions").append(pa.table({"x": [2]}))
    assert all(path.exists() for path in stale)  # swept at most once an hour per table and process
    SWEEPS._last.clear()  # an hour later (or another process)
    later = Lake(str(tmp_path))
    later.days("t").write("2026-11-03", pa.table({"x": [3]}))
    later.log("actions").append(pa.table({"x": [3]}))
    assert not any(path.exists() for path in stale) and young.exists()
    assert later.days("t").read("2026-11-01")["x"].to_pylist() == [1]
    assert later.log("actions").read()["x"].to_pylist() == [1, 2, 3]


def test_sweep_schedule_is_per_table_and_interval() -> None:
    schedule = SweepSchedule(interval_s=3600)
    assert schedule.due("a", now=0) and schedule.due("b", now=0)
    assert not schedule.due("a", now=3599) and schedule.due("a", now=3600)


def test_a_sweep_about_a_later_moment_removes_only_temp_files(lake_root: LakeRoot, lake_uri: str) -> None:
    """An object's time is set by the store (no utime on S3), so the sweep is asked about a later moment."""
    lake = Lake(lake_uri)
    lake.days("t").write("2026-11-01", pa.table({"x": [1]}))
    left = lake.storage.path("t", "date=2026-11-01", ".part.parquet.tmp-deadbeef")
    with lake.storage.fs.open_output_stream(left) as stream:
        stream.write(b"half a file")
    assert lake.storage.sweep_temp_files(older_than_s=3600) == []  # a write may still be in progress
    swept = lake.storage.sweep_temp_files(older_than_s=3600, now=time.time() + 3602)
    assert [p.rsplit("/", 1)[1] for p in swept] == [".part.parquet.tmp-deadbeef"]
    assert lake_root.names(lake_uri, "t", "date=2026-11-01") == ["part.parquet"]
    assert lake.days("t").read("2026-11-01")["x"].to_pylist() == [1]


def test_constructing_an_object_store_lake_does_no_io() -> None:
    lake = Lake("s3://no-such-bucket-anywhere/lake")  # resolving would need the network
    assert lake.location("people") == "s3://no-such-bucket-anywhere/lake/people"


@pytest.mark.parametrize(
    "uri",
    [
        "s3://AKIAEXAMPLE:do-not-show-me@bucket/lake",
        "s3://bucket/lake?region=eu-west-1&secret_key=do-not-show-me&access_key=AKIAEXAMPLE",
        "s3://bucket/lake?session_token=do-not-show-me",
    ],
)
def test_a_lake_uri_carrying_credentials_is_refused_without_repeating_them(uri: str) -> None:
    with pytest.raises(LakeError, match="expected no credentials in the URI") as raised:
        Lake(uri)
    assert "do-not-show-me" not in str(raised.value) and "AKIAEXAMPLE" not in str(raised.value)


def test_wrong_s3_credentials_fail_without_showing_the_secret(s3_root: LakeRoot, monkeypatch) -> None:
    """moto checks no signatures, but a missing bucket answers like a refused one: the error names the
    bucket and never the secret the SDK signed with."""
    secret = "wrong-secret-" + "x" * 20
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    assert s3_root.server is not None
    lake = Lake(s3_root.server.uri("no-such-bucket", "lake"))
    with pytest.raises(OSError) as raised:
        lake.days("t").write("2026-11-01", pa.table({"x": [1]}))
    assert "no-such-bucket" in str(raised.value) and secret not in str(raised.value)
    assert lake.location("t") == "s3://no-such-bucket/lake/t"  # what metadata shows: no endpoint options
