#!/usr/bin/env bash
# bench-failover.sh — failover time of two `mxwarden run` instances sharing one PostgreSQL store.
#
# What it measures: a throw-away PostgreSQL 15 cluster (scripts/lib/pg-init.sh), two instances
# (`alpha`, `bravo`) on it with the default 15 s lease, one local target and one webhook
# receiver (scripts/lib/failover-bench.py). KILLS times: the target goes down, the leader pages;
# then at one instant the leader is killed with `kill -9` and the target comes back up, so the
# resolve can only be decided by the next leader; the time from the kill to the resolve's
# arrival at the receiver is the failover time (it includes at most one 1 s probe and the
# delivery). The killed instance is restarted (it follows) before the next round. Prints each
# round, p50/p95/max (nearest rank), the notification counts (one page and one resolve per
# round, nothing twice) and the goal line: p95 kill → decided ≤ 30 s.
#
# Reproduce:  scripts/bench-failover.sh                 (KILLS=10, LEASE=15s)
# Environment: KILLS (default 10), LEASE (default 15s, the product's default), SEED (the random
#   wait before each kill, which puts it at a random point of the leader's renewal cycle;
#   default: random, printed), MXWARDEN (a built
#   binary; default: `cargo build --release` in $CARGO_TARGET_DIR or target/), STORE (an existing
#   postgres:// URL to use instead of a throw-away cluster; its tables are created if missing).
# A run takes about KILLS × 20 s plus start-up (about 3.5 minutes at the defaults).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
KILLS=${KILLS:-10}
LEASE=${LEASE:-15s}
[[ $KILLS =~ ^[0-9]+$ && $KILLS -ge 1 ]] || { echo "bench-failover: KILLS must be a whole number ≥ 1" >&2; exit 2; }
if [ -z "${MXWARDEN:-}" ]; then
  echo "== building mxwarden (release)" >&2
  cargo build --release --quiet
  TARGET_DIR=${CARGO_TARGET_DIR:-target}
  case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
  MXWARDEN=$TARGET_DIR/release/mxwarden
fi
[ -x "$MXWARDEN" ] || { echo "bench-failover: no mxwarden binary at $MXWARDEN" >&2; exit 1; }

DIR=$(mktemp -d /tmp/mxwarden-failover-XXXXXX)
chmod 755 "$DIR"  # the cluster's directory below it belongs to postgres, who must traverse this one
PG_PID=
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  if [ -n "$PG_PID" ]; then
    # runuser does not pass SIGINT on to the server: pg_ctl stops it (fast shutdown).
    as_pg "$PGBIN/pg_ctl" -D "$DIR/pg/data" -m fast -w -t 30 stop >/dev/null 2>&1 || kill -KILL "$PG_PID" 2>/dev/null || true
    wait "$PG_PID" 2>/dev/null || true
  fi
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${STORE:-}" ]; then
  PGPORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  bash scripts/lib/pg-init.sh "$DIR/pg" "$PGPORT"
  as_pg "$PGBIN/postgres" -D "$DIR/pg/data" >"$DIR/pg/server.log" 2>&1 &
  PG_PID=$!
  for _ in $(seq 1 300); do
    psql -X -q -h "$DIR/pg" -p "$PGPORT" -U postgres -d postgres -c 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.2
  done
  psql -X -q -h "$DIR/pg" -p "$PGPORT" -U postgres -d postgres -c 'CREATE DATABASE mxwarden' >/dev/null
  STORE="postgresql://postgres@127.0.0.1:$PGPORT/mxwarden"
fi
mkdir -p "$DIR/run"
echo "== $KILLS kills, lease $LEASE, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
SEED=${SEED:-$RANDOM$RANDOM}
python3 scripts/lib/failover-bench.py --mxwarden "$MXWARDEN" --store "$STORE" --dir "$DIR/run" --kills "$KILLS" --lease "$LEASE" --seed "$SEED"
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
