"""Failures raised on purpose are never relaunched by the instance's run retries.

Production enables `run_retries` (deploy/production/dagster.yaml) so that a run whose worker died, or whose
step failed transiently after its own retries, is relaunched. Some failures are raised on purpose because
repeating the run cannot help and may hurt: the daily quota is used up (retrying only burns more of the
customer's quota before the reset), the credentials are wrong, Marketo refuses the request itself, or an
action's input is invalid. `dg.Failure(allow_retries=False)` stops the step's own RetryPolicy, but not the
run-retry daemon: it relaunches any failed run unless the run says otherwise.

Dagster's documented run tag `dagster/retry_on_asset_or_op_failure=false` says otherwise: when the run then
fails because of a step failure, Dagster records `dagster/will_retry=false` and the daemon leaves it alone.
The tag is set on the running run just before the step raises, so it only affects runs that failed on
purpose; a run whose worker dies is still relaunched (that failure is not a step failure).
"""

from __future__ import annotations

import dagster as dg

# Dagster's run tag (since 1.7.9) overriding run_retries.retry_on_asset_or_op_failure for one run.
RETRY_ON_STEP_FAILURE_TAG = "dagster/retry_on_asset_or_op_failure"


def mark_run_not_retried(context: dg.OpExecutionContext | dg.AssetExecutionContext | None = None) -> bool:
    """Tag the current run so that the run-retry daemon does not relaunch it when it fails.

    `context` defaults to the step that is executing. Returns False outside a run (a direct call of the
    function, as unit tests do), where there is no run to tag and no daemon to relaunch it.
    """
    if context is None:
        try:
            context = dg.OpExecutionContext.get()
        except dg.DagsterInvariantViolationError:
            return False
    run = context.run
    if run.tags.get(RETRY_ON_STEP_FAILURE_TAG) != "false":
        context.instance.add_run_tags(run.run_id, {RETRY_ON_STEP_FAILURE_TAG: "false"})
    return True
