"""A small multi-host deployment on one machine, as real processes: PostgreSQL (the Dagster instance and
the coordination store), Redis (the Celery broker), moto's S3 server (the lake), the Marketo sandbox, and
N dagster-celery workers, each with its own DAGSTER_HOME, HOME and TMPDIR, as separate hosts would have.
Runs are started the production way for a run worker: `dagster job execute` in a process of its own (its
own DAGSTER_HOME too), whose Celery executor hands every step to the workers.

The test process sees what an operator sees: the Dagster instance (PostgreSQL), the lake (S3), the
sandbox's truth and counters, and every process's log.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from molequle_dagster.lake import Lake
from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.process import SandboxProcess
from molequle_dagster_tests.conftest import fast_settings_dict
from molequle_dagster_tests.e2e import processes
from molequle_dagster_tests.e2e.processes import Server, wait_until
from molequle_dagster_tests.lake.s3_server import S3Server

BIN = Path(sys.executable).parent
PRODUCTION_CONFIG = processes.REPO / "deploy" / "production" / "dagster.yaml"
WORKER_CONFIG = (
    processes.REPO / "deploy" / "celery" / "worker.yaml"
)  # the shipped file, as docs/scale-out.md runs it
REDIS_SERVER = Path("/usr/bin/redis-server")
BUCKET = "molequle-lake"
WORKER_START_TIMEOUT_S = 120.0
RUN_TIMEOUT_S = 300.0
SCALEOUT_TAG = "molequle-scaleout/step"  # on every run the harness starts, to find it in the instance


def scaleout_instance_config() -> dict[str, Any]:
    """deploy/production/dagster.yaml, with compute logs kept off local disks: on several hosts a step's
    logs would land on whichever host ran it (docs/scale-out.md puts them in object storage)."""
    config = yaml.safe_load(PRODUCTION_CONFIG.read_text())
    config["compute_logs"] = {
        "module": "dagster._core.storage.noop_compute_log_manager",
        "class": "NoOpComputeLogManager",
    }
    return config


@dataclass
class Host:
    """What one host of the deployment owns: its Dagster home, home directory and temp dir."""

    name: str
    root: Path

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def home(self) -> Path:
        return self.root / "home"

    def make(self, instance_config: Mapping[str, Any]) -> Host:
        for path in (self.dagster_home, self.tmp, self.home):
            path.mkdir(parents=True)
        (self.dagster_home / "dagster.yaml").write_text(yaml.safe_dump(dict(instance_config)))
        return self

    def env(self) -> dict[str, str]:
        return {"DAGSTER_HOME": str(self.dagster_home), "TMPDIR": str(self.tmp), "HOME": str(self.home)}

    def files(self) -> list[str]:
        """Every file this host's processes left, relative to its root, sorted."""
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())


@dataclass
class RunOutcome:
    run_id: str
    status: str
    seconds: float
    log: str  # the orchestrating process's output


@dataclass
class Cluster:
    root: Path
    settings: dict[str, Any]
    sandbox: SandboxProcess
    s3: S3Server
    lake_uri: str
    broker_url: str
    env: dict[str, str]  # what every Dagster process gets besides its host's own variables
    workers: list[Server] = field(default_factory=list)
    hosts: list[Host] = field(default_factory=list)
    servers: list[Server] = field(default_factory=list)
    runs: list[RunOutcome] = field(default_factory=list)
    _steps: int = 0
    _instance: dg.DagsterInstance | None = None

    @property
    def instance(self) -> dg.DagsterInstance:
        """The Dagster instance (PostgreSQL) as the operator's host sees it."""
        if self._instance is None:
            host = Host("operator", self.root / "operator").make(scaleout_instance_config())
            self._instance = dg.DagsterInstance.from_config(str(host.dagster_home))
        return self._instance

    @property
    def pg_url(self) -> str:
        """The instance's database, for reading what Dagster and the coordination store keep there."""
        e = self.env
        return (
            f"postgresql://{e['DAGSTER_PG_USER']}:{e['DAGSTER_PG_PASSWORD']}@{e['DAGSTER_PG_HOST']}:"
            f"{e['DAGSTER_PG_PORT']}/{e['DAGSTER_PG_DB']}"
        )

    @property
    def lake(self) -> Lake:
        """The lake as the test reads it (the caller's environment must hold the S3 credentials)."""
        return Lake(self.lake_uri)

    def run_job(self, job: str, tags: Mapping[str, str], timeout: float = RUN_TIMEOUT_S) -> RunOutcome:
        """`dagster job execute` on a host of its own; returns when the run is over (any outcome)."""
        self._steps += 1
        host = Host(f"orchestrator-{self._steps}", self.root / f"orchestrator-{self._steps}")
        host.make(scaleout_instance_config())
        self.hosts.append(host)
        all_tags = {**tags, SCALEOUT_TAG: str(self._steps)}
        argv = [str(BIN / "dagster"), "job", "execute", "-m", "molequle_dagster.definitions", "-j", job]
        argv += ["--tags", json.dumps(all_tags)]
        started = time.monotonic()
        done = subprocess.run(
            argv,
            cwd=host.root,
            env={**self.env, **host.env()},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        seconds = time.monotonic() - started
        log = done.stdout + done.stderr
        (host.root / "orchestrator.log").write_text(log)
        for worker in self.workers:
            worker.assert_alive()
        runs = self.instance.get_runs(filters=dg.RunsFilter(tags={SCALEOUT_TAG: str(self._steps)}))
        assert len(runs) == 1, f"{job}: expected one run, found {len(runs)}; its output:\n{log[-3000:]}"
        outcome = RunOutcome(runs[0].run_id, runs[0].status.value, seconds, log)
        self.runs.append(outcome)
        return outcome

    def logs(self) -> dict[str, str]:
        """Every process's output so far: workers, servers, orchestrators."""
        texts = {s.name: s.log_path.read_text(errors="replace") for s in [*self.servers, *self.workers]}
        for host in self.hosts:
            log = host.root / "orchestrator.log"
            if log.exists():
                texts[host.name] = log.read_text(errors="replace")
        return texts


def _redis_answers(server: Server, port: int) -> bool:
    import redis

    server.assert_alive()
    try:
        return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping())
    except redis.ConnectionError:
        return False


