"""How a run executes its steps: one process per step (Dagster's default), all in the run's process, or on
Celery workers (dagster-celery, the package's `celery` extra; docs/scale-out.md).

Every job gets one executor, `molequle_executor`, whose run config picks the engine (the launchpad shows
the choice):

    execution:
      config:
        celery: {}        # or multiprocess: {max_concurrent: 4}, or in_process: {}

Without `execution` in the run config, `$MOLEQULE_EXECUTOR` (read when the definitions load; no I/O) picks
the engine: `multiprocess` (the default, as Dagster's), `in_process` or `celery`. Celery's broker and
result backend are `$MOLEQULE_CELERY_BROKER_URL` by default (a Redis URL such as redis://redis:6379/0),
resolved when a run starts, so a broker password never shows in a run's config. Marketo's limits hold
however steps are spread: every step on every worker shares the coordination store (PostgreSQL).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import dagster as dg

EXECUTOR_ENV = "MOLEQULE_EXECUTOR"
BROKER_ENV = "MOLEQULE_CELERY_BROKER_URL"
ENGINES = ("multiprocess", "in_process", "celery")
# Celery settings of ours on top of dagster-celery's; deploy/celery/worker.yaml gives workers the same
# (a test holds the two equal). Retry a broker that is not up yet; acknowledge a step when it is done, so a
# worker holds only the step it runs and a free worker takes the next one.
CELERY_SOURCE = {"broker_connection_retry_on_startup": True, "task_acks_late": True}


class ExecutorSettingError(ValueError):
    """$MOLEQULE_EXECUTOR names no engine, or one whose package is not installed."""


def _celery() -> dg.ExecutorDefinition | None:
    try:
        from dagster_celery import celery_executor
    except ImportError:  # the optional extra is not installed: the engine is not offered
        return None
    return celery_executor


def _engines() -> dict[str, dg.ExecutorDefinition]:
    engines = {"multiprocess": dg.multiprocess_executor, "in_process": dg.in_process_executor}
    if (celery := _celery()) is not None:
        engines["celery"] = celery
    return engines


def default_engine(environ: Mapping[str, str] = os.environ) -> str:
    chosen = environ.get(EXECUTOR_ENV, "").strip() or "multiprocess"
    if chosen not in ENGINES:
        raise ExecutorSettingError(f"{EXECUTOR_ENV}: expected one of {', '.join(ENGINES)}, got {chosen!r}")
    if chosen == "celery" and _celery() is None:
        raise ExecutorSettingError(
            f"{EXECUTOR_ENV}=celery: dagster-celery is not installed; install the package's celery extra "
            "(pip install 'molequle-dagster[celery]')"
        )
    return chosen


def _default_config(engine: str) -> dict[str, Any]:
    if engine == "celery":
        return {"celery": {"broker": {"env": BROKER_ENV}, "backend": {"env": BROKER_ENV},
                           "config_source": dict(CELERY_SOURCE)}}  # fmt: skip
    return {engine: {}}


def _requirements(engines: Mapping[str, dg.ExecutorDefinition]) -> Callable[[Mapping[str, Any]], Any]:
    def requirements(config: Mapping[str, Any]) -> Any:
        ((engine, sub_config),) = config.items()
        return engines[engine].get_requirements(sub_config or {})

    return requirements


def build_executor(environ: Mapping[str, str] = os.environ) -> dg.ExecutorDefinition:
    """The executor every job runs with; its run config chooses the engine (default: see the module)."""
    engines = _engines()
    selector = dg.Selector({name: engine.config_schema.as_field() for name, engine in engines.items()})

    @dg.executor(
        name="molequle_executor",
        config_schema=dg.Field(selector, default_value=_default_config(default_engine(environ))),
        requirements=_requirements(engines),
    )
    def molequle_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
        ((engine, sub_config),) = init_context.executor_config.items()
        chosen = engines[engine]
        return chosen.executor_creation_fn(  # type: ignore[misc]
            dg.InitExecutorContext(
                job=init_context.job,
                executor_def=chosen,
                executor_config=sub_config or {},
                instance=init_context.instance,
            )
        )

    return molequle_executor
