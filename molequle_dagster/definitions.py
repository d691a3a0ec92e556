"""The one Definitions object: assembles settings, partitions, assets, jobs, schedules, sensors, resources.

Loads with no Marketo credentials and no I/O: secrets are `EnvVar`s resolved when a run starts, and the
lake (possibly on object storage) is opened only when a run, schedule or sensor needs it.
"""

from __future__ import annotations

import warnings

import dagster as dg

from molequle_dagster.assets import build_assets
from molequle_dagster.execution import build_executor
from molequle_dagster.jobs import build_jobs
from molequle_dagster.partitions import build_daily_partitions
from molequle_dagster.resources import build_resources
from molequle_dagster.schedules import build_schedules
from molequle_dagster.sensors import build_sensors
from molequle_dagster.settings import MolequleSettings, load_settings


def build_definitions(settings: MolequleSettings) -> dg.Definitions:
    partitions = build_daily_partitions(settings)
    resources = build_resources(settings)
    jobs = build_jobs(settings)

    with warnings.catch_warnings():
        # "open source file" links in the UI; the feature is marked beta, the links are harmless
        warnings.simplefilter("ignore", dg.BetaWarning)
        assets = dg.with_source_code_references(build_assets(settings, partitions))
    return dg.Definitions(
        assets=assets,
        jobs=jobs,
        schedules=build_schedules(settings, partitions, resources),
        sensors=build_sensors(settings, partitions, resources, jobs),
        resources=resources,
        executor=build_executor(),  # multiprocess unless $MOLEQULE_EXECUTOR or a run's config says otherwise
    )


defs = build_definitions(load_settings())
