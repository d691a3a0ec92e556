"""Issue 15 item 4: the definitions load with an s3:// lake and no network at all, as the UI, CI and
`dagster definitions validate` load them: nothing resolves a bucket's region, opens the lake or reaches
the coordination store at import. The proof is a process in a network namespace of its own (`unshare -n`:
not even loopback is up), where any connection attempt fails at once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from molequle_dagster_tests.e2e.processes import scrubbed_environ

BIN = Path(sys.executable).parent
UNSHARE = shutil.which("unshare")


def _offline(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    if UNSHARE is None or subprocess.run([UNSHARE, "-n", "true"], capture_output=True).returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("unshare -n is not available: CI must prove the definitions load with no network")
        pytest.skip("unshare -n is not available here (it needs root or user namespaces)")
    return subprocess.run(
        [UNSHARE, "-n", *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def _env(tmp_path: Path, lake_uri: str) -> dict[str, str]:
    """A production-like environment for our code: an S3 lake on AWS (no endpoint, no region: a region
    lookup would need the network), Celery chosen, no Marketo or AWS secrets at all. The Dagster instance
    is a local one (validate opens it; PostgreSQL would be Dagster's own I/O, not ours)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    return scrubbed_environ(
        DAGSTER_HOME=str(home),
        HOME=str(tmp_path),
        MOLEQULE_LAKE_URI=lake_uri,
        MOLEQULE_EXECUTOR="celery",
        MOLEQULE_CELERY_BROKER_URL="redis://redis.invalid:6379/0",
        AWS_EC2_METADATA_DISABLED="true",
    )


def test_definitions_validate_with_an_s3_lake_and_no_network(tmp_path: Path) -> None:
    env = _env(tmp_path, "s3://molequle-lake-that-nobody-owns/lake")
    validate = [str(BIN / "dagster"), "definitions", "validate", "-m", "molequle_dagster.definitions"]
    done = _offline(validate, env, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Validation successful" in done.stdout + done.stderr


def test_every_job_schedule_and_sensor_resolves_with_no_network(tmp_path: Path) -> None:
    """More than loading: every job resolves (asset graph, executor, resources' config) offline."""
    env = _env(tmp_path, "s3://molequle-lake-that-nobody-owns/lake?region=eu-west-1")
    script = (
        "from molequle_dagster.definitions import defs\n"
        "repository = defs.get_repository_def()\n"
        "jobs = [j.name for j in defs.resolve_all_job_defs()]\n"
        "print(len(jobs), len(repository.schedule_defs), len(repository.sensor_defs))\n"
    )
    done = _offline([sys.executable, "-c", script], env, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs, schedules, sensors = (int(n) for n in done.stdout.split())
    assert jobs >= 5 and schedules >= 2 and sensors >= 1, done.stdout
