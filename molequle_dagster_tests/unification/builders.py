"""Builders shared by the unification tests: small people tables, rules and result views."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from molequle_dagster.settings import MatchKey, MatchRule
from molequle_dagster.unification import UnificationResult, derive_ids

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TS = pa.timestamp("s", tz="UTC")
PEOPLE_COLUMNS = ("email", "firstName", "lastName", "company", "externalCompanyId", "title", "country")

SAME_EMAIL = MatchRule(name="same_email", keys=[MatchKey(field="email", normalize=["email"])])
SAME_NAME_AND_DOMAIN = MatchRule(
    name="same_name_and_company",
    keys=[
        MatchKey(field="firstName", normalize=["trim_case"]),
        MatchKey(field="lastName", normalize=["trim_case"]),
        MatchKey(field="email", normalize=["email_domain"]),
    ],
)
PEOPLE_RULES = [SAME_EMAIL, SAME_NAME_AND_DOMAIN]

# Two pairs and a singleton under same_email.
BASE: list[dict[str, Any]] = [
    {"id": 1, "email": "ann@acme.io"},
    {"id": 2, "email": "ANN@acme.io"},
    {"id": 3, "email": "bo@acme.io"},
    {"id": 4, "email": "bo@acme.io"},
    {"id": 5, "email": "cy@acme.io"},
]


def derived(*source_ids: int) -> list[str]:
    """The ids a first run derives for clusters whose smallest member is each of `source_ids`."""
    return derive_ids("person", pa.array(source_ids, pa.int64())).to_pylist()


def people_table(rows: list[dict[str, Any]]) -> pa.Table:
    """People in the synced shape; unspecified attributes are null, timestamps default to T0."""
    columns: dict[str, pa.Array] = {"id": pa.array([r["id"] for r in rows], pa.int64())}
    for name in PEOPLE_COLUMNS:
        columns[name] = pa.array([r.get(name) for r in rows], pa.string())
    columns["leadScore"] = pa.array([r.get("leadScore") for r in rows], pa.int32())
    columns["createdAt"] = pa.array([r.get("createdAt", T0) for r in rows], TS)
    columns["updatedAt"] = pa.array([r.get("updatedAt", T0) for r in rows], TS)
    return pa.table(columns)


Runner = Callable[..., UnificationResult]


def ids_by_source(result: UnificationResult) -> dict[Any, str]:
    links = result.links
    return dict(zip(links["source_id"].to_pylist(), links["unified_id"].to_pylist(), strict=True))


def clusters(result: UnificationResult) -> set[frozenset[Any]]:
    members: dict[str, set[Any]] = {}
    for source, unified in ids_by_source(result).items():
        members.setdefault(unified, set()).add(source)
    return {frozenset(m) for m in members.values()}
