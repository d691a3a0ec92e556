"""Both coordination backends for tests: SQLite in a temporary directory, PostgreSQL in a schema of its
own (dropped afterwards) of the database named by DAGSTER_PG_URL (`source scripts/pg_throwaway.sh;
pg_throwaway_start`). Without that variable PostgreSQL tests are skipped, unless MOLEQULE_REQUIRE_PG=1."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest

from molequle_dagster.coordination import CoordinationStore, PostgresStore, SqliteStore

BACKENDS = ["sqlite", "postgres"]
StoreFactory = Callable[..., CoordinationStore]


def pg_url() -> str:
    url = os.environ.get("DAGSTER_PG_URL")
    if not url:
        if os.environ.get("MOLEQULE_REQUIRE_PG") == "1":
            pytest.fail("MOLEQULE_REQUIRE_PG=1 but DAGSTER_PG_URL is not set")
        pytest.skip("PostgreSQL not available (set DAGSTER_PG_URL, see scripts/pg_throwaway.sh)")
    return url


def drop_schema(url: str, schema: str) -> None:
    conn = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://"))
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        conn.close()


@contextmanager
def store_factory(backend: str, root: Path) -> Iterator[StoreFactory]:
    """`make(name="main")`: a store object on the namespace `name`; the same name shares its state."""
    opened: list[CoordinationStore] = []
    prefix = f"t_{uuid.uuid4().hex[:10]}"
    url = pg_url() if backend == "postgres" else ""

    def make(name: str = "main") -> CoordinationStore:
        if backend == "postgres":
            store: CoordinationStore = PostgresStore(url, schema=f"{prefix}_{name}")
        else:
            store = SqliteStore(root / f"store-{name}")
        opened.append(store)
        return store

    try:
        yield make
    finally:
        for store in opened:
            store.close()
        if backend == "postgres":
            for schema in {s.schema for s in opened if isinstance(s, PostgresStore)}:
                drop_schema(url, schema)


def target(store: CoordinationStore) -> tuple[str, str]:
    """(url or directory, schema) to open the same store in another process."""
    if isinstance(store, PostgresStore):
        return os.environ["DAGSTER_PG_URL"], store.schema
    assert isinstance(store, SqliteStore)
    return str(store.directory), ""
