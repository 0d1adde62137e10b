#!/usr/bin/env bash
# bench-daemon.sh [efficiency|rss|all|malloc]  — the daemon's benchmarks (issue 6), side by side, one run.
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
# malloc: the process tuning of src/main.rs measured: one release build per combination of the
#   package's default features (the glibc malloc settings, each a feature), all of them run side
#   by side on the full runbook config against the same services for RSS_MINUTES minutes, their
#   VmRSS sampled every 10 s. Not part of `all`.
#
# Environment: RATE (default 100), SECONDS_MEASURED (default 60), RSS_MINUTES (default 10),
# CARGO_TARGET_DIR (where cargo builds; default ./target).
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
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
MXW=$TARGET/release/mxwarden
if [ "$WHAT" != malloc ]; then
  echo "== building mxwarden (release)" >&2
  cargo build --release --quiet
fi

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

# The services of the full runbook config: the demo stack (PostgreSQL, Synapse, OIDC provider)
# and the documented-shape fakes, once per run.
start_services() {
  echo "== starting the demo stack (PostgreSQL, Synapse, OIDC provider)" >&2
  bash scripts/demo-stack.sh start "$DIR/stack" >&2
  STACK=1
  set -a; . "$DIR/stack/stack.env"; set +a
  FP=$(free_port)
  python3 scripts/lib/fake-services.py "$FP" --authentik-token bench-token & PIDS+=($!)
  wait_http "http://127.0.0.1:$FP/health"
  export AUTHENTIK_TOKEN=bench-token
}

# full_config NAME: the full runbook config with a store and a port of its own, as $DIR/NAME.yaml.
full_config() {
  cat >"$DIR/$1.yaml" <<YAML
store: $DIR/$1.db
listen: 127.0.0.1:$(free_port)
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
}

if [ "$WHAT" = rss ] || [ "$WHAT" = all ]; then
  start_services
  full_config full
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

if [ "$WHAT" = malloc ]; then
  # Every combination of the default features (the settings of `allocator` in src/main.rs),
  # fewest first, so that the last build left in the target directory is the default one.
  FEATURES=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
pkg = next(p for p in json.load(sys.stdin)["packages"] if p["name"] == "mxwarden")
print(" ".join(pkg["features"].get("default", [])))')
  read -r -a FEATS <<<"$FEATURES"
  NAMES=(); BINS=()
  for ((mask = 0; mask < 1 << ${#FEATS[@]}; mask++)); do
    on=()
    for i in "${!FEATS[@]}"; do if (( mask >> i & 1 )); then on+=("${FEATS[$i]}"); fi; done
    list=$(IFS=,; echo "${on[*]}")
    echo "== building mxwarden (release) with features [${list}]" >&2
    cargo build --release --quiet -p mxwarden --bin mxwarden --no-default-features ${list:+--features "$list"}
    cp "$MXW" "$DIR/mxwarden-$mask"
    if [ -z "$list" ]; then NAMES+=("none"); else NAMES+=("${list//,/ + }"); fi
    BINS+=("$DIR/mxwarden-$mask")
  done
  start_services
  VPIDS=()
  for i in "${!BINS[@]}"; do
    full_config "v$i"
    "${BINS[$i]}" --config "$DIR/v$i.yaml" config check >/dev/null
  done
  START=$(date +%s)
  for i in "${!BINS[@]}"; do
    "${BINS[$i]}" --config "$DIR/v$i.yaml" run >"$DIR/mxw-v$i.log" 2>&1 & VPIDS+=($!); PIDS+=($!)
  done
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  # VmRSS and RssAnon of every variant every 10 s: "$DIR/samples" holds "seconds variant kB kB".
  : >"$DIR/samples"
  for ((t = 5; t <= RSS_MINUTES * 60; t += (t == 5 ? 5 : 10))); do
    sleep $(( START + t - $(date +%s) > 0 ? START + t - $(date +%s) : 0 ))
    for i in "${!VPIDS[@]}"; do
      kill -0 "${VPIDS[$i]}" || { echo "variant ${NAMES[$i]} exited early:" >&2; tail -20 "$DIR/mxw-v$i.log" >&2; exit 1; }
      echo "$t $i $(kib_of "${VPIDS[$i]}" VmRSS) $(kib_of "${VPIDS[$i]}" RssAnon)" >>"$DIR/samples"
    done
  done
  checks=$("${BINS[0]}" --config "$DIR/v0.yaml" config show --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["checks"]))')
  rules=$("${BINS[0]}" --config "$DIR/v0.yaml" rules list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["rules"]))')
  echo "## RSS by malloc setting: ${#BINS[@]} builds side by side on the full runbook config, $RSS_MINUTES minutes"
  echo
  echo "Five services, every preset: $checks checks, $rules rules; Synapse scraped every 15s. Each row is"
  echo "one \`mxwarden run\` with its own store and port, all started together against the same services."
  echo "VmRSS and RssAnon sampled every 10 s; \"2nd half\" is the mean of the samples after $((RSS_MINUTES * 30)) s."
  echo "Load average at the start: $LOAD_START."
  echo
  echo "| malloc features | VmRSS 5 s | VmRSS $RSS_MINUTES min | (10^6 B) | VmRSS, 2nd half | VmHWM (peak) | anonymous $RSS_MINUTES min | anonymous, 2nd half | file-backed | CPU s |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for i in "${!VPIDS[@]}"; do
    p=${VPIDS[$i]}
    awk -v i="$i" -v name="${NAMES[$i]}" -v half="$((RSS_MINUTES * 30))" -v h="$(kib_of "$p" VmHWM)" \
      -v a="$(kib_of "$p" RssAnon)" -v f="$(kib_of "$p" RssFile)" -v c="$(cpu_of "$p")" '
      $2 == i { if ($1 == 5) first = $3; last = $3; if ($1 > half) { sum += $3; anon += $4; n++ } }
      END { printf "| %s | %.2f MiB | %.2f MiB | %.2f MB | %.2f MiB | %.2f MiB | %.2f MiB | %.2f MiB | %.2f MiB | %.2f |\n",
                   name, first / 1024, last / 1024, last * 1.024 / 1000, sum / n / 1024, h / 1024, a / 1024,
                   anon / n / 1024, f / 1024, c }' \
      "$DIR/samples"
  done
  echo
  echo "VmRSS (MiB) each minute:"
  echo
  printf '| malloc features |'; for ((m = 1; m <= RSS_MINUTES; m++)); do printf ' %d |' "$m"; done; echo
  printf '|---|'; for ((m = 1; m <= RSS_MINUTES; m++)); do printf -- '---:|'; done; echo
  for i in "${!VPIDS[@]}"; do
    awk -v i="$i" -v name="${NAMES[$i]}" '$2 == i && $1 % 60 == 0 { row = row sprintf(" %.2f |", $3 / 1024) }
      END { print "| " name " |" row }' "$DIR/samples"
  done
  echo
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
