#!/usr/bin/env bash
# The demo: starts a real local stack — PostgreSQL 15, Synapse on it (with an admin user and a
# metrics listener), and an OIDC provider standing in for MAS — writes an mxwarden.yaml for it,
# proves its credentials with `mxwarden doctor`, runs `mxwarden check`, then `mxwarden run` with
# its status page. Then the whole loop: the ops room has a bot and a second, human user
# (alice); Synapse's database is stopped while Synapse stays up; the page is read back from the
# room as alice, then the database comes back and the resolve is read back too. Finally Synapse
# itself is stopped. Render (a SaaS that cannot run here) is played by the fake of its API
# (crates/render-fake, the documented shapes): `mxwarden render status` shows the linked
# services, and a failed deploy of Synapse pages into the room. Everything binds 127.0.0.1 and is stopped when the script ends
# (also on Ctrl-C). On a terminal it waits for Enter before stopping, so the status page can be
# looked at; DEMO_SECONDS=N waits N seconds instead (default 0 without a terminal).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
bash scripts/install-test-deps.sh >/dev/null
echo "== building mxwarden and the fake of Render's API"
cargo build --quiet
cargo build --quiet -p mxwarden-render-fake
MXW=${CARGO_TARGET_DIR:-$ROOT/target}/debug/mxwarden
FAKE=${CARGO_TARGET_DIR:-$ROOT/target}/debug/mxwarden-render-fake
CACHE=${MXWARDEN_CACHE:-$HOME/.cache/mxwarden}
DIR=$(mktemp -d /tmp/mxwarden-demo-XXXXXX)
chmod 755 "$DIR"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 600); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "timed out waiting for $1; logs in $DIR" >&2; exit 1; }

