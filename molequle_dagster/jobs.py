"""Every job of the project: the tick, the daily close, the first sync and its history, actions, write-back.

Each run carries `molequle/kind`, which tells the assets how to read Marketo (a tick reads its delta through
REST; every other kind exports whole days in bulk) and lets schedules and sensors see what is running.
"""

from __future__ import annotations

import dagster as dg

from molequle_dagster.actions.config import ACTION_JOB
from molequle_dagster.actions.op import build_action_op
from molequle_dagster.conventions import MARKETO_GROUP, MOLEQULE_GROUP, OWNERS, UNIFIED_GROUP
from molequle_dagster.settings import MolequleSettings
from molequle_dagster.sync.run_kind import DAILY, HISTORY, INITIAL, KIND_TAG, TICK

SYNC_JOB = "marketo_sync_job"
DAILY_JOB = "marketo_daily_job"
INITIAL_JOB = "marketo_initial_sync_job"
HISTORY_JOB = "marketo_history_job"
WRITE_BACK_JOB = "marketo_write_back_job"
WRITE_BACK_ASSET = "marketo_write_back"

_SYNCED = dg.AssetSelection.groups(MARKETO_GROUP, MOLEQULE_GROUP, UNIFIED_GROUP)


def sync_jobs(settings: MolequleSettings) -> list[dg.UnresolvedAssetJobDefinition]:
    """The tick, the daily close, the first sync and the history."""
    # Reconciliation (the smart-list refresh, program-member exports) runs daily, never on a tick.
    reconcile = [
        "marketo_people_population",
        *(["marketo_program_members"] if settings.sync.programs else []),
    ]
    return [
        dg.define_asset_job(
            SYNC_JOB,
            selection=_SYNCED - dg.AssetSelection.assets(*reconcile),
            description="A tick: read what changed since the last one (REST for small deltas) into every "
            "current table. Runs every `sync.interval_minutes`; never two at once.",
            tags={KIND_TAG: TICK},
        ),
        dg.define_asset_job(
            DAILY_JOB,
            selection=_SYNCED,
            description="Close yesterday (bulk re-export of its people changes and activities), refresh the "
            "smart-list membership, and run the day's reconciliation slices (program members, accounts).",
            tags={KIND_TAG: DAILY},
        ),
        dg.define_asset_job(
            INITIAL_JOB,
            selection=_SYNCED,
            description="First sync: the smart list's people, accounts, programs and memberships, and "
            "today's "
            "activities; the history follows in marketo_history_job runs, newest first.",
            tags={KIND_TAG: INITIAL},
        ),
        dg.define_asset_job(
            HISTORY_JOB,
            selection=dg.AssetSelection.assets("marketo_activities"),
            description="Activity history by day, newest first, in runs sized to the day's export budget.",
            tags={KIND_TAG: HISTORY},
        ),
    ]


def build_action_job(settings: MolequleSettings) -> dg.JobDefinition:
    described = "; ".join(f"{a.name} ({a.kind})" for a in settings.actions) or "none configured"
    run_marketo_action = build_action_op(settings)

    # No default config: any default would pick an action and send to someone, and one with blanks would
    # pass the launchpad and fail at run time. Without it the launchpad flags the missing `run` entry.
    @dg.job(
        name=ACTION_JOB,
        tags={KIND_TAG: "action"},
        description="Trigger or schedule a Marketo smart campaign configured in the settings' actions, for "
        f"people by lead id or unified id ({described}). Safe to re-execute: batches that succeeded are "
        "not resent.",
        metadata={"owners": OWNERS},
    )
    def run_marketo_action_job() -> None:
        run_marketo_action()

    return run_marketo_action_job


def write_back_enabled(settings: MolequleSettings) -> bool:
    return settings.write_back.enabled and bool(settings.write_back.mappings)


def build_jobs(settings: MolequleSettings) -> list[object]:
    jobs: list[object] = [*sync_jobs(settings), build_action_job(settings)]
    if write_back_enabled(settings):
        jobs.append(
            dg.define_asset_job(
                WRITE_BACK_JOB,
                selection=[WRITE_BACK_ASSET],
                tags={KIND_TAG: "write_back"},
                description="Push changed Molequle attributes to Marketo (Sync Leads, updateOnly by id).",
            )
        )
    return jobs
