"""Unified people and accounts: the customer's match rules applied to the current-state tables.

Each run clusters the whole current table (vectorised; see the unification package for the measured cost
and why a full recompute is the right trade-off) and keeps unified ids stable against the previous run's
state, which is stored in the lake beside the outputs.
"""

from datetime import timedelta
from typing import Any, Literal

import dagster as dg
import pyarrow as pa

from molequle_dagster.assets.common import OWNERS, UNIFIED_GROUP, utcnow
from molequle_dagster.lake import Lake
from molequle_dagster.resources import LakeResource
from molequle_dagster.settings import MatchRule, MolequleSettings
from molequle_dagster.unification import UnificationState, unify

STATE_TABLES = ("links", "ids", "id_lineage")


def _build(
    entity: Literal["person", "account"],
    source_table: str,
    id_column: str,
    rules: list[MatchRule],
    merged_sources_table: str | None,
) -> Any:
    plural = "people" if entity == "person" else "accounts"
    unified_name, links_name, lineage_name = (
        f"unified_{plural}",
        f"{entity}_unified_links",
        f"{entity}_id_lineage",
    )
    upstream = [source_table, *([merged_sources_table] if merged_sources_table else [])]
    fresh = dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=30))

    @dg.multi_asset(
        name=f"unify_{plural}",
        group_name=UNIFIED_GROUP,
        specs=[
            dg.AssetSpec(
                unified_name,
                description=f"Unified {plural}: one row per unified id, with "
                "member count and representative attributes.",
                kinds={"parquet", "pyarrow"},
                owners=OWNERS,
                freshness_policy=fresh,
                deps=upstream,
            ),
            dg.AssetSpec(
                links_name,
                description=f"Marketo {entity} id → unified id, with the rule that matched.",
                kinds={"parquet", "pyarrow"},
                owners=OWNERS,
                freshness_policy=fresh,
                deps=upstream,
            ),
            dg.AssetSpec(
                lineage_name,
                description="Retired unified ids and the id that survived them.",
                kinds={"parquet", "pyarrow"},
                owners=OWNERS,
                deps=upstream,
            ),
        ],
    )
    def unify_entity(context: dg.AssetExecutionContext, lake: LakeResource):
        store = lake.lake
        records = store.read_current(source_table)
        if records is None:
            raise dg.Failure(f"{source_table} has not been synced yet; materialize it first")
        previous = _load_state(store, entity)
        merged = store.read_current(merged_sources_table) if merged_sources_table else None
        if merged is not None:
            merged = merged.select(["loser_id", "winner_id"])
        result = unify(
            records,
            id_column=id_column,
            rules=rules,
            previous=previous,
            entity=entity,
            now=utcnow(),
            merged_sources=merged,
        )
        store.write_current(unified_name, result.unified)
        store.write_current(links_name, result.links)
        store.write_current(lineage_name, result.id_lineage)
        for name, table in result.state.to_tables().items():
            store.write_current(f"_unification_{entity}_{name}", table)
        yield dg.MaterializeResult(
            asset_key=unified_name,
            metadata={
                "dagster/row_count": result.unified.num_rows,
                "source_rows": records.num_rows,
                "rules": [r.name for r in rules],
            },
        )
        yield dg.MaterializeResult(
            asset_key=links_name, metadata={"dagster/row_count": result.links.num_rows}
        )
        yield dg.MaterializeResult(
            asset_key=lineage_name, metadata={"dagster/row_count": result.id_lineage.num_rows}
        )

    return unify_entity


def _load_state(store: Lake, entity: str) -> UnificationState | None:
    tables: dict[str, pa.Table] = {}
    for name in STATE_TABLES:
        table = store.read_current(f"_unification_{entity}_{name}")
        if table is None:
            return None
        tables[name] = table
    return UnificationState.from_tables(entity, tables)


def build_unified_assets(settings: MolequleSettings) -> list[Any]:
    return [
        _build("person", "people", "id", settings.unification.people, "person_merges"),
        _build("account", "accounts", "account_id", settings.unification.accounts, None),
    ]
