"""Who a trigger is for: Marketo lead ids as given plus every lead of each unified id, from the lake."""

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.actions.validation import SHOWN_IDS, ActionInputError
from molequle_dagster.lake import Lake

UNIFIED_LINKS_TABLE = "person_unified_links"
UNIFIED_LINEAGE_TABLE = "person_id_lineage"


def resolve_lead_ids(lake: Lake, lead_ids: Sequence[int], unified_ids: Sequence[str]) -> list[int]:
    """Lead ids first as given, then every lead of each unified id; duplicates dropped, order kept.

    A unified id retired by a later unification run follows `person_id_lineage` to its survivor.
    """
    resolved: list[int] = list(lead_ids)
    if unified_ids:
        wanted = list(dict.fromkeys(unified_ids))
        links = lake.read_current(UNIFIED_LINKS_TABLE, columns=["source_id", "unified_id"])
        if links is None:
            raise ActionInputError(
                [
                    "unified_ids: person_unified_links is not in the lake yet; run a sync first "
                    "or give lead_ids"
                ]
            )
        current = _follow_lineage(lake, wanted)
        matched = links.filter(
            pc.is_in(links["unified_id"], value_set=pa.array(list(current.values()), pa.string()))
        )
        by_unified: dict[str, list[int]] = {}
        for row in matched.to_pylist():
            by_unified.setdefault(row["unified_id"], []).append(int(row["source_id"]))
        unknown = [u for u in wanted if current[u] not in by_unified]
        if unknown:
            raise ActionInputError(
                [
                    f"unified_ids: no Marketo lead has unified id(s) {unknown[:SHOWN_IDS]}"
                    f"{' …' if len(unknown) > SHOWN_IDS else ''}"
                ]
            )
        for unified in wanted:
            resolved.extend(sorted(by_unified[current[unified]]))
    return list(dict.fromkeys(resolved))


def _follow_lineage(lake: Lake, unified_ids: list[str]) -> dict[str, str]:
    lineage = lake.read_current(UNIFIED_LINEAGE_TABLE, columns=["retired_id", "survivor_id"])
    survivor = (
        {}
        if lineage is None
        else dict(zip(lineage["retired_id"].to_pylist(), lineage["survivor_id"].to_pylist(), strict=True))
    )
    out: dict[str, str] = {}
    for unified in unified_ids:
        seen, current = {unified}, unified
        while current in survivor and survivor[current] not in seen:  # chains; cycles cannot loop forever
            current = survivor[current]
            seen.add(current)
        out[unified] = current
    return out
