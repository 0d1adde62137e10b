#!/usr/bin/env bash
# demo-stack.sh start DIR | stop DIR | status DIR
#
# A real local stack for trying mxwarden, in the background:
#   PostgreSQL 15 (throw-away cluster), Synapse on it (admin user `demo-admin`, metrics
#   listener), and an OIDC provider standing in for MAS's discovery. Everything binds
#   127.0.0.1 on free ports. Needs scripts/install-test-deps.sh to have run.
#
# `start` writes DIR/stack.env (KEY=VALUE lines; `source` it, or `set -a; . DIR/stack.env`):
#   SYNAPSE_URL SYNAPSE_METRICS_URL SYNAPSE_ADMIN_TOKEN OIDC_ISSUER PG_PORT PG_SOCKET_DIR
# Logs are in DIR/logs. Each service runs under scripts/lib/guard.py (pid in DIR/run), which
# stops the service's whole process tree when it gets SIGTERM; `stop` does that and waits.
# `start` on a DIR whose stack still runs fails; otherwise it starts afresh (old data removed).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GUARD=$ROOT/scripts/lib/guard.py
CACHE=${MXWARDEN_CACHE:-$HOME/.cache/mxwarden}
PGBIN=/usr/lib/postgresql/15/bin
SERVICES=(pg synapse oidc)   # start order; stopped in reverse

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
if [ "$cmd" = start ]; then mkdir -p "$2"; fi
[ -d "$2" ] || { echo "demo-stack: no directory $2" >&2; exit 1; }
DIR=$(cd "$2" && pwd)
RUN=$DIR/run LOGS=$DIR/logs

say() { echo "demo-stack: $*"; }
die() { echo "demo-stack: ERROR: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# A guard.py of this DIR that still runs (not a zombie), by pid file.
running_pid() {
  local f=$RUN/$1.pid pid state
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$GUARD" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$DIR" || return 1
  state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -c1) || return 1
  [ "$state" != Z ] || return 1
  echo "$pid"
}

stop_all() {
  local name pid i
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    name=${SERVICES[$i]}
    if pid=$(running_pid "$name"); then
      kill -TERM "$pid" 2>/dev/null || true
      # guard.py sends the stop signal, SIGKILL after 10 s, and exits when all is gone.
      for _ in $(seq 1 250); do running_pid "$name" >/dev/null || break; sleep 0.1; done
      if running_pid "$name" >/dev/null; then
        echo "demo-stack: $name (guard pid $pid) still runs after 25 s" >&2
      else
        say "stopped $name"
      fi
    fi
    rm -f "$RUN/$name.pid"
  done
}

# guarded NAME [guard options] -- CMD...: starts CMD under guard.py in the background.
guarded() {
  local name=$1; shift
  python3 "$GUARD" --no-stdin --log "$LOGS/$name.log" "$@" </dev/null >/dev/null 2>&1 &
  echo $! >"$RUN/$name.pid"
}

# wait_for NAME SECONDS CHECK...: runs CHECK until it succeeds; fails with NAME's log.
wait_for() {
  local name=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ! running_pid "$name" >/dev/null; then
      tail -n 30 "$LOGS/$name.log" >&2 || true
      die "$name exited during start-up (log: $LOGS/$name.log)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 30 "$LOGS/$name.log" >&2 || true
      die "$name not ready within ${secs}s (log: $LOGS/$name.log)"
    fi
    sleep 0.1
  done
}

http_ok() { python3 - "$@" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
    body = r.read().decode()
sys.exit(0 if r.status == 200 and (len(sys.argv) < 3 or sys.argv[2] in body) else 1)
PY
}

