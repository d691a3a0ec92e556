"""The Dagster op that runs one configured action; it only hands over to `execute_action` (the job that
runs it is defined with the others in `jobs.py`)."""

import dagster as dg

from molequle_dagster.actions.config import ACTION_OP, action_config_schema
from molequle_dagster.actions.execute import execute_action
from molequle_dagster.conventions import MARKETO_POOL
from molequle_dagster.resources import LakeResource, MarketoResource, SettingsResource
from molequle_dagster.settings import MolequleSettings


def build_action_op(settings: MolequleSettings) -> dg.OpDefinition:
    """The op, with a config schema made from these settings' actions (see `config`)."""

    @dg.op(
        name=ACTION_OP,
        config_schema=action_config_schema(settings),
        pool=MARKETO_POOL,
        tags={"molequle/kind": "action"},
        description="Run one configured Marketo action (the settings' `actions`).",
    )
    def run_marketo_action(
        context: dg.OpExecutionContext,
        marketo: MarketoResource,
        lake: LakeResource,
        settings: SettingsResource,
    ) -> None:
        execute_action(context, settings.settings, context.op_config, marketo, lake)

    return run_marketo_action
