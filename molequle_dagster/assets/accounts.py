"""Accounts: Marketo companies (and named accounts where the customer runs ABM), the current accounts table
and the person → account link.

Marketo's Company API has no "list all" and no time filter: companies are queried by the
`externalCompanyId`s that people carry (300 per call). A tick queries only the companies of people who
changed since the last run; a refresh of the people population (daily) re-queries all of them. Named
accounts cannot be linked to leads through the API (§8.2), so they are matched to companies by domain.
"""

from datetime import timedelta
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.assets.common import (
    MARKETO_POOL,
    MOLEQULE_GROUP,
    OWNERS,
    SYNCED_AT,
    accounting,
    dedupe_latest,
    fetched_from_marketo,
    schema_metadata,
    stamp,
    utcnow,
)
from molequle_dagster.marketo.batching import batched
from molequle_dagster.resources import LakeResource, MarketoResource
from molequle_dagster.settings import MolequleSettings

COMPANIES_TABLE = "companies"
NAMED_ACCOUNTS_TABLE = "named_accounts"
ACCOUNTS_TABLE = "accounts"
PERSON_ACCOUNTS_TABLE = "person_accounts"
FILTER_BATCH = 300
TS = pa.timestamp("s", tz="UTC")

ACCOUNTS_SCHEMA = pa.schema(
    [
        ("account_id", pa.string()),  # "company:<id>" or "named:<marketoGUID>"
        ("source", pa.string()),
        ("company", pa.string()),
        ("website", pa.string()),
        ("industry", pa.string()),
        ("numberOfEmployees", pa.int64()),
        ("billingCountry", pa.string()),
        ("domain", pa.string()),
        (SYNCED_AT, TS),
    ]
)
PERSON_ACCOUNTS_SCHEMA = pa.schema(
    [("person_id", pa.int64()), ("account_id", pa.string()), ("link", pa.string())]
)


