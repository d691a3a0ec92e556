"""The Marketo sandbox in a child process of its own, as Marketo is to a deployment: the processes under
test reach it only over HTTP, and killing them (kill -9) leaves it serving. The caller keeps a pipe to it
for what a real Marketo would not offer: the ground truth (a snapshot of the instance's state) and the
control surface (faults, counters, churn, clock, bulk jobs). Used by the end-to-end tests, the reliability
matrix (scripts/fault_matrix.py) and scripts/bench_scale.py.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading
import traceback
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.model import InstanceState

STARTUP_TIMEOUT_S = 120.0  # generating the instance's data comes first; 300 people take a few seconds
CALL_TIMEOUT_S = 60.0


class SandboxCallError(RuntimeError):
    """A control call raised in the sandbox process; the message carries its traceback."""


def _serve(config_data: dict[str, Any], now: datetime | None, conn: Connection) -> None:
    from molequle_dagster.sandbox.config import SandboxConfig
    from molequle_dagster.sandbox.server import SandboxServer

    config = SandboxConfig.model_validate(config_data)
    client = config.clients[0]
    with SandboxServer(config, port=0, now=now) as server:
        conn.send(("ready", (server.base_url, client.client_id, client.client_secret)))
        handlers = {
            "control": lambda name, *a, **kw: getattr(server.control, name)(*a, **kw),
            "state": lambda: _state_fields(server.control.state),
            "bulk_jobs": lambda: server.context.bulk.jobs_truth(),
            "sizes": lambda: _sizes(server.control.state),
        }
        while True:
            try:
                op, args, kwargs = conn.recv()
            except EOFError:  # the test process went away: stop serving
                return
            if op == "stop":
                conn.send(("ok", None))
                return
            try:
                conn.send(("ok", handlers[op](*args, **kwargs)))
            except Exception:
                conn.send(("error", traceback.format_exc()))


def _sizes(state: InstanceState) -> dict[str, int]:
    """Rows per table of the instance (cheap, unlike a whole snapshot at a million people)."""
    with state.lock:
        return {
            f.name: value.num_rows
            for f in dataclasses.fields(state)
            if hasattr(value := getattr(state, f.name), "num_rows")
        }


def _state_fields(state: InstanceState) -> dict[str, Any]:
    """The state's fields, taken under its lock (tables are immutable; lists are copied), minus the lock."""
    with state.lock:
        return {
            f.name: list(value) if isinstance(value := getattr(state, f.name), list) else value
            for f in dataclasses.fields(state)
            if f.name != "lock"
        }


class _ControlProxy:
    """`sandbox.control.apply_churn(...)`: SandboxControl's methods, called in the sandbox process."""

    def __init__(self, sandbox: SandboxProcess) -> None:
        self._sandbox = sandbox

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self._sandbox.call("control", name, *args, **kwargs)

    def wait_for_fault(self, index: int, fired: int = 1, timeout: float = 120.0) -> bool:
        """Block until fault rule `index` has fired `fired` times (False after `timeout` seconds)."""
        return self._sandbox.call(
            "control", "wait_for_fault", index, fired, timeout, timeout_s=timeout + CALL_TIMEOUT_S
        )


class SandboxProcess:
    """`with SandboxProcess(people=300) as sandbox:` … `sandbox.base_url`, `sandbox.state()`,
    `sandbox.control.inject_fault(...)`, `sandbox.bulk_jobs()`. `config` (a whole SandboxConfig) wins over
    profile/people/programs/seed; `now` freezes the sandbox's clock at that instant."""

    def __init__(
        self,
        *,
        profile: str = "fast",
        people: int = 300,
        programs: int = 12,
        seed: int = 42,
        config: SandboxConfig | None = None,
        now: datetime | None = None,
        overrides: dict[str, dict[str, Any]] | None = None,  # e.g. {"bulk": {"job_overhead_s": 2.0}}
    ) -> None:
        if config is None:
            config = SandboxConfig.for_profile(profile)  # type: ignore[arg-type]
            config.data.people = people
            config.data.programs = programs
            config.data.seed = seed
        for section, values in (overrides or {}).items():  # after the profile's own values
            for name, value in values.items():
                setattr(getattr(config, section), name, value)
        self._args = (config.model_dump(), now)
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._lock = threading.Lock()  # one call at a time on the pipe
        self.base_url = ""
        self.client_id = ""
        self.client_secret = ""
        self.control = _ControlProxy(self)

    def start(self) -> SandboxProcess:
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing shared with the test
        parent, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve, args=(*self._args, child), name="marketo-sandbox")
        self._process.start()
        child.close()
        self._conn = parent
        try:
            if not parent.poll(STARTUP_TIMEOUT_S):
                raise RuntimeError(f"the sandbox process did not come up within {STARTUP_TIMEOUT_S:.0f} s")
            status, payload = parent.recv()
        except EOFError:
            status, payload = "died", f"exit code {self._process.exitcode} (its traceback is on stderr)"
        except BaseException:
            self.stop()
            raise
        if status != "ready":
            self.stop()
            raise SandboxCallError(f"the sandbox process failed to start: {payload}")
        self.base_url, self.client_id, self.client_secret = payload
        return self

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def call(self, op: str, *args: Any, timeout_s: float = CALL_TIMEOUT_S, **kwargs: Any) -> Any:
        """One operation in the sandbox process; `timeout_s` bounds the wait for its answer (raise it for a
        call that blocks on purpose, such as `wait_for_fault`)."""
        if self._conn is None:
            raise RuntimeError("the sandbox process is not running")
        with self._lock:
            self._conn.send((op, args, kwargs))
            if not self._conn.poll(timeout_s):
                raise SandboxCallError(f"sandbox call {op}{args} got no answer within {timeout_s:.0f} s")
            status, payload = self._conn.recv()
        if status == "error":
            raise SandboxCallError(f"sandbox call {op}{args} failed in the sandbox process:\n{payload}")
        return payload

    def state(self) -> InstanceState:
        """A snapshot of the instance's data, for the truth assertions (computed in the test process)."""
        return InstanceState(**self.call("state"))

    def sizes(self) -> dict[str, int]:
        """Rows per table of the instance (people, activities, memberships, …)."""
        return self.call("sizes")

    def bulk_jobs(self) -> list[dict[str, Any]]:
        """Every bulk export job as it really is (entity, filter, status), oldest first."""
        return self.call("bulk_jobs")

    def stop(self) -> None:
        if self._conn is not None:
            try:
                with self._lock:
                    self._conn.send(("stop", (), {}))
                    self._conn.poll(10)
            except (BrokenPipeError, EOFError, OSError):
                pass
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.join(timeout=15)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(timeout=5)
            self._process = None

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
