"""Accounts: Marketo companies (and named accounts where the customer runs ABM), the current accounts and
the person → account links — each written only where something changed.

Marketo's Company API has no "list all" and no time filter: companies are read by the `externalCompanyId`
people carry (300 per call). A tick reads only the companies it has never seen (people who are new or
moved company); every company is re-read once per `reconciliation.accounts_days` in a rolling slice
(the daily job), which is how changed company attributes arrive. Named accounts cannot be linked to
leads through the API (docs/marketo.md §11.2), so they are matched to companies by domain: a domain is
looked up when its company first appears and again in the rolling slice, never on every tick.
"""

import math
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster import clock
from molequle_dagster.arrow_ops import SYNCED_AT, TS, conform, dedupe_latest, stamp
from molequle_dagster.budget import budget_of
from molequle_dagster.conventions import (
    MOLEQULE_GROUP,
    OWNERS,
    accounting,
    data_age_metadata,
    data_fresh_check,
    data_fresh_spec,
    marketo_step,
    parse_iso,
    schema_metadata,
)
from molequle_dagster.lake import Lake
from molequle_dagster.lake.keyed import changed_rows
from molequle_dagster.marketo.batching import batches
from molequle_dagster.resources import LakeResource, MarketoResource, SettingsResource
from molequle_dagster.settings import MolequleSettings
from molequle_dagster.sync.run_kind import TICK, run_kind

COMPANIES = "marketo_companies"
NAMED_ACCOUNTS = "marketo_named_accounts"
ACCOUNTS = "accounts"
PERSON_ACCOUNTS = "person_accounts"
FILTER_BATCH = 300

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
ACCOUNT_COLUMNS = {
    "account_id": "company:<Marketo company id> or named:<named account marketoGUID>",
    "source": "company or named_account",
    "company": "company (or named account) name",
    "website": "the company's website (named accounts: their domain name)",
    "industry": "Marketo company field Industry",
    "numberOfEmployees": "Marketo company field Number of Employees",
    "billingCountry": "Marketo company field Billing Country",
    "domain": "website domain, lower case, without www.: how named accounts are matched",
}
ACCOUNTS_FRESHNESS_NOTE = (
    " New accounts and person links are as fresh as `people`; attributes of known companies arrive with "
    "the rolling reconciliation (every `reconciliation.accounts_days`): Marketo's Company API has no "
    "change feed."
)
PERSON_ACCOUNTS_SCHEMA = pa.schema(
    [("person_id", pa.int64()), ("account_id", pa.string()), ("link", pa.string())]
)


def company_fields(settings: MolequleSettings) -> list[str]:
    return list(dict.fromkeys(["id", "externalCompanyId", *settings.accounts.company_attributes]))


def named_fields(settings: MolequleSettings) -> list[str]:
    return list(dict.fromkeys(["marketoGUID", "domainName", *settings.accounts.named_account_attributes]))


def records_table(rows: list[dict[str, Any]], fields: list[str], like: pa.Schema | None) -> pa.Table:
    """REST records as a table; types follow the stored table where it exists (stable across runs)."""
    columns = {}
    for f in fields:
        values = [r.get(f) for r in rows]
        wanted = like.field(f).type if like is not None and f in like.names else None
        if wanted is not None:
            columns[f] = (
                pa.array(values).cast(wanted)
                if any(v is not None for v in values)
                else pa.nulls(len(values), wanted)
            )
        elif any(v is not None for v in values):
            columns[f] = pa.array(values)
        else:
            columns[f] = pa.nulls(len(values), pa.string())
    return pa.table(columns)


def domains(websites: pa.ChunkedArray | pa.Array) -> pa.Array:
    website = pc.utf8_lower(pc.cast(websites, pa.string()))
    website = pc.replace_substring_regex(website, r"^[a-z]+://", "")
    website = pc.replace_substring_regex(website, r"^www\.", "")
    return pc.replace_substring_regex(website, r"[/:].*$", "")


