"""The Dagster op that runs one configured action; it only hands over to `execute_action` (the job that
runs it is defined with the others in `jobs.py`)."""

import dagster as dg

from molequle_dagster.actions.config import ACTION_OP, MarketoActionConfig
from molequle_dagster.actions.execute import execute_action
from molequle_dagster.conventions import MARKETO_POOL
from molequle_dagster.resources import LakeResource, MarketoResource, SettingsResource


@dg.op(
    name=ACTION_OP,
    pool=MARKETO_POOL,
    tags={"molequle/kind": "action"},
    description="Run one configured Marketo action (the settings' `actions`).",
)
def run_marketo_action(
    context: dg.OpExecutionContext,
    config: MarketoActionConfig,
    marketo: MarketoResource,
    lake: LakeResource,
    settings: SettingsResource,
) -> None:
    execute_action(context, settings.settings, config, marketo, lake)
