"""Real processes for the end-to-end tests: a throwaway PostgreSQL, long-running servers with their logs,
and a polling helper with a deadline (the only way these tests wait: never a bare sleep)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TypeVar

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
POLL_S = 0.5


def wait_until(check: Callable[[], T | None], timeout: float, what: str, poll: float = POLL_S) -> T:
    """Call `check` until it returns something truthy and return that; fail naming `what` at the deadline.

    `check` may raise AssertionError to say why it is not ready yet: the last reason goes in the failure.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
        except AssertionError as reason:
            result, last = None, reason
        else:
            last = result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last}")
        time.sleep(poll)  # a poll interval, not synchronisation: the deadline bounds the wait


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrubbed_environ(**extra: str) -> dict[str, str]:
    """This process's environment without anything that configures Dagster, Marketo, Molequle or
    PostgreSQL (a developer's shell or CI's outer throwaway server must not leak in), plus `extra`."""
    prefixes = ("DAGSTER_", "MARKETO_", "MOLEQULE_", "PG")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(extra)
    return env


class Server:
    """A long-running child process in its own process group (so its children stop with it), its output
    in a log file under the test's temp dir."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path, log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.process = subprocess.Popen(
            argv, cwd=cwd, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def assert_alive(self) -> None:
        assert self.alive(), f"{self.name} exited with {self.process.returncode}:\n{self.tail()}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Ask the process group to stop (`sig`), then kill what is left of it after `timeout`."""
        if self.alive():
            self._signal_group(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
        self._signal_group(signal.SIGKILL)  # children that outlived their parent
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self._log.close()
        return self.process.returncode

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)  # the group this process leads (start_new_session)


class ThrowawayPostgres:
    """PostgreSQL 15 from scripts/pg_throwaway.sh (as the `postgres` system user; needs root)."""

    def __init__(self) -> None:
        self.env: dict[str, str] = {}  # DAGSTER_PG_HOST/PORT/USER/PASSWORD/DB for the Dagster processes
        self.root = ""  # the server's data dir, for pg_throwaway_stop

    @staticmethod
    def available() -> str | None:
        """Why it cannot run here, or None."""
        pgbin = Path(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"))
        if not (pgbin / "initdb").exists():
            return f"PostgreSQL 15 is not installed ({pgbin}/initdb missing)"
        if os.geteuid() != 0:
            return "scripts/pg_throwaway.sh runs PostgreSQL as the postgres user, which needs root"
        return None

    @staticmethod
    def _script_env(**extra: str) -> dict[str, str]:
        pgbin = {"PGBIN": os.environ["PGBIN"]} if "PGBIN" in os.environ else {}
        return scrubbed_environ(**pgbin, **extra)

    def start(self) -> ThrowawayPostgres:
        # A server of its own: CI's outer throwaway server (PGPORT/PGROOT exported) is left alone.
        script = "source scripts/pg_throwaway.sh && pg_throwaway_start >&2 && env -0"
        done = subprocess.run(
            ["bash", "-c", script], cwd=REPO, env=self._script_env(), capture_output=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_throwaway_start failed: {done.stderr.decode(errors='replace')[-2000:]}")
        pairs = (item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)
        exported = dict(pairs)
        self.env = {
            k: v for k, v in exported.items() if k.startswith("DAGSTER_PG_") and k != "DAGSTER_PG_URL"
        }
        self.root = exported["PGROOT"]
        return self

    def stop(self) -> None:
        if self.root:
            subprocess.run(
                ["bash", "-c", "source scripts/pg_throwaway.sh && pg_throwaway_stop"],
                cwd=REPO,
                env=self._script_env(PGROOT=self.root),
                timeout=60,
                check=False,
            )
            self.env, self.root = {}, ""


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, parents first (from /proc; Linux)."""
    tree, index = [pid], 0
    while index < len(tree):
        for task in Path(f"/proc/{tree[index]}/task").glob("*"):
            with contextlib.suppress(OSError):
                tree += [int(child) for child in (task / "children").read_text().split()]
        index += 1
    return tree


def kill_tree(pid: int) -> list[int]:
    """SIGKILL a process and everything it started, as a lost host or the OOM killer would."""
    tree = process_tree(pid)
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)
    return tree
