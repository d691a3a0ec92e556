"""The fast subset of the reliability matrix (scripts/fault_matrix.py runs the whole): the sync in its
own process against the sandbox in its own process, under a mix of faults on every call family and a
kill -9 mid-download, each compared with the fault-free run."""

from __future__ import annotations

from pathlib import Path

import pytest

from molequle_dagster_tests.reliability.matrix import Scenario, ci_configurations, run_matrix


@pytest.mark.timeout(600)
def test_every_fault_leaves_the_lake_of_the_fault_free_run_paid_once_and_no_orphan(tmp_path: Path) -> None:
    scenario = Scenario(people=150, programs=4, ticks=1)
    baseline, rows = run_matrix(ci_configurations(), scenario, tmp_path, jobs=2)
    assert sum(map(len, baseline.tables.values())) > 1000  # the comparison compares something
    for row in rows:
        assert row.fired > 0, f"{row.name}: the faults never fired"
        assert row.ok, row
