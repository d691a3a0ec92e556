"""`molequle sync`'s first sync with the package's definitions against a Marketo that takes minutes per
export (the sandbox's `marketo` profile on its virtual clock): its steps run side by side, one process
each, as under the daemon, so the people and today's activities exports are processed at once; never more
than Marketo's 2 processing nor our queue share of 4 waiting."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from molequle_dagster import clock
from molequle_dagster.cli import EMBEDDED_DAGSTER_YAML
from molequle_dagster.lake import Lake
from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.conftest import fast_settings_dict, point_env_at
from molequle_dagster_tests.reliability.matrix import REPO
from molequle_dagster_tests.test_first_sync import most_at_once

# The sync in a process of its own: the package's definitions load from the environment there, as in
# `molequle sync` (this process may hold definitions built from other settings).
SYNC = """
import json
from molequle_dagster.sync_runner import run_sync
report = run_sync(max_runs=1, onboarding_only=True, log_level="ERROR")
print(json.dumps({"success": report.success, "failures": report.failures, "runs": report.runs}))
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_the_first_sync_exports_people_and_activities_side_by_side(tmp_path: Path) -> None:
    config = SandboxConfig.for_profile("marketo")
    config.data.people = 150
    config.data.programs = 3
    settings = fast_settings_dict(marketo__bulk__poll_interval_s=60, sync__history_days=20)
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump(settings))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "dagster.yaml").write_text(EMBEDDED_DAGSTER_YAML)
    with SandboxServer(config, port=0) as sandbox, pytest.MonkeyPatch.context() as mp:
        point_env_at(mp, sandbox, config, tmp_path)
        mp.setenv("MOLEQULE_SETTINGS", str(tmp_path / "settings.yaml"))
        mp.setenv("DAGSTER_HOME", str(tmp_path / "home"))
        mp.setenv("PYTHONPATH", str(REPO))
        mp.setenv(clock.VIRTUAL_CLOCK_ENV, sandbox.base_url)
        sync = [sys.executable, "-c", SYNC]
        done = subprocess.run(sync, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["success"], report["failures"]
        jobs = [j for j in sandbox.control.export_jobs() if j["apiUser"] != "other@sandbox"]
    assert Lake(str(tmp_path / "lake")).read_current("marketo_program_members") is not None
    ended = [j for j in jobs if j.get("finishedAt") and j.get("startedAt")]
    people = next(j for j in ended if "smartList" in j["filter"])
    today = next(j for j in ended if j["entity"] == "activities")
    # processed at once: each started before the other finished (one after the other, they could not)
    assert at(people["startedAt"]) < at(today["finishedAt"])
    assert at(today["startedAt"]) < at(people["finishedAt"])
    assert most_at_once([(at(j["startedAt"]), at(j["finishedAt"])) for j in ended]) == 2
    assert most_at_once([(at(j["queuedAt"]), at(j["finishedAt"])) for j in ended if j.get("queuedAt")]) <= 4
