"""Unification of people and accounts by the customer's match rules, with stable unified ids.

No Dagster here. Two entry points with the same semantics (`engine.py`): `unify` clusters the whole
current table (first run, rebuilds); `unify_changes` (`incremental.py`) takes only what changed since the
previous run and returns upserts and deletes for every output and state table (`state.py`, `delta.py`).
"""

from molequle_dagster.unification.delta import (
    TableDelta,
    UnificationChanges,
    apply_changes,
    apply_delta,
)
from molequle_dagster.unification.engine import (
    IDS_SCHEMA,
    LINEAGE_SCHEMA,
    UnificationResult,
    UnificationState,
    unify,
)
from molequle_dagster.unification.ids import ID_PREFIX, derive_ids
from molequle_dagster.unification.incremental import unify_changes
from molequle_dagster.unification.normalize import LEGAL_SUFFIXES, NORMALIZERS, normalize_column
from molequle_dagster.unification.rules import validate_rules
from molequle_dagster.unification.schemas import KEY_COLUMNS
from molequle_dagster.unification.state import (
    PreviousState,
    RebuildRequired,
    TablesState,
    empty_state_tables,
    state_tables,
)

__all__ = [
    "IDS_SCHEMA",
    "ID_PREFIX",
    "KEY_COLUMNS",
    "LEGAL_SUFFIXES",
    "LINEAGE_SCHEMA",
    "NORMALIZERS",
    "PreviousState",
    "RebuildRequired",
    "TableDelta",
    "TablesState",
    "UnificationChanges",
    "UnificationResult",
    "UnificationState",
    "apply_changes",
    "apply_delta",
    "derive_ids",
    "empty_state_tables",
    "normalize_column",
    "state_tables",
    "unify",
    "unify_changes",
    "validate_rules",
]
