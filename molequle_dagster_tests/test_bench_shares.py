"""The first-sync benchmark's Dagster/project shares are shares of the sync's wall time: the main thread
of the sync's process only, its waits on a side-by-side run's step processes split the way those spent
their time; other threads, the sandbox and the benchmark's parent left out."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
PHASE = 'process 10:"python scripts/bench_first_sync.py --phase"'
PARENT = 'process 9:"python scripts/bench_first_sync.py --people 100000"'
# A command line with ";" in it, as multiprocessing's spawned processes have.
STEP = 'process 11:"python -c from multiprocessing.spawn import spawn_main; spawn_main(pipe_handle=6)"'
FORKSERVER = 'process 13:"python -c from multiprocessing.forkserver import main; main(11, 12, [])"'
FORKED = 'process 14:"python -c from multiprocessing.forkserver import main; main(11, 12, [])"'
TRACKER = 'process 12:"python -c from multiprocessing.resource_tracker import main;main(3)"'
OUR = "sync_activity_days (molequle_dagster/assets/activities.py:300)"
DAGSTER = "store_event (dagster/_core/instance/__init__.py:10)"
EXECUTOR = "execute (dagster/_core/executor/multiprocess.py:200)"


def load_bench():
    sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location("bench_first_sync", SCRIPTS / "bench_first_sync.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shares_count_the_sync_main_thread_and_split_its_waits_on_step_processes(tmp_path) -> None:
    lines = [
        f"{PARENT};thread (9): MainThread;<module> (bench_first_sync.py:1);wait (subprocess.py:1) 500",
        f"{PARENT};{PHASE};thread (10): MainThread;<module> (bench_first_sync.py:1);{DAGSTER};{OUR} 10",
        f"{PARENT};{PHASE};thread (10): MainThread;<module> (bench_first_sync.py:1);{DAGSTER} 20",
        f"{PARENT};{PHASE};thread (10): MainThread;<module> (bench_first_sync.py:1);{EXECUTOR} 40",
        f"{PARENT};{PHASE};thread (13): Thread-1;Thread._bootstrap (threading.py:1);{DAGSTER} 900",
        f"{PARENT};{PHASE};{STEP};thread (11): MainThread;<module> (<string>:1);{DAGSTER};{OUR} 2",
        f"{PARENT};{PHASE};{STEP};thread (11): MainThread;<module> (<string>:1);{DAGSTER} 1",
        f"{PARENT};{PHASE};{STEP};Thread._bootstrap (threading.py:1);Queue._feed (queues.py:1) 600",
        f"{PARENT};{PHASE};{STEP} 3",  # a step process starting (no Python frames yet): the executor's
        f"{PARENT};{PHASE};{FORKSERVER};thread (13): MainThread;main (forkserver.py:1) 300",
        f"{PARENT};{PHASE};{FORKSERVER};{FORKED};thread (14): MainThread;<module> (<string>:1);{DAGSTER} 2",
        f"{PARENT};{PHASE};{TRACKER};thread (12): MainThread;<module> (<string>:1);main (x.py:1) 700",
        f'{PARENT};process 8:"python scripts/bench_scale.py serve_sandbox";thread (8);{OUR} 800',
    ]
    profile = tmp_path / "p.txt"
    profile.write_text("\n".join(lines) + "\n")
    shares = load_bench().time_shares(profile)
    # wall: 70 main-thread samples; 40 of them waiting on the steps, split 2:6 project:dagster
    assert shares["wall_samples"] == 70 and shares["waiting_samples"] == 40
    assert shares["project"] == round((10 + 10) / 70, 3)
    assert shares["dagster"] == round((20 + 30) / 70, 3)
