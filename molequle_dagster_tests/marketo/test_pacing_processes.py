"""Four processes share one pacing budget through the coordination store (SQLite on one host, PostgreSQL
across hosts): together they never exceed it.

The sandbox enforces exactly our budget (20 calls / 2 s, 2 in flight) and answers 606/615 the moment it
is exceeded, so a clean request log is the proof; the log's per-second timestamps are checked too.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import tempfile
import textwrap
from collections import Counter
from pathlib import Path

from molequle_dagster.marketo.config import PacingConfig
from molequle_dagster.marketo.pacing import CrossProcessPacer
from molequle_dagster.sandbox.server import SandboxServer
from molequle_dagster_tests.coordination.backends import target
from molequle_dagster_tests.marketo.conftest import small_config

PROCESSES = 4
CALLS_EACH = 10
BUDGET, WINDOW_S, IN_FLIGHT = 20, 2.0, 2  # 4 processes > 2 slots: the slots must hold

CHILD = textwrap.dedent("""
    import sys
    from molequle_dagster.coordination import PostgresStore, open_store
    from molequle_dagster.marketo import MarketoClient, MarketoConfig, PacingConfig, RetryConfig
    base_url, target, schema, calls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    store = PostgresStore(target, schema=schema) if schema else open_store(target)
    pacing = PacingConfig(calls_per_20s=%d, window_s=%r, max_in_flight=%d)
    # Throttle retries are disabled: any 606/615 must surface as a failure, not be absorbed.
    config = MarketoConfig(base_url=base_url, pacing=pacing, retry=RetryConfig(throttle_attempts=0))
    client = MarketoClient(config, "molequle-sandbox", "sandbox-secret", store=store)
    for _ in range(calls):
        client.usage()
    print(client.stats.snapshot()["calls"].get("GET /rest/v1/stats/usage.json", 0))
""") % (BUDGET, WINDOW_S, IN_FLIGHT)


def test_four_processes_never_exceed_the_shared_budget(make_store) -> None:
    config = small_config()
    config.limits.rate_calls, config.limits.rate_window_s = BUDGET, WINDOW_S
    config.limits.max_in_flight = IN_FLIGHT
    repo = Path(__file__).resolve().parents[2]
    store = make_store("shared")
    home = Path(tempfile.mkdtemp(prefix="molequle-home-"))  # the children's HOME: must stay empty
    with SandboxServer(config, port=0) as server:
        # Every call is held 0.15 s on the server, so unpaced processes would overlap and get 615.
        server.control.inject_fault("GET /rest/v1/stats/usage.json", "slow", times=None, seconds=0.15)
        children = [
            subprocess.Popen([sys.executable, "-c", CHILD, server.base_url, *target(store), str(CALLS_EACH)],
                             cwd=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin", "HOME": str(home)})
            for _ in range(PROCESSES)
        ]
        outputs = [child.communicate(timeout=60) for child in children]
        log = [r for r in server.control.request_log() if r["path"] == "/rest/v1/stats/usage.json"]
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err[-2000:]
        assert out.strip() == str(CALLS_EACH)
    assert len(log) == PROCESSES * CALLS_EACH
    assert {r["status"] for r in log} == {200} and not [r for r in log if r["error_code"]]
    per_second = Counter(r["at"] for r in log)
    seconds = sorted(per_second)
    # Calls stamped in seconds k and k+1 all happened within one 2-second window.
    for a, b in itertools.pairwise(seconds):
        assert per_second[a] + (per_second[b] if _next_second(a) == b else 0) <= BUDGET
    # 40 calls at 20 per 2 s cannot finish in under one window: the pacer really waited.
    assert len(seconds) >= 2
    # Everything the processes shared lives in the store: nothing in their home or working directory.
    assert list(home.iterdir()) == []


def _next_second(stamp: str) -> str:
    from datetime import datetime, timedelta

    t = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ") + timedelta(seconds=1)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_pacer_admits_the_budget_then_waits(make_store) -> None:
    waits: list[float] = []
    pacer = CrossProcessPacer(make_store(), "http://x", PacingConfig(calls_per_20s=3, window_s=30.0),
                              sleep=lambda s: (waits.append(s), (_ for _ in ()).throw(TimeoutError()))[0])
    for _ in range(3):
        with pacer.call():
            pass
    try:
        with pacer.call():
            pass
    except TimeoutError:
        pass
    assert len(waits) == 1 and 29.0 < waits[0] <= 30.0  # the 4th call waits for the 1st to leave the window
