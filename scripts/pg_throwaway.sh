#!/usr/bin/env bash
# A throwaway PostgreSQL 15 on 127.0.0.1 for the Dagster storage tests (PostgreSQL refuses to run as root,
# so it runs as its own system user). Source this file, then call pg_throwaway_start / pg_throwaway_stop.
# Exports DAGSTER_PG_URL and DAGSTER_PG_* variables. The URL names the driver (postgresql+psycopg2://…):
# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed (dagster-postgres brings
# psycopg2).

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PGUSER_OS=${PGUSER_OS:-postgres}

pg_throwaway_start() {
  # runuser keeps the caller's cwd, which the server user may not be allowed to enter
  pushd / >/dev/null
  id "$PGUSER_OS" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PGUSER_OS"
  PGROOT=$(mktemp -d /tmp/molequle-pg.XXXXXX)
  PGPORT=${PGPORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
  chown "$PGUSER_OS" "$PGROOT"
  echo dagster > "$PGROOT/pwfile"; chown "$PGUSER_OS" "$PGROOT/pwfile"
  runuser -u "$PGUSER_OS" -- "$PGBIN/initdb" -D "$PGROOT/data" -U dagster --pwfile="$PGROOT/pwfile" \
      --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >/dev/null
  runuser -u "$PGUSER_OS" -- "$PGBIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGROOT" start >/dev/null
  PGPASSWORD=dagster "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U dagster dagster
  export PGROOT PGPORT
  export DAGSTER_PG_HOST=127.0.0.1 DAGSTER_PG_PORT=$PGPORT DAGSTER_PG_USER=dagster \
         DAGSTER_PG_PASSWORD=dagster DAGSTER_PG_DB=dagster
  export DAGSTER_PG_URL="postgresql+psycopg2://dagster:dagster@127.0.0.1:$PGPORT/dagster"
  echo "PostgreSQL 15 on 127.0.0.1:$PGPORT (data in $PGROOT)"
  popd >/dev/null
}

pg_throwaway_stop() {
  if [ -n "${PGROOT:-}" ] && [ -d "$PGROOT/data" ]; then
    (cd / && runuser -u "$PGUSER_OS" -- "$PGBIN/pg_ctl" -D "$PGROOT/data" -m fast stop >/dev/null) || true
    rm -rf "$PGROOT"
  fi
}
