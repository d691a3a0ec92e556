#!/usr/bin/env bash
# The README's test command: install the project with its dev extra into .venv, then run the tests.
# The Dagster storage tests need PostgreSQL: if DAGSTER_PG_URL is not set and PostgreSQL 15 is installed,
# a throwaway server is started for the run (and stopped after).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[dev]'

if [ -z "${DAGSTER_PG_URL:-}" ] && [ -x "${PGBIN:-/usr/lib/postgresql/15/bin}/initdb" ] && [ "$(id -u)" = 0 ]; then
  # shellcheck source=scripts/pg_throwaway.sh
  source scripts/pg_throwaway.sh
  pg_throwaway_start
  trap pg_throwaway_stop EXIT INT TERM
fi
.venv/bin/python -m pytest "$@"
