"""Versioned keyed tables: merge-on-read, exact row counts, change feed, compaction, vacuum, crashes; each on
a local directory and on the S3 server (conftest.py)."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from molequle_dagster.lake import Compaction, Lake, LakeError
from molequle_dagster.lake.keyed import DATA, VersionConflict
from molequle_dagster_tests.lake.conftest import LakeRoot

TS = pa.timestamp("s", tz="UTC")


def _rows(ids: list[int], name: str = "v", at: datetime | None = None) -> pa.Table:
    when = at or datetime(2026, 1, 1, tzinfo=UTC)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "name": [f"{name}{i}" for i in ids],
            "at": pa.array([when] * len(ids), TS),
        }
    )


def _by_id(table: pa.Table) -> dict[int, str]:
    names = table["name"].to_pylist() if "name" in table.column_names else [None] * table.num_rows
    return dict(zip(table["id"].to_pylist(), names, strict=True))


def test_upserts_and_deletes_merge_on_read_with_exact_row_counts(lake_uri: str) -> None:
    table = Lake(lake_uri).keyed("people", "id")
    assert table.version == 0 and table.read_or_none() is None
    table.commit(_rows([1, 2, 3]))
    table.commit(_rows([2, 4], name="w"), deletes=pa.table({"id": [3, 99]}))
    manifest = table.manifest()
    assert manifest.version == 2 and manifest.rows == 3
    assert _by_id(table.read()) == {1: "v1", 2: "w2", 4: "w4"}
    assert table.read()["at"].type == TS  # second-precision timestamps survive Parquet's ms


def test_a_commit_that_changes_nothing_makes_no_version(lake_uri: str) -> None:
    table = Lake(lake_uri).keyed("t", "id")
    table.commit(_rows([1]), meta={"cursor": 5})
    assert table.commit(meta={"cursor": 5}).version == 1
    assert table.commit(meta={"cursor": 6}).version == 2  # meta alone is a version
    assert table.meta["cursor"] == 6 and table.manifest().rows == 1


def test_change_feed_returns_the_newest_rows_and_deleted_keys(lake_uri: str) -> None:
    table = Lake(lake_uri).keyed("t", "id")
    table.commit(_rows([1, 2, 3]))
    mark = table.version
    table.commit(_rows([2], name="x"))
    table.commit(_rows([2, 5], name="y"), deletes=pa.table({"id": [1]}))
    changes = table.changes_since(mark)
    assert changes is not None and (changes.from_version, changes.to_version) == (1, 3)
    assert _by_id(changes.upserts) == {2: "y2", 5: "y5"}
    assert changes.deleted["id"].to_pylist() == [1]
    assert table.changes_since(table.version).empty


def test_a_key_deleted_then_upserted_in_one_commit_stays(lake_uri: str) -> None:
    table = Lake(lake_uri).keyed("t", "id")
    table.commit(_rows([1]))
    table.commit(_rows([1], name="new"), deletes=pa.table({"id": [1]}))
    assert _by_id(table.read()) == {1: "new1"} and table.manifest().rows == 1


def test_composite_and_text_keys(lake_uri: str) -> None:
    table = Lake(lake_uri).keyed("m", ["program_id", "lead_id"])
    table.commit(pa.table({"program_id": [1, 1, 2], "lead_id": [10, 11, 10], "s": ["a", "b", "c"]}))
    table.commit(
        pa.table({"program_id": [1], "lead_id": [11], "s": ["B"]}),
        deletes=pa.table({"program_id": [2], "lead_id": [10]}),
    )
    got = {(r["program_id"], r["lead_id"]): r["s"] for r in table.read().to_pylist()}
    assert got == {(1, 10): "a", (1, 11): "B"} and table.manifest().rows == 2
    accounts = Lake(lake_uri).keyed("a", "account_id")
    accounts.commit(pa.table({"account_id": ["company:1"], "x": [1]}))
    accounts.commit(deletes=pa.table({"account_id": ["company:1"]}))
    assert accounts.read().num_rows == 0 and accounts.manifest().rows == 0


def test_compaction_folds_deltas_and_keeps_the_change_feed(lake_uri: str) -> None:
    lake = Lake(lake_uri, compaction=Compaction(max_delta_share=0.1, min_rows=10, grace_s=0))
    table = lake.keyed("t", "id")
    table.commit(_rows(list(range(100))))
    mark = table.version
    for i in range(12):  # 12 rows of deltas > 10% of 100: the 11th commit compacts
        table.commit(_rows([i], name=f"c{i}-"))
    manifest = table.manifest()
    assert manifest.deltas == () or len(manifest.deltas) < 12
    assert manifest.rows == 100
    assert _by_id(table.read())[3] == "c3-3"
    changes = table.changes_since(mark)
    assert changes is not None and sorted(changes.upserts["id"].to_pylist()) == list(range(12))


def test_rebuild_resets_consumers(lake_uri: str) -> None:
    table = Lake(lake_uri).keyed("t", "id")
    table.commit(_rows([1, 2]))
    mark = table.version
    table.rebuild(_rows([7]))
    assert table.changes_since(mark) is None  # the consumer must read everything again
    assert _by_id(table.read()) == {7: "v7"}
    table.commit(_rows([8]))
    changes = table.changes_since(mark + 1)
    assert changes is not None and changes.upserts["id"].to_pylist() == [8]


def test_expected_version_guards_against_lost_updates(lake_uri: str) -> None:
    table = Lake(lake_uri).keyed("t", "id")
    table.commit(_rows([1]))
    with pytest.raises(VersionConflict, match="at version 1, expected 0"):
        table.commit(_rows([2]), expect_version=0)


def test_a_crash_mid_commit_leaves_the_previous_version(lake_uri: str, monkeypatch) -> None:
    table = Lake(lake_uri).keyed("t", "id")
    table.commit(_rows([1]))

    def crash(*args, **kwargs):
        raise RuntimeError("killed while publishing")

    monkeypatch.setattr(table, "_publish", crash)
    with pytest.raises(RuntimeError):
        table.commit(_rows([2]))
    monkeypatch.undo()
    fresh = Lake(lake_uri).keyed("t", "id")
    assert fresh.version == 1 and _by_id(fresh.read()) == {1: "v1"}
    fresh.commit(_rows([3]))  # the orphan delta file of the failed commit is harmless
    assert _by_id(fresh.read()) == {1: "v1", 3: "v3"}


def _rebuild_then_hang(root: str, ready: Connection) -> None:
    """Stream a rebuild whose source stops after its first batch (a download that hangs): the base file's
    temp file is half written, the table's lock held, when the parent kills this process."""

    def batches() -> Iterator[pa.Table]:
        yield _rows(list(range(100)))
        ready.send("first batch written")
        ready.recv()  # never answered: the parent kills us here

    table = Lake(root).keyed("t", "id")
    table.commit(_rows([1]))
    table.rebuild_from(batches(), _rows([0]).schema)


