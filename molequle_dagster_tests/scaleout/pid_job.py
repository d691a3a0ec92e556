"""A two-step job that reports each step's process, for the executor test. In a module of its own, light to
import: with one process per step, every step's process imports it again to rebuild the job."""

from __future__ import annotations

import os

import dagster as dg

from molequle_dagster.execution import build_executor


@dg.op
def where_am_i() -> int:
    return os.getpid()


@dg.op
def and_me(first: int) -> tuple[int, int]:
    return first, os.getpid()


def pid_job() -> dg.JobDefinition:
    @dg.job(executor_def=build_executor({}))
    def pids() -> None:
        and_me(where_am_i())

    return pids
