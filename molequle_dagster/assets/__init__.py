"""Software-defined assets, one module per Marketo entity.

Assets whose shape does not depend on the settings are defined at module level, so each can be imported
and materialized alone (`from molequle_dagster.assets.people import people`); they read the settings from
the `settings` resource. Factories remain only where the settings change the graph: the daily partitions
follow `sync.history_days`, named accounts and write-back exist only when enabled, programs only when
`sync.programs` is on.
"""

from typing import Any

import dagster as dg

from molequle_dagster.assets.accounts import build_accounts_current, marketo_companies, marketo_named_accounts
from molequle_dagster.assets.activities import activities, build_marketo_activities, marketo_activity_types
from molequle_dagster.assets.memberships import fold_memberships_step, marketo_program_members
from molequle_dagster.assets.people import (
    build_marketo_people_updates,
    marketo_people_population,
    people,
    person_merges,
    person_tombstones,
)
from molequle_dagster.assets.programs import marketo_programs, sync_channels
from molequle_dagster.assets.unified import unify_accounts, unify_people
from molequle_dagster.assets.write_back import build_write_back_assets
from molequle_dagster.settings import MolequleSettings


def build_assets(settings: MolequleSettings, partitions: dg.DailyPartitionsDefinition) -> list[Any]:
    programs = [sync_channels, marketo_programs, marketo_program_members, fold_memberships_step]
    return [
        marketo_activity_types,
        build_marketo_activities(partitions),
        activities,
        marketo_people_population,
        build_marketo_people_updates(partitions),
        person_tombstones,
        person_merges,
        people,
        marketo_companies,
        *([marketo_named_accounts] if settings.accounts.named_accounts else []),
        build_accounts_current(settings),
        *(programs if settings.sync.programs else []),
        unify_people,
        unify_accounts,
        *build_write_back_assets(settings),
    ]
