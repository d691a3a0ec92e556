"""Every coordination store test runs on both backends (PostgreSQL skipped without DAGSTER_PG_URL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from molequle_dagster_tests.coordination.backends import BACKENDS, StoreFactory, store_factory


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(backend: str, tmp_path: Path) -> Iterator[StoreFactory]:
    """`make_store(name)`: a new store object on namespace `name` (same name: same state, like another
    process opening the same store)."""
    with store_factory(backend, tmp_path) as make:
        yield make
