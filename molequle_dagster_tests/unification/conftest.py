"""Fixtures for the unification tests (builders live in builders.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from molequle_dagster.settings import MatchRule
from molequle_dagster.unification import UnificationResult, UnificationState, unify

from .builders import PEOPLE_RULES, T0, Runner, people_table


@pytest.fixture
def run_people() -> Runner:
    """Unify people rows; `tick` is the run number (each tick is 30 minutes after T0)."""

    def run(rows: list[dict[str, Any]], previous: UnificationState | None = None, tick: int = 0,
            rules: list[MatchRule] | None = None, **options: Any) -> UnificationResult:
        return unify(people_table(rows), id_column="id", rules=PEOPLE_RULES if rules is None else rules,
                     previous=previous, entity="person", now=T0 + timedelta(minutes=30 * tick), **options)

    return run