def test_temp_files_of_a_writer_killed_mid_commit_are_swept_by_the_next_commit(tmp_path: Path) -> None:
    """Issue 16 item 4: `.…parquet.tmp-<uuid>` files a kill -9 left were never swept."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    writer = context.Process(target=_rebuild_then_hang, args=(str(tmp_path), child))
    writer.start()
    assert parent.poll(120) and parent.recv() == "first batch written"
    os.kill(writer.pid, signal.SIGKILL)
    writer.join(30)
    left = list((tmp_path / "t").rglob(".*.tmp-*"))
    assert len(left) == 1 and left[0].stat().st_size > 0  # the half-written base
    table = Lake(str(tmp_path)).keyed("t", "id")
    assert _by_id(table.read()) == {1: "v1"}  # readers never saw the half rebuild
    table.commit(_rows([2]))  # the next process to commit holds the lock: no writer of `t` can be alive
    assert list((tmp_path / "t").rglob(".*.tmp-*")) == []
    assert _by_id(table.read()) == {1: "v1", 2: "v2"}


def test_vacuum_removes_unreferenced_files_after_the_grace_period(lake_root: LakeRoot, lake_uri: str) -> None:
    lake = Lake(lake_uri, compaction=Compaction(retain_s=0, grace_s=0))
    table = lake.keyed("t", "id")
    table.commit(_rows([1, 2]))
    table.commit(_rows([3]))
    table.compact()
    files = lake_root.names(lake_uri, "t", DATA)
    assert len(files) == 1  # only the compacted base is left
    assert _by_id(table.read()) == {1: "v1", 2: "v2", 3: "v3"}
    assert table.changes_since(1) is None  # history beyond the retention is gone: rebuild


def test_a_stored_key_cannot_change(lake_uri: str) -> None:
    Lake(lake_uri).keyed("t", "id").commit(_rows([1]))
    with pytest.raises(LakeError, match="key cannot change"):
        Lake(lake_uri).keyed("t", "other").manifest()


def test_schema_grows_with_new_columns(lake_uri: str) -> None:
    table = Lake(lake_uri).keyed("t", "id")
    table.commit(_rows([1]))
    table.commit(_rows([2]).append_column("extra", pa.array(["x"])))
    read = table.read().sort_by("id")
    assert read["extra"].to_pylist() == [None, "x"]


def _commit_many(root: str, writer: int, count: int) -> None:
    table = Lake(root, compaction=Compaction(min_rows=5, max_delta_share=0.5)).keyed("t", "id")
    for i in range(count):
        table.commit(_rows([writer * 1000 + i]))


def test_concurrent_writers_on_one_host_lose_nothing(lake_root: LakeRoot, lake_uri: str) -> None:
    count = 15 if lake_root.local else 6  # an S3 commit is ~10 requests: fewer keep the test short
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_commit_many, args=(lake_uri, w, count)) for w in range(3)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(120)
        assert process.exitcode == 0
    table = Lake(lake_uri).keyed("t", "id")
    ids = sorted(table.read()["id"].to_pylist())
    assert ids == sorted(w * 1000 + i for w in range(3) for i in range(count))
    assert table.manifest().rows == 3 * count


operations = st.lists(
    st.tuples(
        st.lists(st.integers(0, 30), max_size=6),  # upserted ids
        st.lists(st.integers(0, 30), max_size=4),  # deleted ids
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(operations)
def test_merge_on_read_equals_a_dictionary_model(tmp_path_factory, ops) -> None:
    _model_check(str(tmp_path_factory.mktemp("model")), ops)


@settings(max_examples=6, deadline=None)  # each example is ~100 requests to the S3 server
@given(operations)
def test_merge_on_read_on_object_storage_equals_a_dictionary_model(s3_root: LakeRoot, ops) -> None:
    _model_check(s3_root.new(), ops)


def _model_check(uri: str, ops: list[tuple[list[int], list[int]]]) -> None:
    table = Lake(uri, compaction=Compaction(min_rows=4, max_delta_share=0.5, grace_s=0)).keyed("t", "id")
    model: dict[int, str] = {}
    for step, (ups, dels) in enumerate(ops):
        for d in dels:
            model.pop(d, None)
        for u in ups:
            model[u] = f"s{step}-{u}"
        upserts = pa.table({"id": pa.array(ups, pa.int64()), "name": [f"s{step}-{u}" for u in ups]})
        table.commit(upserts if ups else None, pa.table({"id": pa.array(dels, pa.int64())}) if dels else None)
        if table.version:
            got = table.read()
            assert _by_id(got) == model
            assert table.manifest().rows == len(model)
            assert pc.count_distinct(got["id"]).as_py() == got.num_rows
