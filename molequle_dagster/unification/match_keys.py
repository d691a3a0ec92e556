"""The match-key index: which records hold a given normalized key, without normalising everyone.

One row per source record and rule under which the record has a key (every key of the rule non-null):
``source_id``, ``rule`` (the rule's name), ``key_hash``. The hash is `ids.hash64` (FNV-1a 64 +
splitmix64, fixed and implemented in this package, so a stored index never depends on a library
version) of the text ``<rule name> US <len>:<value> US <len>:<value> ...`` (US = the ASCII unit
separator, len = the value's length in code points): the length prefixes make the text a one-to-one
encoding of the rule and its values, so equal hashes are *likely* equal keys and unequal hashes are
certainly different keys. The index is only used to find candidate records; a collision merely adds a
cluster to the ones recomputed, it never joins records (matching always compares the real values).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.unification.ids import hash64
from molequle_dagster.unification.matching import key_parts
from molequle_dagster.unification.schemas import match_keys_schema

if TYPE_CHECKING:  # types only: settings.py may import this package at load time
    from molequle_dagster.unification.rules import MatchRule

_SEPARATOR = "\x1f"


def _key_text(rule_name: str, parts: list[pa.Array]) -> pa.Array:
    """Null when any part is null (the record has no key under the rule)."""
    framed = [
        pc.binary_join_element_wise(pc.cast(pc.utf8_length(part), pa.string()), ":", part, "")
        for part in parts
    ]
    return pc.binary_join_element_wise(pa.scalar(rule_name), *framed, _SEPARATOR)


def key_hash_rows(records: pa.Table, source_ids: pa.Array, rules: Sequence[MatchRule]) -> pa.Table:
    """The index rows of `records` (ids in `source_ids`), sorted by (source_id, rule)."""
    tables = []
    for rule in rules:
        text = _key_text(rule.name, key_parts(records, rule))
        has_key = text.is_valid()
        text = text.filter(has_key)
        tables.append(
            pa.table(
                {
                    "source_id": source_ids.filter(has_key),
                    "rule": pa.repeat(pa.scalar(rule.name, pa.string()), len(text)),
                    "key_hash": pa.array(hash64(text), pa.int64()),
                },
                schema=match_keys_schema(source_ids.type),
            )
        )
    if not tables:
        return match_keys_schema(source_ids.type).empty_table()
    return pa.concat_tables(tables).sort_by([("source_id", "ascending"), ("rule", "ascending")])
