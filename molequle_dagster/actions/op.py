"""The Dagster op and job that run one configured action; the op only hands over to `execute_action`."""

import dagster as dg

from molequle_dagster.actions.config import (
    ACTION_JOB,
    ACTION_OP,
    MarketoActionConfig,
    default_action_config,
)
from molequle_dagster.actions.execute import execute_action
from molequle_dagster.assets.common import MARKETO_POOL, OWNERS
from molequle_dagster.resources import LakeResource, MarketoResource
from molequle_dagster.settings import MolequleSettings


def build_action_job(settings: MolequleSettings) -> dg.JobDefinition:
    described = "; ".join(f"{a.name} ({a.kind})" for a in settings.actions) or "none configured"

    @dg.op(
        name=ACTION_OP,
        pool=MARKETO_POOL,
        tags={"molequle/kind": "action"},
        description=f"Run one configured Marketo action. Actions: {described}.",
    )
    def run_marketo_action(
        context: dg.OpExecutionContext,
        config: MarketoActionConfig,
        marketo: MarketoResource,
        lake: LakeResource,
    ) -> None:
        execute_action(context, settings, config, marketo, lake)

    @dg.job(
        name=ACTION_JOB,
        config=default_action_config(settings),
        tags={"molequle/kind": "action"},
        description="Trigger or schedule a Marketo smart campaign configured in the settings' actions, "
        "for people by lead id or unified id. Safe to re-execute: batches that succeeded are not resent.",
        metadata={"owners": OWNERS},
    )
    def run_marketo_action_job() -> None:
        run_marketo_action()

    return run_marketo_action_job
