#!/usr/bin/env bash
# The Debian packages the tests need, installed only when missing (CI and a new machine alike; needs root):
# PostgreSQL 15 for the storage and end-to-end tests, Chromium for the UI smoke test (driven by Playwright
# through its executable path: Playwright never downloads a browser here), Redis as the Celery broker of the
# scale-out test (the test starts its own server on loopback; the package's service is never used).
set -euo pipefail
missing=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  echo "installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
