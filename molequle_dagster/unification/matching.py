"""Clustering by ordered match rules: normalized keys, group codes per rule, connected components.

Rows must be in source-id order: component labels are the smallest row index of each cluster, so the
label is the member with the smallest source id (the engine derives new ids from it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from molequle_dagster.unification.components import connected_components
from molequle_dagster.unification.normalize import normalize_column

if TYPE_CHECKING:  # types only: settings.py may import this package at load time
    from molequle_dagster.unification.rules import MatchRule


def key_parts(records: pa.Table, rule: MatchRule) -> list[pa.Array]:
    """The normalized value of each of the rule's keys, per row (null = no key)."""
    return [normalize_column(records[key.field], key.normalize) for key in rule.keys]


def _codes(values: pa.Array) -> np.ndarray:
    """Dense group code per row (by value); -1 for null."""
    encoded = pc.dictionary_encode(values)
    return pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int64)


def _group_codes(parts: list[pa.Array]) -> np.ndarray:
    """One code per row: equal codes <=> all keys equal and non-null; -1 when any key is null."""
    combined: np.ndarray | None = None
    for part in parts:
        codes = _codes(part)
        if combined is None:
            combined = codes
            continue
        missing = (combined < 0) | (codes < 0)
        paired = combined * (int(codes.max(initial=0)) + 1) + codes
        paired[missing] = -1
        # re-densify so the next pairing cannot overflow int64
        dense = np.unique(paired, return_inverse=True)[1].astype(np.int64)
        combined = np.where(missing, -1, dense)
    assert combined is not None  # rules have at least one key (validated)
    return combined


def match(records: pa.Table, rules: Sequence[MatchRule]) -> tuple[np.ndarray, np.ndarray]:
    """Component label per row (= smallest row index of its cluster) and first matching rule (-1 = none)."""
    count = records.num_rows
    matched_rule = np.full(count, -1, dtype=np.int32)
    lefts, rights = [], []
    for rule_index, rule in enumerate(rules):
        codes = _group_codes(key_parts(records, rule))
        rows = np.nonzero(codes >= 0)[0]
        if rows.size == 0:
            continue
        _, first_pos, inverse, sizes = np.unique(
            codes[rows], return_index=True, return_inverse=True, return_counts=True
        )
        group_root = rows[first_pos][inverse]  # smallest row of the group: a star centre
        shared = sizes[inverse] > 1
        newly = rows[shared & (matched_rule[rows] < 0)]
        matched_rule[newly] = rule_index
        spoke = group_root != rows
        lefts.append(rows[spoke])
        rights.append(group_root[spoke])
    empty = np.zeros(0, dtype=np.int64)
    labels = connected_components(
        count, np.concatenate(lefts) if lefts else empty, np.concatenate(rights) if rights else empty
    )
    return labels, matched_rule
