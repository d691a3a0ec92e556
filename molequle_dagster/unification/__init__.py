"""Unification of people and accounts by the customer's match rules, with stable unified ids.

No Dagster here: the assets call `unify` with the current-state table and the previous run's state.
Semantics are documented in `engine.py` (clustering, stable ids, representatives) and `normalize.py`.
"""

from molequle_dagster.unification.engine import (
    IDS_SCHEMA,
    LINEAGE_SCHEMA,
    UnificationResult,
    UnificationState,
    unify,
)
from molequle_dagster.unification.ids import ID_PREFIX, derive_ids
from molequle_dagster.unification.normalize import LEGAL_SUFFIXES, NORMALIZERS, normalize_column
from molequle_dagster.unification.rules import validate_rules

__all__ = [
    "IDS_SCHEMA",
    "ID_PREFIX",
    "LEGAL_SUFFIXES",
    "LINEAGE_SCHEMA",
    "NORMALIZERS",
    "UnificationResult",
    "UnificationState",
    "derive_ids",
    "normalize_column",
    "unify",
    "validate_rules",
]
