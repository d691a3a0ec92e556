"""Write-back against the sandbox over real HTTP: push unified ids to `molequlePersonId`, sync them back,
and show that neither our own writes nor unchanged values are pushed again, and that a record Marketo
skips is recorded and retried.

The tests run in order on one synced environment (module-scoped fixture, a small sync to stay fast).
"""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from molequle_dagster.assets.write_back import (
    FAILURES_TABLE,
    LEDGER_TABLE,
    WRITE_BACK_JOB,
    changes,
)
from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.settings import WriteBackMapping
from molequle_dagster.sync_runner import run_sync
from molequle_dagster_tests.conftest import SyncEnv, fast_settings_dict, open_sync_env

FIELD = "molequlePersonId"
MAPPING = WriteBackMapping(source_table="unified_people", source_column="unified_id", marketo_field=FIELD)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncEnv]:
    """A small sandbox synced once: 320 people (more than one Sync Leads call), little history."""
    root: Path = tmp_path_factory.mktemp("write_back")
    config = SandboxConfig.for_profile("fast")
    config.data.people = 320
    config.data.programs = 2
    settings = fast_settings_dict(
        sync__history_days=3,
        sync__programs=False,
        accounts__named_accounts=False,
        activities__types=[{"name": "Email Open"}],
    )
    with open_sync_env(root, config, settings) as synced:
        report = run_sync(synced.defs, synced.instance)
        assert report.success, report.failures
        yield synced


def _push(env: SyncEnv) -> dg.ExecuteInProcessResult:
    result = env.defs.resolve_job_def(WRITE_BACK_JOB).execute_in_process(instance=env.instance)
    assert result.success
    return result


def _metadata(result: dg.ExecuteInProcessResult) -> dict:
    (materialization,) = result.asset_materializations_for_node("marketo_write_back")
    return {k: v.value for k, v in materialization.metadata.items()}


def _links(env: SyncEnv) -> dict[int, str]:
    links = env.lake.read_current("person_unified_links")
    return dict(zip(links["source_id"].to_pylist(), links["unified_id"].to_pylist(), strict=True))


def _delete_in_marketo(env: SyncEnv, lead_id: int) -> None:
    """Someone deletes a person in Marketo after our last sync: Sync Leads will skip it (1004)."""
    state = env.control.state
    with state.lock:
        state.people = state.people.filter(pc.not_equal(state.people["id"], lead_id))


def test_people_table_reads_back_the_target_field(env: SyncEnv) -> None:
    people = env.lake.read_current("people")
    assert FIELD in people.column_names  # the sync exports write-back targets
    assert people[FIELD].null_count == people.num_rows  # nothing written yet


def test_first_push_writes_changed_values_300_per_call_and_records_skips(env: SyncEnv) -> None:
    links = _links(env)
    deleted = min(links)
    _delete_in_marketo(env, deleted)
    env.control.reset_counters()
    written_before = len(env.control.leads_written())

    metadata = _metadata(_push(env))

    written = env.control.leads_written()[written_before:]
    people_ids = set(env.lake.read_current("people")["id"].to_pylist())
    expected = {lead: unified for lead, unified in links.items() if lead in people_ids and lead != deleted}
    assert {w["id"]: w["fields"][FIELD] for w in written} == expected
    assert all(w["action"] == "updateOnly" and w["lookupField"] == "id" for w in written)
    assert all(w["status"] == "updated" for w in written)  # never creates people
    assert env.control.call_counts()["POST /rest/v1/leads.json"] == -(-(len(expected) + 1) // 300)
    assert metadata["values_acknowledged"] == len(expected) and metadata["values_failed"] == 1
    failures = env.lake.read_current(FAILURES_TABLE).to_pylist()
    assert [(f["lead_id"], f["code"], f["attempts"]) for f in failures] == [(deleted, "1004", 1)]
    ledger = env.lake.read_current(LEDGER_TABLE)
    assert dict(zip(ledger["lead_id"].to_pylist(), ledger["value"].to_pylist(), strict=True)) == expected


def test_second_push_before_sync_sends_only_the_failed_record(env: SyncEnv) -> None:
    written_before = len(env.control.leads_written())
    env.control.reset_counters()

    metadata = _metadata(_push(env))

    assert env.control.leads_written()[written_before:] == []
    assert metadata["records_sent"] == 1  # only the skipped one is retried; our own writes are not
    assert env.control.call_counts()["POST /rest/v1/leads.json"] == 1
    (failure,) = env.lake.read_current(FAILURES_TABLE).to_pylist()
    assert failure["attempts"] == 2 and failure["code"] == "1004"


def test_sync_reads_the_values_back_and_a_later_push_sends_nothing_new(env: SyncEnv) -> None:
    report = run_sync(env.defs, env.instance)
    assert report.success, report.failures
    people = env.lake.read_current("people")
    links = _links(env)
    ledger = env.lake.read_current(LEDGER_TABLE)
    pushed = dict(zip(ledger["lead_id"].to_pylist(), ledger["value"].to_pylist(), strict=True))
    synced = dict(zip(people["id"].to_pylist(), people[FIELD].to_pylist(), strict=True))
    assert pushed and all(synced[lead] == value == links[lead] for lead, value in pushed.items())

    # Marketo's value as synced now equals the desired one: nothing is a change, even without the ledger
    empty_ledger = env.lake.read_current(LEDGER_TABLE).schema.empty_table()
    remaining = changes(env.lake, MAPPING, empty_ledger)
    assert set(remaining["lead_id"].to_pylist()) <= {min(links)}  # only the person deleted in Marketo

    written_before = len(env.control.leads_written())
    _push(env)
    assert env.control.leads_written()[written_before:] == []


def test_a_changed_unified_value_is_pushed_again(env: SyncEnv) -> None:
    """A new desired value (here: a person's unified id changes) differs from both Marketo and the ledger."""
    links = env.lake.read_current("person_unified_links")
    lead = sorted(links["source_id"].to_pylist())[1]
    edited = links.set_column(
        links.column_names.index("unified_id"),
        "unified_id",
        pc.if_else(pc.equal(links["source_id"], lead), pa.scalar("u-test-moved"), links["unified_id"]),
    )
    env.lake.keyed("person_unified_links", "source_id").commit_contents(edited)
    written_before = len(env.control.leads_written())

    _push(env)

    written = env.control.leads_written()[written_before:]
    assert [(w["id"], w["fields"][FIELD]) for w in written] == [(lead, "u-test-moved")]
