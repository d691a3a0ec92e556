"""Accounts: the table account rules match on, and the person → account links."""

from __future__ import annotations

import pyarrow as pa

from molequle_dagster.arrow_ops import SYNCED_AT
from molequle_dagster.assets.accounts import (
    ACCOUNTS_SCHEMA,
    company_accounts,
    named_accounts_rows,
    person_links,
)
from molequle_dagster.settings import ACCOUNT_TABLE_COLUMNS


def test_accounts_table_has_exactly_the_columns_rules_may_use() -> None:
    assert tuple(n for n in ACCOUNTS_SCHEMA.names if n != SYNCED_AT) == ACCOUNT_TABLE_COLUMNS


def test_companies_and_named_accounts_map_onto_one_table_and_link_people() -> None:
    companies = pa.table(
        {
            "id": [1, 2],
            "externalCompanyId": ["c1", "c2"],
            "company": ["Acme Inc", "Globex"],
            "website": ["https://www.acme.com/about", "globex.io"],
            "industry": ["x", None],
            "numberOfEmployees": [10, None],
            "billingCountry": ["DE", "US"],
        }
    )
    named = pa.table(
        {
            "marketoGUID": ["g1"],
            "name": ["Acme"],
            "domainName": ["acme.com"],
            "industry": ["x"],
            "country": ["DE"],
            "numberOfEmployees": [12],
        }
    )
    accounts = pa.concat_tables([company_accounts(companies), named_accounts_rows(named)])
    assert accounts["account_id"].to_pylist() == ["company:1", "company:2", "named:g1"]
    assert accounts["domain"].to_pylist() == ["acme.com", "globex.io", "acme.com"]
    people = pa.table({"id": [10, 11, 12], "externalCompanyId": ["c1", "c2", None]})
    links = person_links(people, companies, accounts).to_pylist()
    assert {(r["person_id"], r["account_id"], r["link"]) for r in links} == {
        (10, "company:1", "externalCompanyId"),
        (11, "company:2", "externalCompanyId"),
        (10, "named:g1", "domain"),
    }
