"""Unified people and accounts: the customer's match rules applied to the current tables, with stable
unified ids (see the unification package).

A run takes only what changed in its source table since the previous run (the source's change feed) and
reclusters only the clusters those changes can reach (`unify_changes`); every output and state table gets
upserts and deletes. A full `unify()` runs on the first run, after the source was rebuilt, and when the
rules or the synced columns changed (`RebuildRequired`).

The state tables are committed first and `_unification_<entity>_config` last: its meta records the
version of every other table and of the source that the state stands for, so a run that crashed halfway
reads the previous versions again and re-applies its (idempotent) deltas.
"""

from typing import Any, Literal

import dagster as dg
import pyarrow as pa

from molequle_dagster import clock
from molequle_dagster.arrow_ops import key_table
from molequle_dagster.assets.accounts import ACCOUNT_COLUMNS
from molequle_dagster.assets.people import people_columns
from molequle_dagster.conventions import (
    OWNERS,
    UNIFIED_GROUP,
    column_schema,
    data_age_metadata,
    data_fresh_check,
    data_fresh_spec,
    fail_on_purpose,
    parse_iso,
)
from molequle_dagster.lake import KeyedTable, Lake
from molequle_dagster.resources import LakeResource, SettingsResource
from molequle_dagster.unification import (
    KEY_COLUMNS,
    RebuildRequired,
    UnificationState,
    state_tables,
    unify,
    unify_changes,
)

Entity = Literal["person", "account"]
OUTPUTS = ("unified", "links", "id_lineage")
STATE_ORDER = ("unified", "links", "id_lineage", "ids", "match_keys", "config")  # config last: the commit


# Column descriptions shown in the UI; other representative columns (the most recently updated member's
# value) carry the source table's descriptions.
UNIFIED_COLUMNS = {
    "unified_id": "Stable unified id (up_… people, ua_… accounts): kept by the cluster holding its "
    "smallest-id member; retired ids are listed in the id lineage and never reused.",
    "member_count": "How many Marketo records the unified record stands for.",
    "first_seen_at": "When this unified id was first issued.",
    "createdAt": "The earliest createdAt of the members.",
    "updatedAt": "The latest updatedAt of the members.",
}
LINK_COLUMNS = {
    "source_id": "The Marketo record's id (lead id for people; company:<id> or named:<id> for accounts).",
    "unified_id": "The unified record it belongs to.",
    "matched_rule": "The first match rule (in settings order) that joins it to its cluster; null alone.",
}
LINEAGE_COLUMNS = {
    "retired_id": "A unified id retired when its cluster merged into an older one.",
    "survivor_id": "The unified id that took its members over.",
    "reason": "Why it was retired (merge).",
    "retired_at": "When it was retired.",
}
ROLE_COLUMNS = {"unified": UNIFIED_COLUMNS, "links": LINK_COLUMNS, "id_lineage": LINEAGE_COLUMNS}


def _column_metadata(table: KeyedTable, role: str, source_notes: dict[str, str]) -> dict[str, Any]:
    schema = table.schema()
    if schema is None:
        return {}
    notes = {**source_notes, **ROLE_COLUMNS[role]} if role == "unified" else ROLE_COLUMNS[role]
    return {"dagster/column_schema": column_schema(schema, notes)}


def table_names(entity: Entity) -> dict[str, str]:
    plural = "people" if entity == "person" else "accounts"
    return {
        "unified": f"unified_{plural}",
        "links": f"{entity}_unified_links",
        "id_lineage": f"{entity}_id_lineage",
        "ids": f"_unification_{entity}_ids",
        "match_keys": f"_unification_{entity}_match_keys",
        "config": f"_unification_{entity}_config",
    }


def _source(entity: Entity) -> tuple[str, str]:
    return ("people", "id") if entity == "person" else ("accounts", "account_id")


class LakeState:
    """The engine's previous state, read at the versions the last complete run committed."""

    def __init__(self, tables: dict[str, KeyedTable], versions: dict[str, int]) -> None:
        self._tables = tables
        self._versions = versions
        self._cache: dict[str, pa.Table] = {}

    def _read(self, name: str) -> pa.Table:
        if name not in self._cache:
            table = self._tables[name]
            self._cache[name] = table.read(manifest=table.manifest_at(self._versions[name]))
        return self._cache[name]

    def config(self) -> pa.Table:
        return self._read("config")

    def lookup(self, table: str, column: str, values: pa.Array) -> pa.Table:
        rows = self._read(table)
        if rows.num_rows == 0 or len(values) == 0:
            return rows.slice(0, 0)
        return rows.filter(
            pa.compute.is_in(rows[column], value_set=values.cast(rows.schema.field(column).type))
        )


def _full(
    lake: Lake, tables: dict[str, KeyedTable], entity: Entity, settings: Any, source: KeyedTable
) -> int:
    """Unify the whole source table; keeps ids stable against the stored state if there is one."""
    records = source.read()
    rules = _rules(settings, entity)
    previous = None
    if tables["links"].exists() and tables["ids"].exists():
        previous = UnificationState.from_tables(
            entity,
            {
                "links": tables["links"].read(),
                "ids": tables["ids"].read(),
                "id_lineage": tables["id_lineage"].read(),
            },
        )
    result = unify(
        records,
        id_column=_source(entity)[1],
        rules=rules,
        previous=previous,
        entity=entity,
        now=clock.now(),
        merged_sources=_merges(lake, entity),
    )
    whole = state_tables(result, records, id_column=_source(entity)[1], rules=rules, entity=entity)
    versions = {}
    for name in STATE_ORDER[:-1]:
        versions[name] = tables[name].commit_contents(whole[name]).version
    tables["config"].commit_contents(
        whole["config"], meta={"versions": versions, "source_version": source.version}
    )
    return records.num_rows


