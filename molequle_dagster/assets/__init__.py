"""Software-defined assets, one module per Marketo entity; `build_assets` gathers them."""

from __future__ import annotations

from typing import Any

import dagster as dg

from molequle_dagster.assets.accounts import build_account_assets
from molequle_dagster.assets.activities import build_activity_assets
from molequle_dagster.assets.people import build_people_assets
from molequle_dagster.assets.programs import build_program_assets
from molequle_dagster.assets.unified import build_unified_assets
from molequle_dagster.assets.write_back import build_write_back_assets
from molequle_dagster.settings import MolequleSettings


def build_assets(settings: MolequleSettings, partitions: dg.DailyPartitionsDefinition) -> list[Any]:
    return [
        *build_people_assets(settings, partitions),
        *build_account_assets(settings),
        *build_activity_assets(settings, partitions),
        *(build_program_assets(settings) if settings.sync.programs else []),
        *build_unified_assets(settings),
        *build_write_back_assets(settings),
    ]