def _workers_answer(broker_url: str, names: list[str]) -> bool:
    from celery import Celery

    app = Celery("probe", broker=broker_url, backend=broker_url)
    try:
        replies = app.control.ping(timeout=1.0) or []
    finally:
        app.close()
    answered = {name.split("@")[0] for reply in replies for name in reply}
    assert answered >= set(names), f"workers answering: {sorted(answered)}"
    return True


@contextmanager
def open_cluster(
    root: Path,
    *,
    workers: int = 2,
    people: int = 300,
    programs: int = 12,
    settings_overrides: Mapping[str, Any] | None = None,
    sandbox_overrides: dict[str, dict[str, Any]] | None = None,
) -> Iterator[Cluster]:
    """Start everything under `root`; stop everything on exit. While it is open, this process's environment
    holds the PostgreSQL and S3 variables, so `cluster.instance` and `cluster.lake` work here."""
    with ExitStack() as stack:
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        logs = root / "logs"
        logs.mkdir(parents=True)
        postgres = processes.ThrowawayPostgres().start()
        stack.callback(postgres.stop)
        for name, value in postgres.env.items():
            mp.setenv(name, value)
        servers: list[Server] = []
        stack.callback(lambda: [s.stop() for s in reversed(servers)])

        redis_port = processes.free_port()
        redis_dir = root / "redis"
        redis_dir.mkdir()
        # No persistence: the broker's queue lives as long as the test.
        argv = [str(REDIS_SERVER), "--port", str(redis_port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(redis_dir)]
        redis = Server("redis", argv, processes.scrubbed_environ(), redis_dir, logs)
        servers.append(redis)
        wait_until(lambda: _redis_answers(redis, redis_port), 30, "redis-server to answer", poll=0.1)
        broker_url = f"redis://127.0.0.1:{redis_port}/0"

        s3 = S3Server(logs)
        servers.append(s3.process)
        s3.create_bucket(BUCKET)
        for name, value in s3.env.items():
            mp.setenv(name, value)
        lake_uri = s3.uri(BUCKET, "lake")

        # Workers start while the sandbox generates its data: they read the settings at their first step.
        client = SandboxConfig.for_profile("fast").clients[0]  # the sandbox's API user, as it will serve it
        settings_path = root / "settings.yaml"
        env = processes.scrubbed_environ(
            **postgres.env,
            **s3.env,
            MOLEQULE_SETTINGS=str(settings_path),
            MOLEQULE_LAKE_URI=lake_uri,
            MOLEQULE_EXECUTOR="celery",
            MOLEQULE_CELERY_BROKER_URL=broker_url,
            MARKETO_CLIENT_ID=client.client_id,
            MARKETO_CLIENT_SECRET=client.client_secret,
        )
        worker_processes: list[Server] = []
        stack.callback(lambda: [w.stop() for w in reversed(worker_processes)])
        names = [f"worker{i + 1}" for i in range(workers)]
        hosts = [Host(name, root / name).make(scaleout_instance_config()) for name in names]
        for host in hosts:
            # One step at a time per worker; mingle and gossip only slow a worker's start here.
            argv = [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app"]
            argv += ["-y", str(WORKER_CONFIG), "-n", host.name, "--"]
            argv += ["--concurrency=1", "--without-mingle", "--without-gossip"]
            # PATH: `dagster-celery worker start` runs `celery` from the venv
            worker_env = {**env, **host.env(), "PATH": f"{BIN}:{env.get('PATH', '')}"}
            worker_processes.append(Server(host.name, argv, worker_env, host.root, logs))

        sandbox = stack.enter_context(
            SandboxProcess(people=people, programs=programs, overrides=sandbox_overrides)
        )
        assert (sandbox.client_id, sandbox.client_secret) == (client.client_id, client.client_secret)
        settings = fast_settings_dict(marketo__base_url=sandbox.base_url, **(settings_overrides or {}))
        settings_path.write_text(yaml.safe_dump(settings, sort_keys=False))
        cluster = Cluster(root, settings, sandbox, s3, lake_uri, broker_url, env, worker_processes, hosts)
        cluster.servers = servers
        stack.callback(lambda: cluster._instance.dispose() if cluster._instance else None)
        wait_until(
            lambda: (
                all(w.assert_alive() is None for w in cluster.workers) and _workers_answer(broker_url, names)
            ),
            WORKER_START_TIMEOUT_S,
            f"{workers} celery workers to answer a ping",
        )
        yield cluster