def _query(
    client: Any, filter_type: str, values: list[Any], fields: list[str], method: str
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for chunk in batches(values, FILTER_BATCH):
        rows.extend(getattr(client, method)(filter_type, list(chunk), fields))
    return rows


def _rolling_slice(ids: list[Any], after: Any, days: int) -> list[Any]:
    if not ids:
        return []
    size = math.ceil(len(ids) / days)
    ring = [i for i in ids if after is None or i > after] + [
        i for i in ids if after is not None and i <= after
    ]
    return ring[:size]


def reconciles(context: Any, client: Any, settings: MolequleSettings, rows: pa.Table | None) -> bool:
    """Whether this run re-reads the day's rolling slice: never on a tick, and only within the budget."""
    if run_kind(context) == TICK or rows is None:
        return False
    calls = math.ceil(math.ceil(rows.num_rows / settings.reconciliation.accounts_days) / FILTER_BATCH)
    allowed, why = budget_of(client, settings.budget).allows("reconcile", calls=calls)
    if not allowed:
        context.log.info(why)
    return allowed


# --- companies ------------------------------------------------------------------------------------------
def sync_companies(context: Any, client: Any, lake: Lake, settings: MolequleSettings) -> dict[str, Any]:
    table = lake.keyed(COMPANIES, "id")
    people = lake.keyed("people", "id")
    meta = dict(table.meta)
    now = clock.now()
    fields = company_fields(settings)
    current = table.read_or_none()
    changes = people.changes_since(int(meta.get("people_version", 0))) if meta.get("people_version") else None
    people_rows = changes.upserts if changes is not None else people.read_or_none(["id", "externalCompanyId"])
    wanted: set[str] = set()
    if people_rows is not None and "externalCompanyId" in people_rows.column_names:
        wanted = {v for v in people_rows["externalCompanyId"].to_pylist() if v}
    known = set(current["externalCompanyId"].to_pylist()) if current is not None else set()
    new_ids = sorted(wanted - known)
    fetched = _query(client, "externalCompanyId", new_ids, fields, "companies")
    reconciled, gone = [], None
    if reconciles(context, client, settings, current) and current is not None and current.num_rows:
        slice_ids = _rolling_slice(
            sorted(current["id"].to_pylist()),
            meta.get("reconciled_through"),
            settings.reconciliation.accounts_days,
        )
        again = _query(client, "id", slice_ids, fields, "companies")
        returned = {int(r["id"]) for r in again}
        missing = [i for i in slice_ids if i not in returned]
        gone = pa.table({"id": pa.array(missing, pa.int64())}) if missing else None
        fetched += again
        reconciled = slice_ids
        meta["reconciled_through"] = slice_ids[-1] if slice_ids else meta.get("reconciled_through")
    like = current.schema if current is not None else None
    fresh = records_table(fetched, fields, like)
    if fresh.num_rows:
        fresh = dedupe_latest(
            stamp(
                fresh.cast(
                    pa.schema([pa.field("id", pa.int64()) if f.name == "id" else f for f in fresh.schema])
                ),
                now,
            ),
            "id",
        )
    upserts = changed_rows(current, fresh, ["id"], ignore=[SYNCED_AT]) if fresh.num_rows else None
    manifest = table.commit(upserts, gone, meta={**meta, "people_version": people.version})
    return {
        "rows": manifest.rows,
        "queried_new": len(new_ids),
        "reconciled": len(reconciled),
        "changed": upserts.num_rows if upserts is not None else 0,
    }


@dg.asset(name=COMPANIES, **marketo_step(), deps=["people"])
def marketo_companies(
    context: dg.AssetExecutionContext,
    marketo: MarketoResource,
    lake: LakeResource,
    settings: SettingsResource,
) -> dg.MaterializeResult:
    """Companies of the synced people, by externalCompanyId: new ones on every tick, all of them once per
    `reconciliation.accounts_days` in a rolling slice (outside ticks)."""
    with accounting(marketo.client, context) as spent:
        outcome = sync_companies(context, marketo.client, lake.lake, settings.settings)
    return dg.MaterializeResult(
        metadata={"dagster/row_count": outcome.pop("rows"), **outcome, **spent.metadata()}
    )


# --- named accounts ---------------------------------------------------------------------------------
def sync_named_accounts(context: Any, client: Any, lake: Lake, settings: MolequleSettings) -> dict[str, Any]:
    table = lake.keyed(NAMED_ACCOUNTS, "marketoGUID")
    companies = lake.keyed(COMPANIES, "id")
    meta = dict(table.meta)
    now = clock.now()
    fields = named_fields(settings)
    seen = int(meta.get("companies_version", 0))
    changes = companies.changes_since(seen) if seen else None
    rows = changes.upserts if changes is not None else companies.read_or_none()
    lookup: set[str] = set()
    if rows is not None and rows.num_rows and "website" in rows.column_names:
        lookup |= {d for d in domains(rows["website"]).to_pylist() if d}
    if reconciles(context, client, settings, companies.read_or_none(["id"])):
        everyone = companies.read_or_none(["id", "website"])
        if everyone is not None and everyone.num_rows:
            slice_ids = set(
                _rolling_slice(
                    sorted(everyone["id"].to_pylist()),
                    meta.get("reconciled_through"),
                    settings.reconciliation.accounts_days,
                )
            )
            part = everyone.filter(
                pc.is_in(everyone["id"], value_set=pa.array(sorted(slice_ids), pa.int64()))
            )
            lookup |= {d for d in domains(part["website"]).to_pylist() if d}
            meta["reconciled_through"] = max(slice_ids) if slice_ids else meta.get("reconciled_through")
    current = table.read_or_none()
    fetched = _query(client, "domainName", sorted(lookup), fields, "named_accounts")
    fresh = records_table(fetched, fields, current.schema if current is not None else None)
    fresh = dedupe_latest(stamp(fresh, now), "marketoGUID") if fresh.num_rows else fresh
    upserts = changed_rows(current, fresh, ["marketoGUID"], ignore=[SYNCED_AT]) if fresh.num_rows else None
    manifest = table.commit(upserts, meta={**meta, "companies_version": companies.version})
    return {
        "rows": manifest.rows,
        "domains_queried": len(lookup),
        "changed": upserts.num_rows if upserts is not None else 0,
    }


@dg.asset(name=NAMED_ACCOUNTS, **marketo_step(), deps=[COMPANIES])
def marketo_named_accounts(
    context: dg.AssetExecutionContext,
    marketo: MarketoResource,
    lake: LakeResource,
    settings: SettingsResource,
) -> dg.MaterializeResult:
    """Marketo named accounts (ABM) whose domain matches a synced company's website domain: looked up when
    the company first appears, and again in the rolling reconciliation slice."""
    with accounting(marketo.client, context) as spent:
        outcome = sync_named_accounts(context, marketo.client, lake.lake, settings.settings)
    return dg.MaterializeResult(
        metadata={"dagster/row_count": outcome.pop("rows"), **outcome, **spent.metadata()}
    )


# --- accounts and links -----------------------------------------------------------------------------------
def _col(table: pa.Table, name: str, type_: pa.DataType) -> pa.Array:
    return pc.cast(table[name], type_) if name in table.column_names else pa.nulls(table.num_rows, type_)


def company_accounts(companies: pa.Table) -> pa.Table:
    ids = pc.cast(companies["id"], pa.string())
    return conform(
        pa.table(
            {
                "account_id": pc.binary_join_element_wise("company:", ids, ""),
                "source": pa.repeat(pa.scalar("company"), companies.num_rows),
                "company": _col(companies, "company", pa.string()),
                "website": _col(companies, "website", pa.string()),
                "industry": _col(companies, "industry", pa.string()),
                "numberOfEmployees": _col(companies, "numberOfEmployees", pa.int64()),
                "billingCountry": _col(companies, "billingCountry", pa.string()),
                "domain": domains(_col(companies, "website", pa.string())),
                SYNCED_AT: _col(companies, SYNCED_AT, TS),
            }
        ),
        ACCOUNTS_SCHEMA,
    )


def named_accounts_rows(named: pa.Table) -> pa.Table:
    guid = pc.cast(named["marketoGUID"], pa.string())
    domain = _col(named, "domainName", pa.string())
    return conform(
        pa.table(
            {
                "account_id": pc.binary_join_element_wise("named:", guid, ""),
                "source": pa.repeat(pa.scalar("named_account"), named.num_rows),
                "company": _col(named, "name", pa.string()),
                "website": domain,
                "industry": _col(named, "industry", pa.string()),
                "numberOfEmployees": _col(named, "numberOfEmployees", pa.int64()),
                "billingCountry": _col(named, "country", pa.string()),
                "domain": pc.utf8_lower(domain),
                SYNCED_AT: _col(named, SYNCED_AT, TS),
            }
        ),
        ACCOUNTS_SCHEMA,
    )


def _feed(lake: Lake, name: str, key: str, seen: int) -> tuple[pa.Table | None, pa.Table | None, int]:
    keyed = lake.keyed(name, key)
    if not keyed.exists():
        return None, None, 0
    changes = keyed.changes_since(seen) if seen else None
    if changes is None:
        return keyed.read(), None, keyed.version
    return changes.upserts, changes.deleted, keyed.version


def fold_accounts(lake: Lake, named_enabled: bool) -> dict[str, Any]:
    accounts = lake.keyed(ACCOUNTS, "account_id")
    links = lake.keyed(PERSON_ACCOUNTS, ["person_id", "account_id"])
    meta = dict(accounts.meta)
    upserts, deletes = [], []
    comp_up, comp_del, comp_v = _feed(lake, COMPANIES, "id", int(meta.get("companies_version", 0)))
    if comp_up is not None and comp_up.num_rows:
        upserts.append(company_accounts(comp_up))
    if comp_del is not None and comp_del.num_rows:
        deletes.append(pc.binary_join_element_wise("company:", pc.cast(comp_del["id"], pa.string()), ""))
    named_v = 0
    if named_enabled:
        named_up, named_del, named_v = _feed(
            lake, NAMED_ACCOUNTS, "marketoGUID", int(meta.get("named_version", 0))
        )
        if named_up is not None and named_up.num_rows:
            upserts.append(named_accounts_rows(named_up))
        if named_del is not None and named_del.num_rows:
            deletes.append(
                pc.binary_join_element_wise("named:", pc.cast(named_del["marketoGUID"], pa.string()), "")
            )
    up = pa.concat_tables(upserts) if upserts else None
    dl = (
        pa.table(
            {
                "account_id": pa.concat_arrays(
                    [d.combine_chunks() if isinstance(d, pa.ChunkedArray) else d for d in deletes]
                )
            }
        )
        if deletes
        else None
    )
    # New accounts follow the people they come from: as complete as `people` (unify_accounts reads this).
    people_mark = lake.keyed("people", "id").meta.get("complete_through")
    manifest = accounts.commit(
        up, dl, meta={"companies_version": comp_v, "named_version": named_v, "complete_through": people_mark}
    )
    link_outcome = fold_links(lake, links, up, dl)
    return {"rows": manifest.rows, "changed_accounts": (up.num_rows if up is not None else 0), **link_outcome}


def fold_links(
    lake: Lake, links: Any, changed_accounts: pa.Table | None, deleted_accounts: pa.Table | None
) -> dict[str, Any]:
    """Recompute the links of the people affected by what changed: people who changed, and people of the
    companies and domains whose accounts changed."""
    people = lake.keyed("people", "id")
    meta = dict(links.meta)
    seen = int(meta.get("people_version", 0))
    changes = people.changes_since(seen) if seen else None
    everyone = people.read_or_none(["id", "externalCompanyId"])
    companies = lake.read_current(COMPANIES, ["id", "externalCompanyId", "website"])
    accounts = lake.read_current(ACCOUNTS)
    if everyone is None or companies is None or accounts is None:
        return {"links": 0}
    if changes is None:
        affected = everyone["id"].combine_chunks()
    else:
        parts = (
            [changes.upserts["id"].combine_chunks(), changes.deleted["id"].combine_chunks().cast(pa.int64())]
            if changes.upserts.num_rows or changes.deleted.num_rows
            else []
        )
        touched_ext: set[str] = set()
        touched_domains: set[str] = set()
        for table in (changed_accounts, deleted_accounts):
            if table is None or table.num_rows == 0:
                continue
            ids = table["account_id"].to_pylist()
            company_ids = [int(a.split(":", 1)[1]) for a in ids if a.startswith("company:")]
            if company_ids:
                hit = companies.filter(pc.is_in(companies["id"], value_set=pa.array(company_ids, pa.int64())))
                touched_ext |= {v for v in hit["externalCompanyId"].to_pylist() if v}
            if "domain" in table.column_names:
                touched_domains |= {d for d in table["domain"].to_pylist() if d}
        if touched_domains:
            hit = companies.filter(
                pc.is_in(domains(companies["website"]), value_set=pa.array(sorted(touched_domains)))
            )
            touched_ext |= {v for v in hit["externalCompanyId"].to_pylist() if v}
        if touched_ext:
            ext = pc.cast(everyone["externalCompanyId"], pa.string())
            parts.append(
                everyone.filter(pc.fill_null(pc.is_in(ext, value_set=pa.array(sorted(touched_ext))), False))[
                    "id"
                ].combine_chunks()
            )
        affected = (
            pc.unique(pa.concat_arrays([p.cast(pa.int64()) for p in parts]))
            if parts
            else pa.array([], pa.int64())
        )
    if len(affected) == 0:
        links.commit(meta={"people_version": people.version})
        return {"links": links.manifest().rows, "people_relinked": 0}
    mine = everyone.filter(pc.is_in(everyone["id"], value_set=affected))
    fresh = person_links(mine, companies, accounts)
    before = links.read_or_none(["person_id", "account_id"])
    stale = None
    if before is not None and before.num_rows:
        stale = before.filter(pc.is_in(before["person_id"], value_set=affected)).join(
            fresh.select(["person_id", "account_id"]), ["person_id", "account_id"], join_type="left anti"
        )
    manifest = links.commit(
        fresh,
        stale if stale is not None and stale.num_rows else None,
        meta={"people_version": people.version},
    )
    return {"links": manifest.rows, "people_relinked": len(affected)}


def person_links(people: pa.Table, companies: pa.Table, accounts: pa.Table) -> pa.Table:
    if people.num_rows == 0 or companies.num_rows == 0:
        return PERSON_ACCOUNTS_SCHEMA.empty_table()
    by_company = pa.table(
        {
            "externalCompanyId": pc.cast(companies["externalCompanyId"], pa.string()),
            "account_id": pc.binary_join_element_wise("company:", pc.cast(companies["id"], pa.string()), ""),
            "domain": domains(companies["website"]),
        }
    )
    person = pa.table(
        {"person_id": people["id"], "externalCompanyId": pc.cast(people["externalCompanyId"], pa.string())}
    )
    joined = person.join(by_company, "externalCompanyId", join_type="inner")
    links = [
        pa.table(
            {
                "person_id": joined["person_id"],
                "account_id": joined["account_id"],
                "link": pa.repeat(pa.scalar("externalCompanyId"), joined.num_rows),
            },
            PERSON_ACCOUNTS_SCHEMA,
        )
    ]
    named = accounts.filter(pc.equal(accounts["source"], "named_account"))
    if named.num_rows:
        via = joined.select(["person_id", "domain"]).join(
            named.select(["account_id", "domain"]), "domain", join_type="inner"
        )
        links.append(
            pa.table(
                {
                    "person_id": via["person_id"],
                    "account_id": via["account_id"],
                    "link": pa.repeat(pa.scalar("domain"), via.num_rows),
                },
                PERSON_ACCOUNTS_SCHEMA,
            )
        )
    return pa.concat_tables(links)


def _accounts_deps(settings: MolequleSettings) -> list[str]:
    return [COMPANIES, *([NAMED_ACCOUNTS] if settings.accounts.named_accounts else []), "people"]


def build_accounts_current(settings: MolequleSettings) -> dg.AssetsDefinition:
    """The accounts and person links (a factory: named accounts join the graph only when enabled)."""
    named_enabled = settings.accounts.named_accounts

    @dg.multi_asset(
        name="fold_accounts",
        group_name=MOLEQULE_GROUP,
        specs=[
            dg.AssetSpec(
                ACCOUNTS,
                description="Current accounts: Marketo companies and named accounts, one row each.",
                deps=_accounts_deps(settings),
                kinds={"parquet", "pyarrow"},
                owners=OWNERS,
                metadata=schema_metadata(ACCOUNTS_SCHEMA, ACCOUNT_COLUMNS),
            ),
            dg.AssetSpec(
                PERSON_ACCOUNTS,
                description="Person → account links (company by externalCompanyId; named account by domain).",
                deps=[ACCOUNTS, "people"],
                kinds={"parquet", "pyarrow"},
                owners=OWNERS,
                metadata=schema_metadata(PERSON_ACCOUNTS_SCHEMA),
            ),
        ],
        check_specs=[data_fresh_spec(ACCOUNTS, ACCOUNTS_FRESHNESS_NOTE)],
    )
    def fold_accounts_step(lake: LakeResource):
        """Fold the companies' and named accounts' changes into accounts, and relink affected people."""
        outcome = fold_accounts(lake.lake, named_enabled)
        mark = lake.lake.keyed(ACCOUNTS, "account_id").meta.get("complete_through")
        complete = parse_iso(mark) if mark else None
        age = data_age_metadata(complete)
        yield dg.MaterializeResult(
            asset_key=ACCOUNTS,
            metadata={"dagster/row_count": outcome["rows"], "changed": outcome["changed_accounts"], **age},
        )
        yield dg.MaterializeResult(
            asset_key=PERSON_ACCOUNTS,
            metadata={
                "dagster/row_count": outcome["links"],
                "people_relinked": outcome.get("people_relinked", 0),
                **age,
            },
        )
        yield data_fresh_check(complete, asset_key=ACCOUNTS)

    return fold_accounts_step
