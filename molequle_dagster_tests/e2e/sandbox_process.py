"""The Marketo sandbox in a child process of its own, as Marketo is to a deployment: the Dagster processes
reach it only over HTTP. The test keeps a pipe to it for what a real Marketo would not offer: the ground
truth (a snapshot of the instance's state) and the control surface (faults, counters, churn, bulk jobs).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any

from molequle_dagster.sandbox.model import InstanceState

STARTUP_TIMEOUT_S = 120.0  # generating the instance's data comes first; 300 people take a few seconds
CALL_TIMEOUT_S = 60.0


class SandboxCallError(RuntimeError):
    """A control call raised in the sandbox process; the message carries its traceback."""


def _serve(profile: str, people: int, programs: int, seed: int, conn: Connection) -> None:
    from molequle_dagster.sandbox.config import SandboxConfig
    from molequle_dagster.sandbox.server import SandboxServer

    config = SandboxConfig.for_profile(profile)  # type: ignore[arg-type]
    config.data.people = people
    config.data.programs = programs
    config.data.seed = seed
    client = config.clients[0]
    with SandboxServer(config, port=0) as server:
        conn.send(("ready", (server.base_url, client.client_id, client.client_secret)))
        handlers = {
            "control": lambda name, *a, **kw: getattr(server.control, name)(*a, **kw),
            "state": lambda: _state_fields(server.control.state),
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


class SandboxProcess:
    """`with SandboxProcess(people=300) as sandbox:` … `sandbox.base_url`, `sandbox.state()`,
    `sandbox.control.inject_fault(...)`, `sandbox.control.export_jobs()`."""

    def __init__(
        self, *, profile: str = "fast", people: int = 300, programs: int = 12, seed: int = 42
    ) -> None:
        self._args = (profile, people, programs, seed)
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

    def call(self, op: str, *args: Any, **kwargs: Any) -> Any:
        if self._conn is None:
            raise RuntimeError("the sandbox process is not running")
        with self._lock:
            self._conn.send((op, args, kwargs))
            if not self._conn.poll(CALL_TIMEOUT_S):
                raise SandboxCallError(f"sandbox call {op}{args} got no answer within {CALL_TIMEOUT_S:.0f} s")
            status, payload = self._conn.recv()
        if status == "error":
            raise SandboxCallError(f"sandbox call {op}{args} failed in the sandbox process:\n{payload}")
        return payload

    def state(self) -> InstanceState:
        """A snapshot of the instance's data, for the truth assertions (computed in the test process)."""
        return InstanceState(**self.call("state"))

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
