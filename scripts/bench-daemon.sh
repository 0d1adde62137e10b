#!/usr/bin/env bash
# bench-daemon.sh [efficiency|rss|all]  — the daemon's benchmarks (issue 6), side by side, one run.
#
# efficiency: HTTP probes per CPU-second against a local target (scripts/lib/fake-services.py),
#   `mxwarden run` (RATE checks at a 1s interval, results stored, rules evaluated) against
#   Debian's prometheus-blackbox-exporter driven through /probe at the same rate. CPU is the
#   process's own utime+stime from /proc over SECONDS after a warm-up; probes are the requests
#   the target served in that time.
# rss: `mxwarden run` on the full runbook config — five services with every preset (a real
#   Synapse on a real PostgreSQL from scripts/demo-stack.sh, scraped every 15s; the postgres
#   service; an OIDC provider standing in for MAS's discovery; Vikunja and authentik as
#   documented-shape fakes) — for RSS_MINUTES minutes, then its VmRSS and VmHWM.
#
# Environment: RATE (default 100), SECONDS_MEASURED (default 60), RSS_MINUTES (default 10).
# Everything binds 127.0.0.1 and is stopped at the end. Results go to stdout as Markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WHAT=${1:-all}
RATE=${RATE:-100}
SECS=${SECONDS_MEASURED:-60}
RSS_MINUTES=${RSS_MINUTES:-10}
WARMUP=10

bash scripts/install-test-deps.sh >/dev/null
if ! command -v prometheus-blackbox-exporter >/dev/null; then
  echo "== installing prometheus-blackbox-exporter (Debian)" >&2
  apt-get install -y -q --no-install-recommends prometheus-blackbox-exporter >/dev/null
fi
echo "== building mxwarden (release)" >&2
cargo build --release --quiet
MXW=$ROOT/target/release/mxwarden

DIR=$(mktemp -d /tmp/mxwarden-bench-XXXXXX)
chmod 755 "$DIR"
PIDS=()
STACK=0
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$STACK" = 1 ]; then bash scripts/demo-stack.sh stop "$DIR/stack" >/dev/null 2>&1 || true; fi
  rm -rf "$DIR"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "timed out waiting for $1" >&2; exit 1; }
# CPU seconds (utime + stime) of PID, from /proc.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"; }
kib_of() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
count() { curl -fsS "http://127.0.0.1:$TP/count"; }

echo "# bench-daemon.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

if [ "$WHAT" = efficiency ] || [ "$WHAT" = all ]; then
  TP=$(free_port)
  python3 scripts/lib/fake-services.py "$TP" & PIDS+=($!)
  wait_http "http://127.0.0.1:$TP/health"

  # mxwarden: RATE checks, each once a second.
  MP=$(free_port)
  {
    echo "store: $DIR/eff.db"
    echo "listen: 127.0.0.1:$MP"
    echo "defaults: { timeout: 5s, concurrency: 64 }"
    echo "checks:"
    for i in $(seq 1 "$RATE"); do
      echo "  - { name: t$i, interval: 1s, http: { url: \"http://127.0.0.1:$TP/target/$i\", expect: { status: 200 } } }"
    done
  } >"$DIR/eff.yaml"
  "$MXW" --config "$DIR/eff.yaml" config check >/dev/null
  "$MXW" --config "$DIR/eff.yaml" run >"$DIR/mxw-eff.log" 2>&1 & MXW_PID=$!; PIDS+=($MXW_PID)
  sleep "$WARMUP"
  c0=$(cpu_of "$MXW_PID"); n0=$(count)
  sleep "$SECS"
  c1=$(cpu_of "$MXW_PID"); n1=$(count)
  mxw_rss=$(kib_of "$MXW_PID" VmRSS)
  kill -TERM "$MXW_PID"; wait "$MXW_PID" 2>/dev/null || true

  # blackbox_exporter: http_2xx module, driven through /probe at the same rate.
  BP=$(free_port)
  cat >"$DIR/blackbox.yml" <<YAML
modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      method: GET
      valid_status_codes: [200]
YAML
  prometheus-blackbox-exporter --config.file="$DIR/blackbox.yml" --web.listen-address="127.0.0.1:$BP" \
    >"$DIR/blackbox.log" 2>&1 & BB_PID=$!; PIDS+=($BB_PID)
  wait_http "http://127.0.0.1:$BP/metrics"
  # The driver (not measured): RATE probes a second, each of a different target path.
  python3 - "$BP" "$TP" "$RATE" "$((WARMUP + SECS + 5))" >"$DIR/driver.log" 2>&1 <<'PY' & DRV=$!; PIDS+=($DRV)
import sys, time, threading, urllib.request
from concurrent.futures import ThreadPoolExecutor
bp, tp, rate, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
def probe(i):
    url = f"http://127.0.0.1:{bp}/probe?module=http_2xx&target=http://127.0.0.1:{tp}/target/{i}"
    with urllib.request.urlopen(url, timeout=10) as r:
        r.read()
pool = ThreadPoolExecutor(max_workers=32)
start = time.monotonic(); n = 0
while time.monotonic() - start < secs:
    for i in range(rate):
        pool.submit(probe, i + 1)
    n += 1
    time.sleep(max(0.0, start + n - time.monotonic()))
