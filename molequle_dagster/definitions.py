"""The one Definitions object: assembles settings, partitions, assets, checks, jobs, schedules, resources.

Loads with no Marketo credentials present: secrets are `EnvVar`s resolved when a run starts.
"""

from __future__ import annotations

import warnings

import dagster as dg

from molequle_dagster.actions import build_action_job
from molequle_dagster.assets import build_assets
from molequle_dagster.assets.write_back import build_write_back_jobs
from molequle_dagster.jobs import ALL_JOBS
from molequle_dagster.partitions import build_daily_partitions
from molequle_dagster.resources import build_resources
from molequle_dagster.schedules import build_schedules
from molequle_dagster.settings import MolequleSettings, load_settings


def build_definitions(settings: MolequleSettings) -> dg.Definitions:
    partitions = build_daily_partitions(settings)
    with warnings.catch_warnings():
        # "open source file" links in the UI; the feature is marked beta, the links are harmless
        warnings.simplefilter("ignore", dg.BetaWarning)
        assets = dg.with_source_code_references(build_assets(settings, partitions))
    return dg.Definitions(
        assets=assets,
        jobs=[*ALL_JOBS, build_action_job(settings), *build_write_back_jobs(settings)],
        schedules=build_schedules(settings, partitions),
        resources=build_resources(settings),
    )


defs = build_definitions(load_settings())