def build_account_assets(settings: MolequleSettings) -> list[Any]:
    company_fields = list(dict.fromkeys(["id", "externalCompanyId", *settings.accounts.company_attributes]))
    named_fields = list(dict.fromkeys(["marketoGUID", *settings.accounts.named_account_attributes]))
    assets: list[Any] = []

    @dg.asset(
        name="marketo_companies",
        **fetched_from_marketo(MARKETO_POOL),
        deps=["people"],
    )
    def marketo_companies(marketo: MarketoResource, lake: LakeResource) -> dg.MaterializeResult:
        """Companies of the synced people, queried by externalCompanyId (only changed ones per tick)."""
        store = lake.lake
        client = marketo.client
        now = utcnow()
        people = store.read_current("people", columns=["externalCompanyId", SYNCED_AT])
        state = store.read_state("companies")
        existing = store.read_current(COMPANIES_TABLE)
        wanted = _company_ids_to_query(people, existing, state)
        with accounting(client, lake.lake) as spent:
            rows = []
            for _, chunk in batched(wanted, FILTER_BATCH):
                rows.extend(client.companies("externalCompanyId", chunk, company_fields))
        fetched = _records_table(rows, company_fields, now)
        table = _upsert(existing, fetched, "id")
        store.write_current(COMPANIES_TABLE, table)
        if people is not None and people.num_rows:
            state = {"people_through": pc.max(people.column(SYNCED_AT)).as_py().isoformat()}
            store.write_state("companies", state)
        return dg.MaterializeResult(
            metadata={"dagster/row_count": table.num_rows, "queried": len(wanted), **spent.metadata()}
        )

    assets.append(marketo_companies)
    upstream = [marketo_companies]

    if settings.accounts.named_accounts:

        @dg.asset(
            name="marketo_named_accounts",
            **fetched_from_marketo(MARKETO_POOL),
            deps=[marketo_companies],
        )
        def marketo_named_accounts(marketo: MarketoResource, lake: LakeResource) -> dg.MaterializeResult:
            """Marketo named accounts (ABM) whose domain matches a synced company's website domain."""
            store = lake.lake
            client = marketo.client
            now = utcnow()
            companies = store.read_current(COMPANIES_TABLE)
            existing = store.read_current(NAMED_ACCOUNTS_TABLE)
            known = set(existing.column("domainName").to_pylist()) if existing is not None else set()
            domains = (
                sorted({d for d in _domains(companies).to_pylist() if d} - known)
                if companies is not None
                else []
            )
            with accounting(client, lake.lake) as spent:
                rows = []
                for _, chunk in batched(domains, FILTER_BATCH):
                    rows.extend(client.named_accounts("domainName", chunk, named_fields))
            fetched = _records_table(rows, named_fields, now)
            table = _upsert(existing, fetched, "marketoGUID")
            store.write_current(NAMED_ACCOUNTS_TABLE, table)
            return dg.MaterializeResult(
                metadata={"dagster/row_count": table.num_rows, "queried": len(domains), **spent.metadata()}
            )

        assets.append(marketo_named_accounts)
        upstream.append(marketo_named_accounts)

    @dg.multi_asset(
        name="accounts_current",
        group_name=MOLEQULE_GROUP,
        specs=[
            dg.AssetSpec(
                ACCOUNTS_TABLE,
                description="Current accounts: Marketo companies and named accounts, one row each.",
                deps=upstream,
                kinds={"parquet", "pyarrow"},
                owners=OWNERS,
                metadata=schema_metadata(ACCOUNTS_SCHEMA),
                freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=30)),
            ),
            dg.AssetSpec(
                PERSON_ACCOUNTS_TABLE,
                description="Person → account links (company by externalCompanyId; named account by domain).",
                deps=[ACCOUNTS_TABLE, "people"],
                kinds={"parquet", "pyarrow"},
                owners=OWNERS,
                metadata=schema_metadata(PERSON_ACCOUNTS_SCHEMA),
                freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=30)),
            ),
        ],
    )
    def accounts_current(lake: LakeResource):
        """Build the current accounts table and the person → account links from the synced tables."""
        store = lake.lake
        companies = store.read_current(COMPANIES_TABLE)
        named = store.read_current(NAMED_ACCOUNTS_TABLE) if settings.accounts.named_accounts else None
        accounts = _accounts_table(companies, named)
        store.write_current(ACCOUNTS_TABLE, accounts)
        links = _person_links(store.read_current("people"), companies, accounts)
        store.write_current(PERSON_ACCOUNTS_TABLE, links)
        yield dg.MaterializeResult(
            asset_key=ACCOUNTS_TABLE, metadata={"dagster/row_count": accounts.num_rows}
        )
        yield dg.MaterializeResult(
            asset_key=PERSON_ACCOUNTS_TABLE, metadata={"dagster/row_count": links.num_rows}
        )

    assets.append(accounts_current)
    return assets


def _company_ids_to_query(people: pa.Table | None, existing: pa.Table | None, state: dict) -> list[str]:
    if people is None or people.num_rows == 0:
        return []
    through = state.get("people_through")
    changed = people
    if existing is not None and through:
        from datetime import datetime

        cutoff = pa.scalar(datetime.fromisoformat(through), TS)
        changed = people.filter(pc.greater(people.column(SYNCED_AT), cutoff))
    ids = {v for v in changed.column("externalCompanyId").to_pylist() if v}
    if existing is not None:  # companies we have never seen are always queried
        known = set(existing.column("externalCompanyId").to_pylist())
        ids |= {v for v in people.column("externalCompanyId").to_pylist() if v and v not in known}
    return sorted(ids)


def _records_table(rows: list[dict[str, Any]], fields: list[str], now: Any) -> pa.Table:
    columns = {f: [r.get(f) for r in rows] for f in fields}
    table = pa.table(
        {
            f: pa.array(v) if any(x is not None for x in v) else pa.nulls(len(v), pa.string())
            for f, v in columns.items()
        }
    )
    return stamp(table, now)


def _upsert(existing: pa.Table | None, fetched: pa.Table, key: str) -> pa.Table:
    if existing is not None and fetched.num_rows == 0:
        return existing
    if existing is None:
        return dedupe_latest(fetched, key).sort_by(key)
    combined = pa.concat_tables([existing, fetched.cast(existing.schema)])
    return dedupe_latest(combined, key).sort_by(key)