pool.shutdown()
PY
  sleep "$WARMUP"
  b0=$(cpu_of "$BB_PID"); m0=$(count)
  sleep "$SECS"
  b1=$(cpu_of "$BB_PID"); m1=$(count)
  bb_rss=$(kib_of "$BB_PID" VmRSS)
  wait "$DRV" 2>/dev/null || true
  kill -TERM "$BB_PID"; wait "$BB_PID" 2>/dev/null || true

  echo "## HTTP probes per CPU-second (target rate $RATE/s, ${SECS}s measured after ${WARMUP}s warm-up)"
  echo
  echo "| process | probes served | probes/s | CPU seconds | probes per CPU-second | RSS at end |"
  echo "|---|---:|---:|---:|---:|---:|"
  awk -v n="$((n1 - n0))" -v c0="$c0" -v c1="$c1" -v s="$SECS" -v r="$mxw_rss" \
    'BEGIN { c = c1 - c0; printf "| mxwarden run (%s) | %d | %.1f | %.2f | %.0f | %.1f MiB |\n", "stores and judges every result", n, n / s, c, (c > 0 ? n / c : 0), r / 1024 }'
  awk -v n="$((m1 - m0))" -v c0="$b0" -v c1="$b1" -v s="$SECS" -v r="$bb_rss" -v v="$(prometheus-blackbox-exporter --version 2>&1 | head -1 | awk '{print $3}')" \
    'BEGIN { c = c1 - c0; printf "| blackbox_exporter %s | %d | %.1f | %.2f | %.0f | %.1f MiB |\n", v, n, n / s, c, (c > 0 ? n / c : 0), r / 1024 }'
  echo
fi

if [ "$WHAT" = rss ] || [ "$WHAT" = all ]; then
  echo "== starting the demo stack (PostgreSQL, Synapse, OIDC provider) for the RSS run" >&2
  bash scripts/demo-stack.sh start "$DIR/stack" >&2
  STACK=1
  set -a; . "$DIR/stack/stack.env"; set +a
  FP=$(free_port)
  python3 scripts/lib/fake-services.py "$FP" --authentik-token bench-token & PIDS+=($!)
  wait_http "http://127.0.0.1:$FP/health"
  export AUTHENTIK_TOKEN=bench-token
  LP=$(free_port)
  cat >"$DIR/full.yaml" <<YAML
store: $DIR/full.db
listen: 127.0.0.1:$LP
defaults: { interval: 30s, timeout: 5s }
services:
  synapse:
    kind: synapse
    url: $SYNAPSE_URL
    admin_token: "\${SYNAPSE_ADMIN_TOKEN}"
    federation_url: $SYNAPSE_URL
    metrics_url: $SYNAPSE_METRICS_URL
    overrides: { metrics: { interval: 15s } }
  mas:
    kind: mas
    url: $OIDC_ISSUER
    health_url: http://127.0.0.1:$FP/mas/health
  vikunja:
    kind: vikunja
    url: http://127.0.0.1:$FP
  authentik:
    kind: authentik
    url: http://127.0.0.1:$FP
    api_token: "\${AUTHENTIK_TOKEN}"
  postgres:
    kind: postgres
    dsn: "postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
    disk_limit: 256MiB
    databases: [synapse]
YAML
  "$MXW" --config "$DIR/full.yaml" config check >&2
  "$MXW" --config "$DIR/full.yaml" run >"$DIR/mxw-full.log" 2>&1 & MXW_PID=$!; PIDS+=($MXW_PID)
  sleep 5
  checks=$("$MXW" --config "$DIR/full.yaml" config show --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["checks"]))')
  rules=$("$MXW" --config "$DIR/full.yaml" rules list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["rules"]))')
  early=$(kib_of "$MXW_PID" VmRSS)
  sleep $((RSS_MINUTES * 60 - 5))
  kill -0 "$MXW_PID" || { echo "mxwarden run exited early:" >&2; tail -20 "$DIR/mxw-full.log" >&2; exit 1; }
  rss=$(kib_of "$MXW_PID" VmRSS); hwm=$(kib_of "$MXW_PID" VmHWM); cpu=$(cpu_of "$MXW_PID")
  anon=$(kib_of "$MXW_PID" RssAnon); file=$(kib_of "$MXW_PID" RssFile)
  echo "## RSS of mxwarden run on the full runbook config after $RSS_MINUTES minutes"
  echo
  echo "Five services, every preset: $checks checks, $rules rules; Synapse scraped every 15s."
  echo
  echo "| after | VmRSS | VmRSS (10^6 B) | VmHWM (peak) | anonymous | file-backed (code) | CPU seconds used |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  awk -v r="$early" 'BEGIN { printf "| 5 s | %.2f MiB | %.2f MB | | | | |\n", r / 1024, r * 1.024 / 1000 }'
  awk -v r="$rss" -v h="$hwm" -v a="$anon" -v f="$file" -v c="$cpu" -v m="$RSS_MINUTES" \
    'BEGIN { printf "| %d min | %.2f MiB | **%.2f MB** | %.2f MiB | %.2f MiB | %.2f MiB | %.2f |\n", m, r / 1024, r * 1.024 / 1000, h / 1024, a / 1024, f / 1024, c }'
  echo
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
