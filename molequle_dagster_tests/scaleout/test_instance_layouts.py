"""Issue 15 item 1, the layouts a multi-host deployment uses: whichever way the instance names PostgreSQL,
the coordination store follows it into the same database, so every host shares one Marketo budget."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest

from molequle_dagster.coordination import PostgresStore, open_store
from molequle_dagster.resources import coordination_target
from molequle_dagster_tests.coordination.backends import pg_url

UNSET = "MOLEQULE_TEST_COORDINATION_URL_NOT_SET"  # no explicit store: the instance decides


def _postgres_db() -> dict[str, object]:
    parts = urlsplit(pg_url())
    return {
        "username": parts.username,
        "password": parts.password,
        "hostname": parts.hostname,
        "port": parts.port,
        "db_name": parts.path.lstrip("/"),
        "scheme": "postgresql+psycopg2",
    }


def _storages(db: dict[str, object]) -> dict[str, object]:
    """How Dagster's Helm chart writes the instance: three storages, each naming the database."""
    return {
        key: {"module": f"dagster_postgres.{module}", "class": cls, "config": {"postgres_db": db}}
        for key, module, cls in (
            ("run_storage", "run_storage", "PostgresRunStorage"),
            ("event_log_storage", "event_log", "PostgresEventLogStorage"),
            ("schedule_storage", "schedule_storage", "PostgresScheduleStorage"),
        )
    }


@pytest.mark.parametrize("layout", ["storage: postgres (deploy/production)", "three storages (Helm chart)"])
def test_the_coordination_store_lives_in_the_instances_database(layout: str, tmp_path: Path) -> None:
    db = _postgres_db()
    overrides = _storages(db) if "Helm" in layout else {"storage": {"postgres": {"postgres_db": db}}}
    with dg.instance_for_test(overrides=overrides, temp_dir=str(tmp_path)) as instance:
        target = coordination_target(instance, UNSET)
    assert urlsplit(target).hostname == db["hostname"] and urlsplit(target).path == f"/{db['db_name']}"
    store = open_store(target)
    try:
        assert isinstance(store, PostgresStore) and store.schema == "molequle"
        assert f":{db['password']}@" not in store.description and ":***@" in store.description
    finally:
        store.close()
    assert not (tmp_path / "molequle").exists()  # nothing beside the instance's home on this host
