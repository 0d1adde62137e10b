#!/usr/bin/env bash
# pg-init.sh DIR PORT — creates a throw-away PostgreSQL 15 cluster in DIR/data (DIR under /tmp),
# listening on 127.0.0.1:PORT and a unix socket in DIR, with pg_stat_statements preloaded.
# As root the cluster belongs to the `postgres` OS user (DIR: owner postgres, mode 700). Superuser
# `postgres`, trust auth, C.UTF-8, fsync off, max_connections 50. Prints nothing on success.
# Start it in the foreground with (SIGINT = fast shutdown)
#   guard.py --stop-signal INT -- runuser -u postgres -- /usr/lib/postgresql/15/bin/postgres -D DIR/data
set -euo pipefail
if [ $# -ne 2 ]; then echo "usage: $0 DIR PORT" >&2; exit 2; fi
dir=$1 port=$2
case $dir in
  /tmp/*) ;;
  *) echo "pg-init.sh: DIR must be under /tmp (every parent must be traversable by postgres): $dir" >&2; exit 2 ;;
esac
[[ $port =~ ^[0-9]+$ ]] || { echo "pg-init.sh: not a port: $port" >&2; exit 2; }
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
[ -x "$PGBIN/initdb" ] || { echo "pg-init.sh: no $PGBIN/initdb: run scripts/install-test-deps.sh" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$dir"
if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
chmod 700 "$dir"
as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 \
  || { cat "$dir/initdb.log" >&2; exit 1; }
cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 50
logging_collector = off
CONF
