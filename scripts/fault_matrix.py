"""The reliability matrix: every fault kind the sandbox offers at 1% and 10%, the rare bulk families on
scripted positions, and kill -9 of the sync at each phase, over an initial sync, churn and two ticks; each
row's lake compared with the fault-free run's. Writes the results table into docs/reliability.md.

    .venv/bin/python scripts/fault_matrix.py                      # the whole matrix (about an hour)
    .venv/bin/python scripts/fault_matrix.py --only kill --jobs 2  # rows whose name contains "kill"
    .venv/bin/python scripts/fault_matrix.py --ci                 # the CI subset

The machinery is `molequle_dagster_tests/reliability/matrix.py` (what a row runs and checks).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the machinery lives beside the tests, which are not an installed package

from molequle_dagster_tests.reliability.matrix import (  # noqa: E402
    Row,
    Scenario,
    ci_configurations,
    full_configurations,
    run_matrix,
)

DOC = REPO / "docs" / "reliability.md"
START, END = "<!-- fault-matrix:start -->", "<!-- fault-matrix:end -->"


def table(rows: list[Row], scenario: Scenario, seconds: float, command: str) -> str:
    passed = sum(row.ok for row in rows)
    lines = [
        f"{passed} of {len(rows)} configurations passed every check ({scenario.people} people, "
        f"{scenario.history_days} days of history, initial sync then {scenario.ticks} times churn "
        f"{scenario.churn:.0%} and a tick; {seconds / 60:.0f} min on the project's 2-core machine, shared). "
        f"Command: `{command}`.",
        "",
        "| configuration | fired | lake | exports | exported twice | orphans | phases failed | notes |",
        "|---|---:|---|---:|---|---|---|---|",
    ]
    for row in rows:
        cells = [
            row.name,
            str(row.fired),
            row.lake,
            str(row.exports),
            "; ".join(row.exported_twice) or "none",
            "; ".join(row.orphans) or "none",
            "; ".join(row.failed_phases) or "none",
            "; ".join(row.notes),
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    if START not in doc or END not in doc:
        raise SystemExit(f"{DOC}: expected the markers {START} and {END} around the results table")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=Scenario.people)
    parser.add_argument("--history-days", type=int, default=Scenario.history_days)
    parser.add_argument("--ticks", type=int, default=Scenario.ticks)
    parser.add_argument("--jobs", type=int, default=2, help="configurations run at once")
    parser.add_argument("--only", action="append", default=[], help="run rows whose name contains this")
    parser.add_argument("--ci", action="store_true", help="the CI subset")
    parser.add_argument("--no-doc", action="store_true", help="print the table, leave docs/ alone")
    parser.add_argument("--work-dir", type=Path, help="keep each row's lake and instance here")
    args = parser.parse_args()
    configurations = ci_configurations() if args.ci else full_configurations()
    if args.only:
        configurations = [c for c in configurations if any(part in c.name for part in args.only)]
    if not configurations:
        raise SystemExit("--only: no configuration matches")
    scenario = Scenario(people=args.people, history_days=args.history_days, ticks=args.ticks)
    root = args.work_dir or Path(tempfile.mkdtemp(prefix="molequle-faults-"))
    started = time.monotonic()
    _, rows = run_matrix(configurations, scenario, root, jobs=args.jobs, progress=print)
    seconds = time.monotonic() - started
    command = "scripts/fault_matrix.py " + " ".join(sys.argv[1:])
    text = table(rows, scenario, seconds, command.strip())
    (root / "results.json").write_text(json.dumps([{**row.__dict__, "ok": row.ok} for row in rows], indent=1))
    print(text)
    if not args.no_doc and not args.only and not args.ci:
        write_doc(text)
    sys.exit(0 if all(row.ok for row in rows) else 1)


if __name__ == "__main__":
    main()