def _domains(companies: pa.Table) -> pa.Array:
    website = pc.utf8_lower(pc.cast(companies.column("website"), pa.string()))
    website = pc.replace_substring_regex(website, r"^[a-z]+://", "")
    website = pc.replace_substring_regex(website, r"^www\.", "")
    return pc.replace_substring_regex(website, r"[/:].*$", "")


def _col(table: pa.Table, name: str, typ: pa.DataType) -> pa.Array:
    if name in table.column_names:
        return pc.cast(table.column(name), typ)
    return pa.nulls(table.num_rows, typ)


def _accounts_table(companies: pa.Table | None, named: pa.Table | None) -> pa.Table:
    parts = []
    if companies is not None and companies.num_rows:
        ids = pc.cast(companies.column("id"), pa.string())
        parts.append(
            pa.table(
                {
                    "account_id": pc.binary_join_element_wise("company:", ids, ""),
                    "source": pa.array(["company"] * companies.num_rows),
                    "company": _col(companies, "company", pa.string()),
                    "website": _col(companies, "website", pa.string()),
                    "industry": _col(companies, "industry", pa.string()),
                    "numberOfEmployees": _col(companies, "numberOfEmployees", pa.int64()),
                    "billingCountry": _col(companies, "billingCountry", pa.string()),
                    "domain": _domains(companies),
                    SYNCED_AT: _col(companies, SYNCED_AT, TS),
                },
                ACCOUNTS_SCHEMA,
            )
        )
    if named is not None and named.num_rows:
        guid = pc.cast(named.column("marketoGUID"), pa.string())
        domain = _col(named, "domainName", pa.string())
        parts.append(
            pa.table(
                {
                    "account_id": pc.binary_join_element_wise("named:", guid, ""),
                    "source": pa.array(["named_account"] * named.num_rows),
                    "company": _col(named, "name", pa.string()),
                    "website": domain,
                    "industry": _col(named, "industry", pa.string()),
                    "numberOfEmployees": _col(named, "numberOfEmployees", pa.int64()),
                    "billingCountry": _col(named, "country", pa.string()),
                    "domain": pc.utf8_lower(domain),
                    SYNCED_AT: _col(named, SYNCED_AT, TS),
                },
                ACCOUNTS_SCHEMA,
            )
        )
    return pa.concat_tables(parts).sort_by("account_id") if parts else ACCOUNTS_SCHEMA.empty_table()


def _person_links(people: pa.Table | None, companies: pa.Table | None, accounts: pa.Table) -> pa.Table:
    if people is None or companies is None or people.num_rows == 0 or companies.num_rows == 0:
        return PERSON_ACCOUNTS_SCHEMA.empty_table()
    by_company = pa.table(
        {
            "externalCompanyId": pc.cast(companies.column("externalCompanyId"), pa.string()),
            "account_id": pc.binary_join_element_wise(
                "company:", pc.cast(companies.column("id"), pa.string()), ""
            ),
            "domain": _domains(companies),
        }
    )
    person = pa.table(
        {
            "person_id": people.column("id"),
            "externalCompanyId": pc.cast(people.column("externalCompanyId"), pa.string()),
        }
    )
    joined = person.join(by_company, "externalCompanyId", join_type="inner")
    links = [
        pa.table(
            {
                "person_id": joined.column("person_id"),
                "account_id": joined.column("account_id"),
                "link": pa.array(["externalCompanyId"] * joined.num_rows),
            },
            PERSON_ACCOUNTS_SCHEMA,
        )
    ]
    named = accounts.filter(pc.equal(accounts.column("source"), "named_account"))
    if named.num_rows:
        via_domain = joined.select(["person_id", "domain"]).join(
            named.select(["account_id", "domain"]), "domain", join_type="inner"
        )
        links.append(
            pa.table(
                {
                    "person_id": via_domain.column("person_id"),
                    "account_id": via_domain.column("account_id"),
                    "link": pa.array(["domain"] * via_domain.num_rows),
                },
                PERSON_ACCOUNTS_SCHEMA,
            )
        )
    return pa.concat_tables(links).sort_by([("person_id", "ascending"), ("account_id", "ascending")])
