"""Write-back: push Molequle attributes (e.g. the unified person id) to Marketo lead fields.

Settings `write_back.mappings` name a lake column and a Marketo lead field. The asset pushes, with Sync
Leads `updateOnly` by `id` (never creating people), 300 records per call, only values that changed:

    push  iff  desired != Marketo's value as last synced (the `people` table)
          and  desired != the value we last pushed and Marketo acknowledged (`write_back_ledger`)

The first test skips values Marketo already holds; the second stops us re-pushing our own write in the
window before the next sync reads it back (the sync exports the target fields too, see
`PeopleSettings.export_fields`). A consequence, on purpose: if someone edits the field in Marketo after we
wrote it, we do not fight them until Molequle's value changes again. Null desired values are never
pushed (we never blank a field). Skipped records go to `write_back_failures` (with an attempt count) and,
not being in the ledger, are pushed again by the next run.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster import clock
from molequle_dagster.arrow_ops import or_empty
from molequle_dagster.conventions import (
    ACTIONS_GROUP,
    MARKETO_POOL,
    OWNERS,
    accounting,
    fail_on_purpose,
    schema_metadata,
)
from molequle_dagster.lake import Lake
from molequle_dagster.marketo.batching import batches
from molequle_dagster.marketo.writes import SYNC_BATCH, SyncResult
from molequle_dagster.resources import LakeResource, MarketoResource
from molequle_dagster.settings import MolequleSettings, WriteBackMapping

WRITE_BACK_ASSET = "marketo_write_back"
WRITE_BACK_JOB = "marketo_write_back_job"
LEDGER_TABLE = "write_back_ledger"
FAILURES_TABLE = "write_back_failures"
TS = pa.timestamp("s", tz="UTC")

LEDGER_KEY = ["lead_id", "marketo_field"]
LEDGER_SCHEMA = pa.schema(
    [("lead_id", pa.int64()), ("marketo_field", pa.string()), ("value", pa.string()), ("pushed_at", TS)]
)
FAILURES_SCHEMA = pa.schema(
    [
        ("lead_id", pa.int64()),
        ("marketo_field", pa.string()),
        ("value", pa.string()),
        ("code", pa.string()),
        ("message", pa.string()),
        ("attempts", pa.int32()),
        ("failed_at", TS),
    ]
)
# The lake tables each source table is joined through to reach a lead id.
SOURCE_DEPS = {
    "people": ["people"],
    "unified_people": ["people", "unified_people", "person_unified_links"],
    "unified_accounts": ["people", "person_accounts", "account_unified_links", "unified_accounts"],
}


class WriteBackError(RuntimeError):
    pass


# --- desired values --------------------------------------------------------------------------------------
def _require(lake: Lake, table: str, columns: list[str], mapping: WriteBackMapping) -> pa.Table:
    data = lake.read_current(table)
    if data is None:
        raise WriteBackError(
            f"write_back mapping {mapping.marketo_field!r}: table {table!r} is not in the lake "
            "yet; run a sync first"
        )
    missing = [c for c in columns if c not in data.column_names]
    if missing:
        raise WriteBackError(
            f"write_back mapping {mapping.marketo_field!r}: {table} has no column(s) {missing}; "
            f"its columns are {data.column_names}"
        )
    return data.select(columns)


def desired_values(lake: Lake, mapping: WriteBackMapping) -> pa.Table:
    """(lead_id, value) for every lead whose source row has a non-null value; value as the source's type."""
    column = mapping.source_column
    if mapping.source_table == "people":
        people = _require(lake, "people", ["id", column], mapping)
        table = pa.table({"lead_id": people["id"], "value": people[column]})
    elif mapping.source_table == "unified_people":
        links = _require(lake, "person_unified_links", ["source_id", "unified_id"], mapping)
        if column == "unified_id":
            table = pa.table({"lead_id": links["source_id"], "value": links["unified_id"]})
        else:
            unified = _require(lake, "unified_people", ["unified_id", column], mapping)
            joined = links.join(unified, "unified_id", join_type="inner")
            table = pa.table({"lead_id": joined["source_id"], "value": joined[column]})
    else:
        person_accounts = _require(lake, "person_accounts", ["person_id", "account_id"], mapping)
        links = _require(lake, "account_unified_links", ["source_id", "unified_id"], mapping)
        joined = person_accounts.join(
            links.rename_columns(["account_id", "unified_id"]), "account_id", join_type="inner"
        )
        if column != "unified_id":
            unified = _require(lake, "unified_accounts", ["unified_id", column], mapping)
            joined = joined.join(unified, "unified_id", join_type="inner")
        # a person in several accounts takes the first account by id: stable from run to run
        joined = joined.sort_by([("person_id", "ascending"), ("account_id", "ascending")])
        first = _first_per_key(joined["person_id"])
        joined = joined.filter(first)
        table = pa.table({"lead_id": joined["person_id"], "value": joined[column]})
    table = table.set_column(0, "lead_id", pc.cast(table["lead_id"], pa.int64()))
    return table.filter(pc.is_valid(table["value"]))


