"""Runs the sandbox over real HTTP: in a background thread on an ephemeral port (tests), or in the
foreground for the CLI (`molequle sandbox`)."""

from __future__ import annotations

import socket
import threading
import time
from datetime import datetime
from types import TracebackType

import uvicorn

from molequle_dagster.sandbox.app import build_context, create_app
from molequle_dagster.sandbox.clock import SandboxClock
from molequle_dagster.sandbox.config import SandboxConfig
from molequle_dagster.sandbox.context import SandboxContext
from molequle_dagster.sandbox.control import SandboxControl
from molequle_dagster.sandbox.model import InstanceState

STARTUP_TIMEOUT_S = 15.0


def generate_state(config: SandboxConfig, now: datetime) -> InstanceState:
    """The instance's data from the generator (built in parallel); an empty instance until it lands."""
    try:
        from molequle_dagster.sandbox.generator import generate
    except ImportError:
        from molequle_dagster.sandbox.control import empty_state

        return empty_state(config.data.seed, now)
    return generate(config.data, now)


class SandboxServer:
    """`with SandboxServer(config) as sandbox:` … `sandbox.base_url`, `sandbox.control`."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        now: datetime | None = None,
        state: InstanceState | None = None,
    ) -> None:
        self.config = config if config is not None else SandboxConfig.for_profile("fast")
        clock = SandboxClock(frozen_at=now)
        instance = state if state is not None else generate_state(self.config, clock.now())
        self.context: SandboxContext = build_context(self.config, instance, clock)
        self.control = SandboxControl(self.context)
        self._host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.base_url = ""

    def start(self) -> SandboxServer:
        if self._thread is not None:
            return self
        # Bind before the thread starts so the port is known and connections queue up immediately.
        self._socket = socket.create_server((self._host, self._port), backlog=256)
        port = self._socket.getsockname()[1]
        self.base_url = f"http://{self._host}:{port}"
        self._server = uvicorn.Server(_uvicorn_config(create_app(self.context), self._host, port))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name=f"sandbox-{port}", daemon=True
        )
        self._thread.start()
        if not _wait_started(self._server, self._thread):
            self.stop()
            raise RuntimeError(f"sandbox server did not start on {self.base_url} within {STARTUP_TIMEOUT_S}s")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self.context.faults.clear()  # releases held "slow" responses so shutdown is quick
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server, self._thread, self._socket = None, None, None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _uvicorn_config(app: object, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=2,
        backlog=256,
    )


def _wait_started(server: uvicorn.Server, thread: threading.Thread) -> bool:
    """uvicorn exposes no start event, so poll its flag briefly (startup only, never in tests' logic)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while thread.is_alive() and not server.started and time.monotonic() < deadline:
        time.sleep(0.005)
    return server.started


def serve_forever(config: SandboxConfig, host: str, port: int) -> None:
    """Foreground server for the CLI; Ctrl-C stops it."""
    clock = SandboxClock()
    context = build_context(config, generate_state(config, clock.now()), clock)
    uvicorn.Server(_uvicorn_config(create_app(context), host, port)).run()