def _rules(settings: Any, entity: Entity) -> Any:
    return settings.unification.people if entity == "person" else settings.unification.accounts


def _merges(lake: Lake, entity: Entity) -> pa.Table | None:
    return lake.read_current("person_merges", ["loser_id", "winner_id"]) if entity == "person" else None


def unify_table(lake: Lake, settings: Any, entity: Entity) -> dict[str, Any]:
    name, id_column = _source(entity)
    source = lake.keyed(name, id_column)
    if not source.exists():
        # the same run fails the same way until the first sync ran: not for the run-retry daemon
        raise fail_on_purpose(None, f"{name} has not been synced yet; the first sync builds it")
    names = table_names(entity)
    tables = {role: lake.keyed(names[role], KEY_COLUMNS[role]) for role in STATE_ORDER}
    meta = dict(tables["config"].meta)
    seen = meta.get("source_version")
    changes = source.changes_since(int(seen)) if seen else None
    mode, touched = "incremental", 0
    if changes is None:
        mode, touched = "full", _full(lake, tables, entity, settings, source)
    else:
        schema = source.schema()
        changed = (
            changes.upserts.select(schema.names).cast(schema)
            if changes.upserts.num_rows
            else schema.empty_table()
        )
        removed = changes.deleted[id_column].combine_chunks().cast(schema.field(id_column).type)

        def records_by_id(ids: pa.Array) -> pa.Table:
            rows = source.lookup(key_table(id_column, ids, schema.field(id_column).type))
            return rows.select(schema.names).cast(schema)

        try:
            result = unify_changes(
                LakeState(
                    tables,
                    {
                        role: int(meta.get("versions", {}).get(role, tables[role].version))
                        for role in STATE_ORDER
                        if role != "config"
                    }
                    | {"config": tables["config"].version},
                ),
                changed=changed,
                removed=removed,
                records_by_id=records_by_id,
                id_column=id_column,
                rules=_rules(settings, entity),
                entity=entity,
                now=clock.now(),
                merged_sources=_merges(lake, entity),
            )
        except RebuildRequired as why:
            mode, touched = f"full ({why})", _full(lake, tables, entity, settings, source)
        else:
            versions = {}
            for role in STATE_ORDER[:-1]:
                delta = result.deltas[role]
                versions[role] = (
                    tables[role]
                    .commit(delta.upserts, delta.deletes if delta.deletes.num_rows else None)
                    .version
                )
            config = result.deltas["config"]
            tables["config"].commit(
                config.upserts,
                config.deletes if config.deletes.num_rows else None,
                meta={"versions": versions, "source_version": changes.to_version},
            )
            touched = result.affected_records
    rows = {names[role]: tables[role].manifest().rows for role in OUTPUTS}
    return {"rows": rows, "mode": mode, "records_reclustered": touched}


def build_unify(entity: Entity) -> dg.AssetsDefinition:
    names = table_names(entity)
    source, id_column = _source(entity)
    upstream = [source, *(["person_merges"] if entity == "person" else [])]
    plural = "people" if entity == "person" else "accounts"
    descriptions = {
        "unified": f"Unified {plural}: one row per unified id, with member count and representative "
        "attributes.",
        "links": f"Marketo {entity} id → unified id, with the rule that matched.",
        "id_lineage": "Retired unified ids and the id that survived them.",
    }

    @dg.multi_asset(
        name=f"unify_{plural}",
        group_name=UNIFIED_GROUP,
        specs=[
            dg.AssetSpec(
                names[role],
                description=descriptions[role],
                kinds={"parquet", "pyarrow"},
                owners=OWNERS,
                deps=upstream,
            )
            for role in OUTPUTS
        ],
        check_specs=[data_fresh_spec(names["unified"])],
    )
    def unify_entity(lake: LakeResource, settings: SettingsResource):
        source_notes = people_columns(lake.lake) if entity == "person" else ACCOUNT_COLUMNS
        outcome = unify_table(lake.lake, settings.settings, entity)
        mark = lake.lake.keyed(source, id_column).meta.get("complete_through")
        complete = parse_iso(mark) if mark else None  # as fresh as the source it was unified from
        age = data_age_metadata(complete)
        for role in OUTPUTS:
            key = KEY_COLUMNS[role][0]
            yield dg.MaterializeResult(
                asset_key=names[role],
                metadata={
                    "dagster/row_count": outcome["rows"][names[role]],
                    **_column_metadata(lake.lake.keyed(names[role], key), role, source_notes),
                    "mode": outcome["mode"],
                    "records_reclustered": outcome["records_reclustered"],
                    **age,
                },
            )
        yield data_fresh_check(complete, asset_key=names["unified"])

    return unify_entity


unify_people = build_unify("person")
unify_accounts = build_unify("account")
