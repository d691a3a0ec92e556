"""Write-back of an account-level value against the sandbox over real HTTP: each person linked to an account
gets that account's unified id in `molequlePersonId` (the only custom lead field the sandbox knows), people
without an account get nothing, and a second push sends nothing.

The tests run in order on one synced environment (module-scoped fixture, a small sync to stay fast).
"""

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from molequle_dagster.assets.write_back import LEDGER_TABLE, WRITE_BACK_JOB
from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster.settings import WriteBackMapping
from molequle_dagster.sync_runner import run_sync
from molequle_dagster_tests.conftest import SyncEnv, fast_settings_dict, open_sync_env

FIELD = "molequlePersonId"
MAPPING = WriteBackMapping(source_table="unified_accounts", source_column="unified_id", marketo_field=FIELD)
WITHOUT_ACCOUNT = 7  # people whose company link we remove before the first sync


def _drop_company_of(sandbox: SandboxServer, count: int) -> set[int]:
    """Some people in Marketo have no company: blank their externalCompanyId, so they link to no account."""
    state = sandbox.control.state
    with state.lock:
        people = state.people
        chosen = set(sorted(people["id"].to_pylist())[1 : 1 + count * 3 : 3])
        picked = pc.is_in(people["id"], value_set=pa.array(sorted(chosen), people["id"].type))
        column = people.column_names.index("externalCompanyId")
        blanked = pc.if_else(picked, pa.scalar(None, pa.string()), people["externalCompanyId"])
        state.people = people.set_column(column, people.schema.field(column), blanked)
    return chosen


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SyncEnv, set[int]]]:
    """A small sandbox (a few people without a company) synced once, writing back account unified ids."""
    root: Path = tmp_path_factory.mktemp("write_back_accounts")
    config = SandboxConfig.for_profile("fast")
    config.data.people = 150
    config.data.programs = 2
    settings = fast_settings_dict(
        sync__history_days=3,
        sync__programs=False,
        accounts__named_accounts=False,
        activities__types=[{"name": "Email Open"}],
        write_back__mappings=[MAPPING.model_dump()],
    )
    with open_sync_env(root, config, settings) as synced:
        without_account = _drop_company_of(synced.sandbox, WITHOUT_ACCOUNT)
        report = run_sync(synced.defs, synced.instance)
        assert report.success, report.failures
        yield synced, without_account


def _push(env: SyncEnv) -> list[dict]:
    """Run the write-back job; return the Sync Leads writes the sandbox recorded during it."""
    written_before = len(env.control.leads_written())
    result = env.defs.resolve_job_def(WRITE_BACK_JOB).execute_in_process(instance=env.instance)
    assert result.success
    return env.control.leads_written()[written_before:]


def _account_unified_id_per_person(env: SyncEnv) -> dict[int, str]:
    """Expected values, from the lake in plain Python: person → its (single) account → unified id."""
    person_accounts = env.lake.read_current("person_accounts").to_pylist()
    links = env.lake.read_current("account_unified_links").to_pylist()
    unified_of_account = {link["source_id"]: link["unified_id"] for link in links}
    accounts_of: dict[int, list[str]] = {}
    for row in person_accounts:
        accounts_of.setdefault(row["person_id"], []).append(row["account_id"])
    return {person: unified_of_account[min(accounts)] for person, accounts in accounts_of.items()}


def test_sync_links_most_people_to_an_account_and_the_chosen_ones_to_none(
    env: tuple[SyncEnv, set[int]],
) -> None:
    synced, without_account = env
    expected = _account_unified_id_per_person(synced)
    people_ids = set(synced.lake.read_current("people")["id"].to_pylist())
    assert without_account <= people_ids and len(without_account) == WITHOUT_ACCOUNT
    assert set(expected) == people_ids - without_account
    # the value pushed is the account's unified id, not the person's own or the raw account id
    account_ids = set(synced.lake.read_current("person_accounts")["account_id"].to_pylist())
    assert not set(expected.values()) & account_ids
    assert len(set(expected.values())) < len(expected)  # colleagues share their account's id


def test_first_push_writes_each_linked_persons_account_unified_id(env: tuple[SyncEnv, set[int]]) -> None:
    synced, without_account = env
    expected = _account_unified_id_per_person(synced)

    written = _push(synced)

    assert {w["id"]: w["fields"][FIELD] for w in written} == expected
    assert not {w["id"] for w in written} & without_account
    assert all(w["action"] == "updateOnly" and w["lookupField"] == "id" for w in written)
    assert all(w["status"] == "updated" for w in written)
    ledger = synced.lake.read_current(LEDGER_TABLE)
    assert dict(zip(ledger["lead_id"].to_pylist(), ledger["value"].to_pylist(), strict=True)) == expected


def test_second_push_before_the_next_sync_sends_nothing(env: tuple[SyncEnv, set[int]]) -> None:
    synced, _ = env
    assert _push(synced) == []


def test_next_sync_reads_the_account_ids_back_and_a_push_after_it_sends_nothing(
    env: tuple[SyncEnv, set[int]],
) -> None:
    synced, without_account = env
    report = run_sync(synced.defs, synced.instance)
    assert report.success, report.failures
    expected = _account_unified_id_per_person(synced)
    people = synced.lake.read_current("people")
    in_marketo = dict(zip(people["id"].to_pylist(), people[FIELD].to_pylist(), strict=True))

    assert {lead: in_marketo[lead] for lead in expected} == expected
    assert all(in_marketo[lead] is None for lead in without_account)
    assert _push(synced) == []
