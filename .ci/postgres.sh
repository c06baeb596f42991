#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the tests of sweeps on a database (tests/sweep/test_sweep_db.py).
#   .ci/postgres.sh start DIR   creates a cluster in DIR (an empty folder), starts it on 127.0.0.1 at a free port
#                               (fsync off: its data is thrown away) and prints its URL: a superuser `pkd` with a
#                               random password (host logins need it: scram-sha-256) and an empty database `pkd`
#   .ci/postgres.sh stop DIR    stops it (safe to call twice, or when start failed half-way)
# Debian's postgresql (15) keeps initdb and pg_ctl off PATH, and initdb refuses to run as root: as root, both run
# as the `postgres` user. Usage in CI: DIR=$(mktemp -d); trap '.ci/postgres.sh stop "$DIR"' EXIT;
# export PKD_TEST_DB_URL=$(.ci/postgres.sh start "$DIR")
set -euo pipefail
action=${1:?start or stop}
dir=${2:?the cluster folder}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bin/pg_ctl" ] || { echo "postgres.sh: no PostgreSQL server found (apt-get install postgresql)" >&2; exit 1; }
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "$action" in
start)
  mkdir -p "$dir/data" "$dir/sock"
  [ "$(id -u)" = 0 ] && chown -R postgres: "$dir"
  password=$(python3 -c "import secrets; print(secrets.token_hex(16))")
  port=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  (umask 077; echo "$password" > "$dir/pw")
  [ "$(id -u)" = 0 ] && chown postgres: "$dir/pw"
  as_owner "$bin/initdb" -D "$dir/data" -U pkd --pwfile="$dir/pw" --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  rm -f "$dir/pw"
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/sock -c fsync=off -c full_page_writes=off" \
    >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  as_owner "$bin/createdb" -h "$dir/sock" -p "$port" -U pkd pkd
  echo "postgresql+psycopg://pkd:$password@127.0.0.1:$port/pkd"
  ;;
stop)
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null || true
  fi
  rm -rf "$dir"
  ;;
*) echo "postgres.sh: start or stop, not $action" >&2; exit 2 ;;
esac
