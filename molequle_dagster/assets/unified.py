"""Unified people and accounts: the customer's match rules applied to the current tables, with stable
unified ids (see the unification package). Outputs and the engine's state are keyed tables, so a run
writes only the rows whose unified id, membership or representative values changed."""

from typing import Any, Literal

import dagster as dg

from molequle_dagster import clock
from molequle_dagster.conventions import OWNERS, UNIFIED_GROUP, data_age_metadata, parse_iso
from molequle_dagster.lake import Lake
from molequle_dagster.resources import LakeResource, SettingsResource
from molequle_dagster.unification import UnificationState, unify

Entity = Literal["person", "account"]
STATE_KEYS = {"links": ["source_id"], "ids": ["unified_id"], "id_lineage": ["retired_id"]}
OUTPUT_KEYS = {"unified": ["unified_id"], "links": ["source_id"], "lineage": ["retired_id"]}


def _names(entity: Entity) -> dict[str, str]:
    plural = "people" if entity == "person" else "accounts"
    return {
        "unified": f"unified_{plural}",
        "links": f"{entity}_unified_links",
        "lineage": f"{entity}_id_lineage",
    }


def _load_state(lake: Lake, entity: Entity) -> UnificationState | None:
    tables = {}
    for name, key in STATE_KEYS.items():
        table = lake.keyed(f"_unification_{entity}_{name}", key).read_or_none()
        if table is None:
            return None
        tables[name] = table
    return UnificationState.from_tables(entity, tables)


def unify_table(lake: Lake, settings: Any, entity: Entity) -> dict[str, Any]:
    source, id_column = ("people", "id") if entity == "person" else ("accounts", "account_id")
    records = lake.read_current(source)
    if records is None:
        raise dg.Failure(f"{source} has not been synced yet; the first sync builds it")
    rules = settings.unification.people if entity == "person" else settings.unification.accounts
    merged = lake.read_current("person_merges", ["loser_id", "winner_id"]) if entity == "person" else None
    result = unify(
        records,
        id_column=id_column,
        rules=rules,
        previous=_load_state(lake, entity),
        entity=entity,
        now=clock.now(),
        merged_sources=merged,
    )
    names = _names(entity)
    written = {}
    for part, table in (("unified", result.unified), ("links", result.links), ("lineage", result.id_lineage)):
        manifest = lake.keyed(names[part], OUTPUT_KEYS[part]).commit_contents(table)
        written[names[part]] = manifest.rows
    for name, table in result.state.to_tables().items():
        lake.keyed(f"_unification_{entity}_{name}", STATE_KEYS[name]).commit_contents(table)
    return {"rows": written, "source_rows": records.num_rows}


def build_unify(entity: Entity) -> dg.AssetsDefinition:
    names = _names(entity)
    source = "people" if entity == "person" else "accounts"
    upstream = [source, *(["person_merges"] if entity == "person" else [])]
    plural = "people" if entity == "person" else "accounts"

    @dg.multi_asset(
        name=f"unify_{plural}",
        group_name=UNIFIED_GROUP,
        specs=[
            dg.AssetSpec(
                names["unified"],
                description=f"Unified {plural}: one row per unified id, with member "
                "count and representative attributes.",
                kinds={"parquet", "pyarrow"},
                owners=OWNERS,
                deps=upstream,
            ),
            dg.AssetSpec(
                names["links"],
                description=f"Marketo {entity} id → unified id, with the rule that matched.",
                kinds={"parquet", "pyarrow"},
                owners=OWNERS,
                deps=upstream,
            ),
            dg.AssetSpec(
                names["lineage"],
                description="Retired unified ids and the id that survived them.",
                kinds={"parquet", "pyarrow"},
                owners=OWNERS,
                deps=upstream,
            ),
        ],
    )
    def unify_entity(lake: LakeResource, settings: SettingsResource):
        outcome = unify_table(lake.lake, settings.settings, entity)
        complete = lake.lake.keyed(source, "id" if entity == "person" else "account_id").meta.get(
            "complete_through"
        )
        age = data_age_metadata(parse_iso(complete) if complete else None)
        for part in ("unified", "links", "lineage"):
            yield dg.MaterializeResult(
                asset_key=names[part], metadata={"dagster/row_count": outcome["rows"][names[part]], **age}
            )

    return unify_entity


unify_people = build_unify("person")
unify_accounts = build_unify("account")
