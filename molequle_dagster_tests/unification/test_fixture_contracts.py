"""Contract tests on captured Marketo data (the Marketo fixtures folder, located by
`molequle_dagster_tests/fixtures.py`)."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.csv as csv
import pytest

from molequle_dagster.settings import MatchKey, MatchRule, default_settings_path, load_settings
from molequle_dagster.unification import derive_ids, normalize_column, unify
from molequle_dagster_tests.fixtures import MARKETO_FIXTURES

from .builders import T0, clusters, people_table

FIXTURES = MARKETO_FIXTURES
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="Marketo fixtures not available")
EXPORT_COLUMNS = ["id", "email", "firstName", "lastName", "company", "title", "country", "createdAt",
                  "updatedAt"]
DEFAULT_PEOPLE_RULES = load_settings(default_settings_path()).unification.people


def bulk_lead_export(*names: str) -> pa.Table:
    """Real bulk lead export CSVs; Marketo writes null as the bare word `null`."""
    options = csv.ConvertOptions(null_values=["null"], strings_can_be_null=True)
    tables = [csv.read_csv(FIXTURES / "bulk-leads" / name, convert_options=options) for name in names]
    return pa.concat_tables([t.select(EXPORT_COLUMNS) for t in tables])


def lead_records(relative: str) -> list[dict[str, Any]]:
    body = json.loads((FIXTURES / relative).read_text())
    records = body if isinstance(body, list) else body["result"]
    return [{key: record.get(key) for key in ("id", "email", "firstName", "lastName")} for record in records]


def test_real_bulk_export_with_null_emails_stays_apart() -> None:
    """19 real leads of one test company, all without email: the default rules must not glue them."""
    leads = bulk_lead_export("real_embulk__lead_extract1.csv", "real_embulk__leads_extract2.csv")
    assert leads.num_rows == 19 and leads["email"].null_count == 19
    result = unify(leads, id_column="id", rules=DEFAULT_PEOPLE_RULES, previous=None, entity="person", now=T0)
    assert result.unified.num_rows == 19
    assert result.links["matched_rule"].null_count == 19

    same_company = MatchRule(name="same_company",
                             keys=[MatchKey(field="company", normalize=["company_name"])])
    by_company = unify(leads, id_column="id", rules=[same_company], previous=None, entity="person", now=T0)
    assert clusters(by_company) == {frozenset(leads["id"].to_pylist())}
    (unified,) = by_company.unified.to_pylist()
    assert unified["unified_id"] == derive_ids("person", pa.array([min(leads["id"].to_pylist())]))[0].as_py()
    assert unified["company"] == "TD_TESTING"


def test_doc_example_duplicate_leads_with_one_email_unify() -> None:
    """Adobe's Get Programs by Lead Id example lists three leads (50, 2343, 88498) sharing one address."""
    rows = lead_records("leads/doc_leads__get-programs-by-lead-id__response.json")
    result = unify(people_table(rows), id_column="id", rules=DEFAULT_PEOPLE_RULES, previous=None,
                   entity="person", now=T0)
    assert clusters(result) == {frozenset({50, 2343, 88498})}
    assert set(result.links["matched_rule"].to_pylist()) == {"same_email"}


def test_real_list_page_of_mostly_empty_leads() -> None:
    """A real 300-lead list page: 299 leads have no email or name; none of them may merge."""
    rows = lead_records("leads/real_embulk__lead_records_by_list_300.json")
    result = unify(people_table(rows), id_column="id", rules=DEFAULT_PEOPLE_RULES, previous=None,
                   entity="person", now=T0)
    assert result.unified.num_rows == 300


def test_doc_push_lead_websites_and_emails_normalize() -> None:
    body = json.loads((FIXTURES / "leads/doc_leads__push-lead-to-marketo__request.json").read_text())
    websites = pa.array([record["website"] for record in body["input"]])
    emails = pa.array([record["email"] for record in body["input"]])
    assert normalize_column(websites, ["domain"]).to_pylist() == ["brexit.com", "take-off-eh.com"]
    assert normalize_column(emails, ["email"]).to_pylist() == [
        "theresa.may@westminister.gov.uk", "justin.trudeau@ottowa.gov.ca",
    ]