# Every service runs under guard.py reading this FIFO; when the script exits, the FIFO closes
# and guard stops its service.
mkfifo "$DIR/alive"
PIDS=()
# (9>&-: a service must not hold the FIFO's write end itself, or it would never see EOF.)
guarded() { python3 scripts/lib/guard.py "$@" <"$DIR/alive" 9>&- & PIDS+=($!); }
cleanup() {
  exec 9>&- || true
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT

echo "== starting PostgreSQL, Synapse and an OIDC provider in $DIR"
PGPORT=$(free_port)
bash scripts/lib/pg-init.sh "$DIR/pg" "$PGPORT"
start_pg() { guarded --stop-signal INT --log "$DIR/pg.log" -- runuser -u postgres -- /usr/lib/postgresql/15/bin/postgres -D "$DIR/pg/data"; PG_PID=${PIDS[-1]}; }
start_pg
exec 9>"$DIR/alive"
until psql -X -q -h "$DIR/pg" -p "$PGPORT" -U postgres -c 'select 1' >/dev/null 2>&1; do sleep 0.1; done

CP=$(free_port); MP=$(free_port); OP=$(free_port)
bash scripts/lib/synapse-init.sh "$DIR/synapse" "$CP" "$MP" "$DIR/pg" "$PGPORT" synapse
guarded --log "$DIR/synapse.log" -- "$CACHE/venv-synapse/bin/python" -m synapse.app.homeserver -c "$DIR/synapse/homeserver.yaml"
SYNAPSE_PID=${PIDS[-1]}
guarded --log "$DIR/oidc.log" -- "$CACHE/venv-tools/bin/oidc-provider-mock" -H 127.0.0.1 -p "$OP"
wait_http "http://127.0.0.1:$CP/health"
wait_http "http://127.0.0.1:$OP/.well-known/openid-configuration"
SYNAPSE_ADMIN_TOKEN=$(python3 scripts/lib/synapse-admin-token.py "http://127.0.0.1:$CP" "$(cat "$DIR/synapse/shared_secret")" demo-admin 'Demo-pass-1')
export SYNAPSE_ADMIN_TOKEN

RP=$(free_port)
export RENDER_API_KEY=rnd_demo_key
guarded --log "$DIR/render-fake.log" -- "$FAKE" --demo --listen "127.0.0.1:$RP" --key "$RENDER_API_KEY"
RENDER_URL=http://127.0.0.1:$RP/v1
wait_http "http://127.0.0.1:$RP/_fake/health"

# The ops room: mxwarden's bot creates it (unencrypted: mxwarden posts plain messages) and
# invites alice, a person, who joins. (The registration script makes both server admins.)
MXWARDEN_MATRIX_TOKEN=$(python3 scripts/lib/synapse-admin-token.py "http://127.0.0.1:$CP" "$(cat "$DIR/synapse/shared_secret")" mxwarden-bot 'Bot-pass-1')
ALICE_TOKEN=$(python3 scripts/lib/synapse-admin-token.py "http://127.0.0.1:$CP" "$(cat "$DIR/synapse/shared_secret")" alice 'Alice-pass-1')
export MXWARDEN_MATRIX_TOKEN
matrix() { # METHOD PATH TOKEN [JSON]: a client-server API call, the answer on stdout
  curl -fsS -X "$1" -H "Authorization: Bearer $3" -H 'Content-Type: application/json' ${4:+-d "$4"} "http://127.0.0.1:$CP/_matrix/client/v3$2"
}
ROOM=$(matrix POST /createRoom "$MXWARDEN_MATRIX_TOKEN" '{"name":"ops","preset":"private_chat","invite":["@alice:localhost"]}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["room_id"])')
matrix POST "/join/$ROOM" "$ALICE_TOKEN" '{}' >/dev/null
echo "ops room $ROOM: @mxwarden-bot:localhost and @alice:localhost"

LP=$(free_port)
cat >"$DIR/mxwarden.yaml" <<YAML
listen: 127.0.0.1:$LP        # the status page, JSON API and /metrics of \`mxwarden run\`
store: $DIR/mxwarden.db
defaults: { interval: 5s, timeout: 5s }
# The fake of Render's API stands in for Render; the fake has no rate limit of its own.
render: { api_key: "\${RENDER_API_KEY}", api_url: "$RENDER_URL", interval: 10s, requests_per_minute: 200 }
services:
  postgres:
    kind: postgres
    dsn: "postgresql://postgres@127.0.0.1:$PGPORT/postgres"
    render: dpg-postgres0000000000   # the real disk (15 GB) comes from Render: basic_256mb names the RAM
    databases: [synapse]
    interval: 2s
    down_after: 4s           # short for the demo (default 1m)
  synapse:
    kind: synapse
    url: http://127.0.0.1:$CP
    admin_token: "\${SYNAPSE_ADMIN_TOKEN}"
    federation_url: http://127.0.0.1:$CP
    metrics_url: http://127.0.0.1:$MP/_synapse/metrics
    render: srv-synapse0000000000
  mas:                       # an OIDC provider stands in for MAS's discovery here
    kind: mas
    url: http://127.0.0.1:$OP
    issuer: http://127.0.0.1:$OP
    render: srv-mas00000000000000
alerting:
  receivers:
    ops-room: { matrix: { homeserver: http://127.0.0.1:$CP, room: "$ROOM", access_token: "\${MXWARDEN_MATRIX_TOKEN}" } }
  tiers:
    critical: { receivers: [ops-room] }
  retry: { initial: 1s, max: 2s }
YAML
echo "== $DIR/mxwarden.yaml"
cat "$DIR/mxwarden.yaml"
echo
echo "== mxwarden doctor (every token and permission proven; nothing is posted)"
"$MXW" --config "$DIR/mxwarden.yaml" doctor || true
echo
echo "== mxwarden check"
"$MXW" --config "$DIR/mxwarden.yaml" check || true
echo
echo "== mxwarden run (the daemon), in the background"
"$MXW" --config "$DIR/mxwarden.yaml" run 2>"$DIR/run.log" &
RUN_PID=$!
trap 'kill -TERM $RUN_PID 2>/dev/null; wait $RUN_PID 2>/dev/null; cleanup' EXIT
wait_http "http://127.0.0.1:$LP/healthz"
summary() {
  curl -fsS "http://127.0.0.1:$LP/api/v1/status" | python3 -c '
import json, sys
s = json.load(sys.stdin)
for c in s["checks"]:
    print("  %-8s %-28s %s" % (c["state"], c["name"], (c["detail"] or "")[:70]))
for a in s["alerts"]:
    print("  ALERT %s: %s %s %s" % (a["state"], a["alert"], a["service"] or "", a["summary"]))'
}
sleep 6
echo "Status page: http://127.0.0.1:$LP/   (JSON: /api/v1/status, metrics: /metrics)"
summary
echo
echo "== mxwarden render status (Render's view: plan, suspension, newest deploy, memory and CPU against the plan)"
"$MXW" --config "$DIR/mxwarden.yaml" render status || true
echo
room_messages() { # the ops room as alice reads it: sender and first line of each message
  matrix GET "/rooms/$ROOM/messages?dir=b&limit=50" "$ALICE_TOKEN" | python3 -c '
import json, sys
for e in reversed(json.load(sys.stdin)["chunk"]):
    if e["type"] == "m.room.message":
        print("  %s: %s" % (e["sender"], e["content"]["body"].splitlines()[0][:110]))'
}
wait_room() { # TEXT: until a message in the room contains TEXT (60 s at most)
  for _ in $(seq 1 300); do room_messages 2>/dev/null | grep -q "$1" && return 0; sleep 0.2; done
  echo "timed out waiting for \"$1\" in the room; mxwarden's log: $DIR/run.log" >&2; return 1
}
echo "== stopping Synapse's database (PostgreSQL); Synapse stays up"
kill -TERM "$PG_PID"; wait "$PG_PID" 2>/dev/null || true
echo "Synapse /health: $(curl -sS "http://127.0.0.1:$CP/health")"
for _ in $(seq 1 150); do
  curl -fsS "http://127.0.0.1:$LP/api/v1/status" | grep -q '"state":"firing"' && break; sleep 0.2
done
summary
echo
echo "== mxwarden outbox: the page waits there, since Synapse cannot store a message without its"
echo "   database (in production the critical tier's email fallback covers exactly this)"
"$MXW" --config "$DIR/mxwarden.yaml" outbox || true
echo
echo "== starting the database again: the page is delivered, once, then the resolve"
start_pg
wait_room "RESOLVED" || true
echo "The ops room, as alice reads it:"
room_messages
echo
echo "== a deploy of Synapse fails to build on Render; the daemon pages RenderDeployFailed with the build's last lines"
curl -fsS -X POST "http://127.0.0.1:$RP/_fake/fail-deploy/srv-synapse0000000000" >/dev/null
wait_room "RenderDeployFailed" || true
"$MXW" --config "$DIR/mxwarden.yaml" render deploys synapse --limit 3 || true
echo "The ops room, as alice reads it:"
room_messages
echo
echo "== stopping Synapse itself; the daemon notices"
kill -TERM "$SYNAPSE_PID"; wait "$SYNAPSE_PID" 2>/dev/null || true
sleep 4
summary
echo
set +e
echo "== mxwarden check synapse (one-shot)"
"$MXW" --config "$DIR/mxwarden.yaml" check synapse
echo "(exit code $?: 0 all good, 1 something is unhealthy, 2 config or usage error)"
if [ -n "${DEMO_SECONDS:-}" ]; then
  echo "Status page stays up for $DEMO_SECONDS s: http://127.0.0.1:$LP/"; sleep "$DEMO_SECONDS"
elif [ -t 0 ]; then
  read -r -p "Status page: http://127.0.0.1:$LP/ — press Enter to stop everything. " _
fi