start() {
  for name in "${SERVICES[@]}"; do
    if running_pid "$name" >/dev/null; then die "the stack in $DIR is running: $0 stop $DIR first"; fi
  done
  [ -x "$PGBIN/postgres" ] || die "no PostgreSQL 15: run scripts/install-test-deps.sh"
  for v in venv-synapse venv-tools; do
    [ -f "$CACHE/$v/.installed" ] || die "no $CACHE/$v: run scripts/install-test-deps.sh"
  done
  # Whatever fails (or a Ctrl-C) from here on: stop what has started.
  START_OK=0
  trap '[ "$START_OK" = 1 ] || { echo "demo-stack: start failed; stopping what started" >&2; stop_all; }' EXIT
  trap 'exit 130' INT TERM

  # PostgreSQL's directory must be traversable by the postgres user: under /tmp.
  local pgdir
  case $DIR in
    /tmp/*) pgdir=$DIR/pg ;;
    *) pgdir=/tmp/mxwarden-demo-pg-$(echo "$DIR" | sha256sum | cut -c1-12) ;;
  esac
  rm -rf "$RUN" "$LOGS" "$DIR/synapse" "$DIR/stack.env" "$pgdir"
  [ "$pgdir" = "$DIR/pg" ] || { rm -rf "$DIR/pg"; ln -s "$pgdir" "$DIR/pg"; }
  mkdir -p "$RUN" "$LOGS"
  case $DIR in /tmp/*) chmod 755 "$DIR" ;; esac

  local pg_port cport mport oport
  pg_port=$(free_port) cport=$(free_port) mport=$(free_port) oport=$(free_port)

  bash "$ROOT/scripts/lib/pg-init.sh" "$pgdir" "$pg_port"
  local as_pg=()
  [ "$(id -u)" != 0 ] || as_pg=(runuser -u postgres --)
  guarded pg --stop-signal INT -- "${as_pg[@]}" "$PGBIN/postgres" -D "$pgdir/data"
  guarded oidc -- env PYTHONWARNINGS=ignore "$CACHE/venv-tools/bin/oidc-provider-mock" -H 127.0.0.1 -p "$oport"
  wait_for pg 60 psql -X -q -h "$pgdir" -p "$pg_port" -U postgres -d postgres -c 'SELECT 1'
  say "PostgreSQL ready on 127.0.0.1:$pg_port (socket dir $pgdir)"

  bash "$ROOT/scripts/lib/synapse-init.sh" "$DIR/synapse" "$cport" "$mport" "$pgdir" "$pg_port" synapse
  guarded synapse -- "$CACHE/venv-synapse/bin/python" -m synapse.app.homeserver -c "$DIR/synapse/homeserver.yaml"
  wait_for synapse 120 http_ok "http://127.0.0.1:$cport/health" OK
  local token
  token=$(python3 "$ROOT/scripts/lib/synapse-admin-token.py" "http://127.0.0.1:$cport" \
    "$(cat "$DIR/synapse/shared_secret")" demo-admin "demo-admin-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')")
  say "Synapse ready on http://127.0.0.1:$cport (metrics on :$mport, admin @demo-admin:localhost)"
  wait_for oidc 60 http_ok "http://127.0.0.1:$oport/.well-known/openid-configuration" issuer
  say "OIDC provider ready on http://127.0.0.1:$oport"

  (umask 077; cat >"$DIR/stack.env" <<ENV
SYNAPSE_URL=http://127.0.0.1:$cport
SYNAPSE_METRICS_URL=http://127.0.0.1:$mport/_synapse/metrics
SYNAPSE_ADMIN_TOKEN=$token
OIDC_ISSUER=http://127.0.0.1:$oport
PG_PORT=$pg_port
PG_SOCKET_DIR=$pgdir
ENV
)
  START_OK=1
  trap - INT TERM
  say "wrote $DIR/stack.env; stop with: $0 stop $DIR"
}

status() {
  local name pid rc=0
  for name in "${SERVICES[@]}"; do
    if pid=$(running_pid "$name"); then say "$name running (guard pid $pid)"; else say "$name not running"; rc=3; fi
  done
  return $rc
}

case $cmd in
  start) start ;;
  stop) stop_all ;;
  status) status ;;
  *) usage ;;
esac
