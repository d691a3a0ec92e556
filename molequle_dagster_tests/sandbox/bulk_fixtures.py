"""A small hand-built Marketo instance for the Bulk Extract tests (tricky text on purpose)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from molequle_dagster.sandbox.clock import SandboxClock
from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.context import SandboxContext
from molequle_dagster.sandbox.model import (
    ACTIVITIES_SCHEMA,
    COMPANIES_SCHEMA,
    DELETED_LEADS_SCHEMA,
    MEMBERSHIPS_SCHEMA,
    MERGES_SCHEMA,
    NAMED_ACCOUNTS_SCHEMA,
    PEOPLE_SCHEMA,
    PROGRAMS_SCHEMA,
    InstanceState,
)
from molequle_dagster_tests.sandbox.conftest import NOW

JAN = datetime(2026, 1, 5, 10, 0, 0, tzinfo=UTC)
FEB = datetime(2026, 2, 20, 12, 30, 45, tzinfo=UTC)


def _people() -> pa.Table:
    rows = [
        # id, email, first, last, title, company, extCo, score, country, unsub, mpid, created, updated, _mod
        (1, "ann@acme.com", "Ann", "Lee", "CEO", "Acme, Inc.", "C1", 10, "US", False, None, JAN, JAN, FEB),
        (2, "bob@x.org", 'Bob "B"', "Ray", None, "X", None, None, "DE", True, None, JAN, JAN, JAN),
        (3, "cy@y.net", "Cy", "Multi\nLine", "CTO", "Y", "C2", 5, None, False, "p-3", FEB, FEB, FEB),
        (4, None, "Dee", "Semi;colon", "VP", "Z", None, 0, "FR", False, None, FEB, FEB, FEB),
        (5, "eve@z.io", "Eve", "Tab\there", None, None, None, 7, "US", False, None, NOW, NOW, NOW),
    ]
    columns = [*zip(*rows, strict=True), (None,) * len(rows)]  # _seed: no generated profile
    return pa.Table.from_arrays(
        [pa.array(c, f.type) for c, f in zip(columns, PEOPLE_SCHEMA, strict=True)], schema=PEOPLE_SCHEMA
    )


def _activities() -> pa.Table:
    base = datetime(2026, 2, 1, tzinfo=UTC)
    rows = []
    for i in range(10):
        when = base + timedelta(days=i)
        rows.append(
            (
                1000 + i,
                1 + i % 5,
                when,
                [2, 104, 6][i % 3],
                None if i % 2 else 500 + i,
                100 + i % 3,
                None if i == 9 else f"Program {i % 3}",
                i,
                '{"Webpage URL":"https://x/?a=1,b","Flag":true}'
                if i % 3 == 0
                else '{"Old Status":"Not in Program"}',
            )
        )
    columns = list(zip(*rows, strict=True))
    return pa.Table.from_arrays(
        [pa.array(c, f.type) for c, f in zip(columns, ACTIVITIES_SCHEMA, strict=True)],
        schema=ACTIVITIES_SCHEMA,
    )


def _programs() -> pa.Table:
    rows = [
        (1001, "Webinar, March", "", "Event", "Webinar", 1, "F", "unlocked", "Default", JAN, JAN),
        (1002, "Nurture", "", "Engagement", "Nurture", 1, "F", "unlocked", "Default", JAN, JAN),
    ]
    columns = list(zip(*rows, strict=True))
    return pa.Table.from_arrays(
        [pa.array(c, f.type) for c, f in zip(columns, PROGRAMS_SCHEMA, strict=True)], schema=PROGRAMS_SCHEMA
    )


def _memberships() -> pa.Table:
    rows = [
        (1001, 1, "Registered", JAN, False, None, True, False, JAN, FEB),
        (1001, 2, "Attended", JAN, True, FEB, False, False, JAN, FEB),
        (1001, 99, "Attended", JAN, True, FEB, False, False, JAN, FEB),  # lead 99 was deleted
        (1002, 3, "Member", FEB, False, None, False, True, FEB, FEB),
        (1002, 1, "Member", FEB, False, None, False, False, FEB, NOW),
    ]
    columns = list(zip(*rows, strict=True))
    return pa.Table.from_arrays(
        [pa.array(c, f.type) for c, f in zip(columns, MEMBERSHIPS_SCHEMA, strict=True)],
        schema=MEMBERSHIPS_SCHEMA,
    )


def small_state() -> InstanceState:
    return InstanceState(
        seed=1,
        people=_people(),
        companies=COMPANIES_SCHEMA.empty_table(),
        named_accounts=NAMED_ACCOUNTS_SCHEMA.empty_table(),
        activities=_activities(),
        programs=_programs(),
        memberships=_memberships(),
        deleted_leads=DELETED_LEADS_SCHEMA.empty_table(),
        merges=MERGES_SCHEMA.empty_table(),
        channels=[
            {
                "name": "Webinar",
                "progressionStatuses": [
                    {"name": n, "step": i}
                    for i, n in enumerate(["Invited", "Registered", "Attended", "No Show"])
                ],
            }
        ],
        static_lists=[{"id": 77, "name": "VIPs", "lead_ids": [2, 4]}],
        smart_lists=[{"id": 88, "name": "All People for Molequle", "rule": {"kind": "subscribed"}}],
        created_at=JAN,
    )


def make_context(profile: str = "fast", **bulk: object) -> SandboxContext:
    config = SandboxConfig.for_profile(profile)  # type: ignore[arg-type]
    for key, value in bulk.items():
        setattr(config.bulk, key, value)
    return SandboxContext(config=config, state=small_state(), clock=SandboxClock(frozen_at=NOW))
