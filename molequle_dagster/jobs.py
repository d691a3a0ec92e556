"""Asset jobs: the 30-minute sync, the daily close, and the initial sync the CLI drives."""

from __future__ import annotations

import dagster as dg

from molequle_dagster.assets.common import MARKETO_GROUP, MOLEQULE_GROUP, UNIFIED_GROUP

SYNC_JOB = "marketo_sync_job"
DAILY_JOB = "marketo_daily_job"
INITIAL_JOB = "marketo_initial_sync_job"

# Everything a tick refreshes. The population (one full smart-list export) is left to the daily job.
_TICK = dg.AssetSelection.groups(MARKETO_GROUP, MOLEQULE_GROUP, UNIFIED_GROUP) - dg.AssetSelection.assets(
    "marketo_people_population"
)
_ALL = dg.AssetSelection.groups(MARKETO_GROUP, MOLEQULE_GROUP, UNIFIED_GROUP)

marketo_sync_job = dg.define_asset_job(
    SYNC_JOB,
    selection=_TICK,
    description="Bring people, accounts, programs and today's activities up to date (every 30 minutes).",
    tags={"molequle/kind": "tick"},
)

marketo_daily_job = dg.define_asset_job(
    DAILY_JOB,
    selection=_ALL,
    description="Close yesterday's partitions and refresh the smart-list population (reconciles membership).",
    tags={"molequle/kind": "daily"},
)

marketo_initial_sync_job = dg.define_asset_job(
    INITIAL_JOB,
    selection=_ALL,
    description="First sync: the smart-list population, then history in ≤ 31-day partition ranges.",
    tags={"molequle/kind": "initial"},
)

ALL_JOBS = [marketo_sync_job, marketo_daily_job, marketo_initial_sync_job]