def _first_per_key(keys: pa.ChunkedArray) -> pa.Array:
    values = keys.combine_chunks()
    if len(values) == 0:
        return pa.array([], pa.bool_())
    differs = pc.not_equal(values[1:], values[:-1])
    return pa.concat_arrays([pa.array([True]), differs.fill_null(True)])


def _as_text(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Canonical text for comparing values across types (Marketo hands strings, ints, booleans back)."""
    if pa.types.is_boolean(column.type):
        return pc.if_else(column, "true", "false")
    return pc.cast(column, pa.string())


def changes(lake: Lake, mapping: WriteBackMapping, ledger: pa.Table) -> pa.Table:
    """(lead_id, value, text) to push for one mapping, by the rule in the module docstring."""
    desired = desired_values(lake, mapping)
    people = lake.read_current("people")
    if people is None:
        raise WriteBackError("write_back: the people table is not in the lake yet; run a sync first")
    field = mapping.marketo_field
    # before the first sync that exports the field, Marketo's value is unknown: treat it as empty
    synced_text = (
        _as_text(people[field]) if field in people.column_names else pa.nulls(people.num_rows, pa.string())
    )
    synced = pa.table({"lead_id": pc.cast(people["id"], pa.int64()), "synced": synced_text})
    mine = ledger.filter(pc.equal(ledger["marketo_field"], field))
    pushed = pa.table({"lead_id": mine["lead_id"], "pushed": mine["value"]})
    # inner join on people: only leads that exist in Marketo now (never deleted or merged-away ids)
    table = desired.append_column("text", _as_text(desired["value"])).join(
        synced, "lead_id", join_type="inner"
    )
    table = table.join(pushed, "lead_id", join_type="left outer")
    same_synced = pc.fill_null(pc.equal(table["text"], table["synced"]), False)
    same_pushed = pc.fill_null(pc.equal(table["text"], table["pushed"]), False)
    keep = pc.invert(pc.or_(same_synced, same_pushed))
    return table.filter(keep).select(["lead_id", "value", "text"]).sort_by("lead_id")


# --- pushing ---------------------------------------------------------------------------------------------
def build_records(per_field: dict[str, pa.Table]) -> tuple[list[dict[str, Any]], dict[int, dict[str, str]]]:
    """One Sync Leads record per lead with all its changed fields, and lead -> {field: text} (ledger)."""
    records: dict[int, dict[str, Any]] = {}
    texts: dict[int, dict[str, str]] = {}
    for field, table in per_field.items():
        for lead_id, value, text in zip(
            table["lead_id"].to_pylist(), table["value"].to_pylist(), table["text"].to_pylist(), strict=True
        ):
            records.setdefault(lead_id, {"id": lead_id})[field] = value
            texts.setdefault(lead_id, {})[field] = text
    ordered = [records[k] for k in sorted(records)]
    return ordered, texts


def _ledger_rows(
    acked: Sequence[SyncResult], records: Sequence[dict[str, Any]], texts: dict[int, dict[str, str]], now: Any
) -> list[dict[str, Any]]:
    rows = []
    for result in acked:
        lead_id = records[result.index]["id"]
        for field, text in texts[lead_id].items():
            rows.append({"lead_id": lead_id, "marketo_field": field, "value": text, "pushed_at": now})
    return rows


def _failure_rows(
    failed: Sequence[SyncResult],
    records: Sequence[dict[str, Any]],
    texts: dict[int, dict[str, str]],
    previous: dict[tuple[int, str], int],
    now: Any,
) -> list[dict[str, Any]]:
    rows = []
    for result in failed:
        lead_id = records[result.index]["id"]
        code = ",".join(r.code for r in result.reasons) or None
        message = "; ".join(r.message for r in result.reasons) or result.status
        for field, text in texts[lead_id].items():
            rows.append(
                {
                    "lead_id": lead_id,
                    "marketo_field": field,
                    "value": text,
                    "code": code,
                    "message": message,
                    "attempts": previous.get((lead_id, field), 0) + 1,
                    "failed_at": now,
                }
            )
    return rows


def _read(lake: Lake, table: str, schema: pa.Schema) -> pa.Table:
    return or_empty(lake.read_current(table), schema).select(schema.names).cast(schema)


def write_back(
    lake: Lake, client: Any, mappings: Sequence[WriteBackMapping], log: Any = None
) -> dict[str, Any]:
    """Compute changes, push them, and record the ledger and failures. Returns counts for metadata."""
    ledger = _read(lake, LEDGER_TABLE, LEDGER_SCHEMA)
    previous_failures = _read(lake, FAILURES_TABLE, FAILURES_SCHEMA)
    attempts = {
        (r["lead_id"], r["marketo_field"]): r["attempts"]
        for r in previous_failures.select(["lead_id", "marketo_field", "attempts"]).to_pylist()
    }
    per_field = {m.marketo_field: changes(lake, m, ledger) for m in mappings}
    records, texts = build_records(per_field)
    chunks = list(batches(records, SYNC_BATCH))
    now = clock.now()
    acked_rows: list[dict[str, Any]] = []
    failure_rows: list[dict[str, Any]] = []
    try:
        for chunk in chunks:
            results = client.sync_leads_update_by_id(chunk)
            acked_rows += _ledger_rows([r for r in results if r.ok], chunk, texts, now)
            failure_rows += _failure_rows([r for r in results if not r.ok], chunk, texts, attempts, now)
    finally:
        # whatever Marketo acknowledged before a failure is recorded, so a rerun does not push it again
        acked = pa.Table.from_pylist(acked_rows, schema=LEDGER_SCHEMA)
        lake.keyed(LEDGER_TABLE, LEDGER_KEY).commit(acked)
        failures = pa.Table.from_pylist(failure_rows, schema=FAILURES_SCHEMA)
        # This run's failures replace the previous ones: a record that went through is no longer failing.
        lake.keyed(FAILURES_TABLE, LEDGER_KEY).commit_contents(failures)
    if failure_rows and log is not None:
        shown = ", ".join(
            f"lead {r['lead_id']} {r['marketo_field']}: {r['code']} {r['message']}" for r in failure_rows[:5]
        )
        log.warning(
            f"write-back: {len(failure_rows)} value(s) skipped by Marketo (retried next run): {shown}"
        )
    return {
        "changed_values": sum(t.num_rows for t in per_field.values()),
        "changed_by_field": {f: t.num_rows for f, t in per_field.items()},
        "records_sent": len(records),
        "values_acknowledged": len(acked_rows),
        "values_failed": len(failure_rows),
        "sync_leads_calls": len(chunks),
    }


# --- asset and job ---------------------------------------------------------------------------------------
def build_write_back_assets(settings: MolequleSettings) -> list[Any]:
    config = settings.write_back
    if not config.enabled or not config.mappings:
        return []
    mappings = list(config.mappings)
    deps = list(dict.fromkeys(t for m in mappings for t in SOURCE_DEPS[m.source_table]))
    described = ", ".join(f"{m.source_table}.{m.source_column} → {m.marketo_field}" for m in mappings)

    @dg.asset(
        name=WRITE_BACK_ASSET,
        group_name=ACTIONS_GROUP,
        deps=deps,
        pool=MARKETO_POOL,
        owners=OWNERS,
        kinds={"marketo", "parquet"},
        description=f"Push changed Molequle values to Marketo lead fields (Sync Leads updateOnly by id): "
        f"{described}. Ledger in {LEDGER_TABLE}, per-record failures in {FAILURES_TABLE}.",
        metadata={**schema_metadata(LEDGER_SCHEMA), "mappings": described},
    )
    def marketo_write_back(
        context: dg.AssetExecutionContext, marketo: MarketoResource, lake: LakeResource
    ) -> dg.MaterializeResult:
        client = marketo.client
        with accounting(client, context) as spent:
            try:
                counts = write_back(lake.lake, client, mappings, context.log)
            except WriteBackError as error:
                raise fail_on_purpose(context, str(error)) from None
        return dg.MaterializeResult(
            metadata={
                **spent.metadata(),
                **{k: dg.MetadataValue.json(v) if isinstance(v, dict) else v for k, v in counts.items()},
            }
        )

    return [marketo_write_back]


def write_back_enabled(settings: MolequleSettings) -> bool:
    return settings.write_back.enabled and bool(settings.write_back.mappings)
