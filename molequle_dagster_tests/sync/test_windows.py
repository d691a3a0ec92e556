"""A window of Marketo time read through REST, through bulk, and through REST that switches to bulk past its
page budget: the same rows, equal to the sandbox's truth."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from molequle_dagster.coordination import open_store
from molequle_dagster.marketo import BulkConfig, MarketoClient, MarketoConfig, PacingConfig
from molequle_dagster.sandbox import truth
from molequle_dagster.sandbox.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster.sync.windows import ReadReport, read_activities, read_changed_leads

TYPES = [1, 2, 3, 6, 7, 8, 10, 11, 22, 27, 32, 104]  # more than 10: two REST feeds
FIELDS = ["id", "email", "firstName", "lastName", "title", "leadScore", "country", "updatedAt"]


@pytest.fixture(scope="module")
def churned(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SandboxServer, MarketoClient, datetime]]:
    config = SandboxConfig.for_profile("fast")
    config.data.people = 400
    config.data.activities_per_person = 4
    config.data.programs = 4
    with SandboxServer(config, port=0) as sandbox:
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
        sandbox.control.apply_churn(
            {
                "new_people": 0.1,
                "attribute_updates": 0.8,  # with new people and emails: past one page of lead changes
                "email_changes": 0.05,
                "new_activities_per_person": 2,
                "program_status_changes": 0.2,
                "merges": 0.02,
            },
            seed=5,
        )
        config = MarketoConfig(
            base_url=sandbox.base_url,
            pacing=PacingConfig(calls_per_20s=100, window_s=0.01, max_in_flight=5),
            bulk=BulkConfig(poll_interval_s=0.0, job_timeout_s=600.0),
        )
        store = open_store(str(tmp_path_factory.mktemp("state")))
        client = MarketoClient(config, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, store=store)
        yield sandbox, client, start
        client.close()


def _activities(
    client: MarketoClient, start: datetime, end: datetime, pages: int | None
) -> tuple[pa.Table, ReadReport]:
    report = ReadReport()
    tables = [
        t.table for t in read_activities(client, TYPES, start, end, rest_pages=pages, now=end, report=report)
    ]
    return pa.concat_tables(tables), report


def _by_guid(table: pa.Table) -> dict[str, tuple]:
    return {
        r["marketoGUID"]: (
            r["leadId"],
            r["activityTypeId"],
            r["primaryAttributeValueId"],
            json.loads(r["attributes"]) if r["attributes"] else {},
        )
        for r in table.to_pylist()
    }


def test_rest_bulk_and_a_switch_past_the_page_budget_give_the_same_activities(churned) -> None:
    sandbox, client, start = churned
    end = datetime.now(UTC).replace(microsecond=0)
    rest, rest_report = _activities(client, start, end, pages=100)
    bulk, bulk_report = _activities(client, start, end, pages=None)
    switched, switch_report = _activities(client, start, end, pages=1)
    assert rest_report.method == "rest" and rest_report.exports == 0
    assert bulk_report.method == "bulk" and bulk_report.exports == 1
    assert (
        switch_report.method == "rest+bulk" and switch_report.rest_records > 0 and switch_report.exports >= 1
    )
    expected = truth.activities_truth(sandbox.control.state, TYPES, start, end, end, enforce_retention=True)
    want = {str(g) for g in expected["marketoGUID"].to_pylist()}
    assert len(want) > 600  # enough rows that one page (300) cannot hold them
    for table in (rest, bulk, switched):
        assert set(_by_guid(table)) == want
    assert _by_guid(rest) == _by_guid(bulk)
    assert _by_guid(switched) == _by_guid(bulk)


def test_changed_leads_through_rest_and_bulk_agree_with_marketo(churned) -> None:
    sandbox, client, start = churned
    end = datetime.now(UTC).replace(microsecond=0)
    schema = client.lead_schema(FIELDS)
    watched = ["email", "firstName", "lastName", "title", "leadScore", "country", "unsubscribed"]
    # Score changes are Change Score (22), not Change Data Value, and a merge fills the winner's empty fields
    # without one: the sync passes the leads it saw in those activities, as here.
    hints = truth.activities_truth(sandbox.control.state, [22, 32], start, end, end, enforce_retention=False)
    winners = dict.fromkeys(hints["leadId"].to_pylist(), end)
    assert 32 in hints["activityTypeId"].to_pylist()
    tables = {}
    for name, pages in (("rest", 100), ("bulk", None), ("switched", 1)):
        report = ReadReport()
        changed = read_changed_leads(
            client,
            FIELDS,
            watched,
            schema,
            start,
            end,
            extra_ids=winners,
            rest_pages=pages,
            now=end,
            report=report,
        )
        tables[name] = pa.concat_tables([s.table for s in changed.rows])
        assert report.method == {"rest": "rest", "bulk": "bulk", "switched": "rest+bulk"}[name], report
    people = sandbox.control.state.people
    modified = people.filter(
        pa.compute.greater_equal(people["_modifiedAt"], pa.scalar(start, people["_modifiedAt"].type))
    )
    want = set(modified["id"].to_pylist())
    current = {r["id"]: r for r in truth.people_truth(sandbox.control.state, FIELDS).to_pylist()}
    for name, table in tables.items():
        rows = {r["id"]: r for r in table.to_pylist()}
        assert set(rows) == want, name
        for lead, row in rows.items():
            assert {f: row[f] for f in FIELDS if f != "updatedAt"} == {
                f: current[lead][f] for f in FIELDS if f != "updatedAt"
            }, (name, lead)
