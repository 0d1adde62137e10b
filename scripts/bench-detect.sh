#!/usr/bin/env bash
# bench-detect.sh — how fast an outage is paged: mxwarden against Prometheus + blackbox_exporter
# + Alertmanager, side by side in one run, on one target.
#
# What it measures: one local HTTP target (scripts/lib/detect-harness.py) answers 200; N times
# it flips to 503 at a random offset within the check interval, stays down between
# DOWN_INTERVALS - 1 and DOWN_INTERVALS intervals (a random time, so the recovery falls at a
# random phase too), flips back to 200 and stays up UP_INTERVALS intervals. The time of every
# flip is logged. Both stacks probe it every INTERVAL seconds and page a webhook receiver (same
# harness) that timestamps every arrival:
#   - `mxwarden run`: an http check (expect 200), the rule `probe_success == 0` with `for: 0s`
#     and `severity: critical`, the critical tier sending to a `webhook` receiver;
#   - Debian's prometheus (scrape_interval = evaluation_interval = INTERVAL, the same rule with
#     `for: 0s`), prometheus-blackbox-exporter (http module, 200 only) and
#     prometheus-alertmanager (group_wait 0s, group_interval 1s, repeat_interval 24h, webhook
#     with send_resolved).
# Printed per stack: flips caught, outage → firing arrival and recovery → resolved arrival
# (p50, p95, min, max, seconds), the same counted from the first probe that saw the change, and
# the goal: mxwarden's p95 outage → firing ≤ 0.95 × INTERVAL + 0.3 s and below the Prometheus
# stack's p95.
#
# Reproduce:  scripts/bench-detect.sh                     (N=20 flips, INTERVAL=5 seconds)
#             N=30 INTERVAL=10 SEED=7 scripts/bench-detect.sh
# Environment: N (flips, default 20), INTERVAL (whole seconds, default 5), DOWN_INTERVALS (≥ 3)
#   and UP_INTERVALS (default 4 each), SEED (the random offsets and down times; default: random, printed),
#   MXWARDEN (a built binary; default: `cargo build --release` in $CARGO_TARGET_DIR or target/),
#   EVENTS_OUT (a file to keep the raw log of flips, probes and notifications in, as JSON).
# A run takes about N × (DOWN_INTERVALS + UP_INTERVALS) × INTERVAL seconds plus a minute
# (14 minutes at the defaults).
# Installs the three Debian packages with apt-get when missing (needs root); their system
# services are not started — each binary runs here on a free 127.0.0.1 port with a temp data
# dir. Every wait has a timeout; every process started is stopped on exit. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${N:-20}
INTERVAL=${INTERVAL:-5}
INTERVAL=${INTERVAL%s}
DOWN_INTERVALS=${DOWN_INTERVALS:-4}
UP_INTERVALS=${UP_INTERVALS:-4}
SEED=${SEED:-$RANDOM$RANDOM}
for v in N INTERVAL DOWN_INTERVALS UP_INTERVALS SEED; do
  [[ ${!v} =~ ^[0-9]+$ && ${!v} -ge 1 ]] || { echo "bench-detect: $v must be a whole number ≥ 1 (got '${!v}')" >&2; exit 2; }
done
[ "$DOWN_INTERVALS" -ge 3 ] || { echo "bench-detect: DOWN_INTERVALS must be ≥ 3 (both stacks need time to fire)" >&2; exit 2; }
[ "$N" -ge 20 ] || echo "bench-detect: warning: N=$N; the benchmark asks for at least 20 flips" >&2

# ---------------------------------------------------------------- tools
missing=()
for pkg in prometheus prometheus-blackbox-exporter prometheus-alertmanager; do
  command -v "$pkg" >/dev/null || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "bench-detect: need root to apt-get install ${missing[*]}" >&2; exit 1; }
  echo "== installing ${missing[*]} (Debian)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
  # Where an init system runs, the packages start their own daemons; this benchmark runs its own.
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    for unit in prometheus prometheus-blackbox-exporter prometheus-alertmanager; do
      systemctl disable --now "$unit" >/dev/null 2>&1 || true
    done
  fi
fi
if [ -z "${MXWARDEN:-}" ]; then
  echo "== building mxwarden (release)" >&2
  cargo build --release --quiet
  TARGET_DIR=${CARGO_TARGET_DIR:-target}
  case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
  MXWARDEN=$TARGET_DIR/release/mxwarden
fi
[ -x "$MXWARDEN" ] || { echo "bench-detect: no mxwarden binary at $MXWARDEN" >&2; exit 1; }

# ---------------------------------------------------------------- processes and cleanup
DIR=$(mktemp -d /tmp/mxwarden-detect-XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  # Up to 10 s for a clean stop, then SIGKILL whatever is left.
  for _ in $(seq 1 100); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
die() { echo "bench-detect: $*" >&2; exit 1; }
# wait_for SECONDS WHAT COMMAND...: runs COMMAND every 0.2 s until it succeeds, or dies.
wait_for() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${secs}s waiting for $what"
    sleep 0.2
  done
}
http_ok() { curl -fsS --max-time 2 -o /dev/null "$1"; }
alive() { for p in "$@"; do kill -0 "$p" 2>/dev/null || return 1; done; }

TP=$(free_port)   # the target
HP=$(free_port)   # the webhook receiver and the harness's control
BP=$(free_port)   # blackbox_exporter
AP=$(free_port)   # Alertmanager
PP=$(free_port)   # Prometheus
MP=$(free_port)   # mxwarden's own listener
DOWN=$((DOWN_INTERVALS * INTERVAL))
UP=$((UP_INTERVALS * INTERVAL))
TIMEOUT=$(( INTERVAL * 4 / 5 ))  # probe and scrape timeout: below the interval
[ "$TIMEOUT" -ge 1 ] || TIMEOUT=1

# ---------------------------------------------------------------- the target and the receiver
python3 scripts/lib/detect-harness.py serve --target-port "$TP" --hook-port "$HP" \
  --interval "$INTERVAL" --flips "$N" --down "$DOWN" --up "$UP" --seed "$SEED" \
  --events "$DIR/events.json" --start-timeout 600 >"$DIR/harness.log" 2>&1 & HARNESS=$!; PIDS+=($HARNESS)
wait_for 15 "the harness" http_ok "http://127.0.0.1:$HP/health"

# ---------------------------------------------------------------- mxwarden
cat >"$DIR/mxwarden.yaml" <<YAML
store: $DIR/mxwarden.db
listen: 127.0.0.1:$MP
defaults: { interval: ${INTERVAL}s, timeout: ${TIMEOUT}s }
checks:
  - name: target
    http: { url: "http://127.0.0.1:$TP/mxwarden", expect: { status: 200 } }
rules:
  - alert: TargetDown
    expr: probe_success{check="target"} == 0
    for: 0s
    labels: { severity: critical }
alerting:
  receivers:
    hook: { webhook: { url: "http://127.0.0.1:$HP/mxwarden" } }
  tiers:
    critical: { receivers: [hook] }
YAML
"$MXWARDEN" --config "$DIR/mxwarden.yaml" config check >/dev/null || die "mxwarden rejects its config"
"$MXWARDEN" --config "$DIR/mxwarden.yaml" run >"$DIR/mxwarden.log" 2>&1 & MXW=$!; PIDS+=($MXW)

# ---------------------------------------------------------------- the Prometheus stack
cat >"$DIR/blackbox.yml" <<YAML
modules:
  http_200:
    prober: http
    timeout: ${TIMEOUT}s
    http:
      method: GET
      valid_status_codes: [200]
YAML
prometheus-blackbox-exporter --config.file="$DIR/blackbox.yml" --web.listen-address="127.0.0.1:$BP" \
  >"$DIR/blackbox.log" 2>&1 & BB=$!; PIDS+=($BB)

cat >"$DIR/alertmanager.yml" <<YAML
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 24h
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:$HP/alertmanager
        send_resolved: true
YAML
mkdir -p "$DIR/am"
prometheus-alertmanager --config.file="$DIR/alertmanager.yml" --storage.path="$DIR/am" \
  --web.listen-address="127.0.0.1:$AP" --cluster.listen-address= \
  >"$DIR/alertmanager.log" 2>&1 & AM=$!; PIDS+=($AM)

cat >"$DIR/rules.yml" <<YAML
groups:
  - name: detect
    rules:
      - alert: TargetDown
        expr: probe_success == 0
        for: 0s
        labels: { severity: critical }
YAML
cat >"$DIR/prometheus.yml" <<YAML
global:
  scrape_interval: ${INTERVAL}s
  evaluation_interval: ${INTERVAL}s
  scrape_timeout: ${TIMEOUT}s
rule_files: [$DIR/rules.yml]
alerting:
  alertmanagers:
    - static_configs: [{ targets: ["127.0.0.1:$AP"] }]
scrape_configs:
  - job_name: blackbox
    metrics_path: /probe
    params: { module: [http_200] }
    static_configs: [{ targets: ["http://127.0.0.1:$TP/blackbox"] }]
    relabel_configs:
      - { source_labels: [__address__], target_label: __param_target }
      - { source_labels: [__param_target], target_label: instance }
      - { target_label: __address__, replacement: "127.0.0.1:$BP" }
YAML
promtool check config "$DIR/prometheus.yml" >/dev/null || die "promtool rejects the Prometheus config"
mkdir -p "$DIR/prom"
prometheus --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/prom" \
  --web.listen-address="127.0.0.1:$PP" >"$DIR/prometheus.log" 2>&1 & PROM=$!; PIDS+=($PROM)

# ---------------------------------------------------------------- ready?
wait_for 30 "mxwarden's /healthz" http_ok "http://127.0.0.1:$MP/healthz"
wait_for 30 "blackbox_exporter" http_ok "http://127.0.0.1:$BP/metrics"
wait_for 30 "Alertmanager" http_ok "http://127.0.0.1:$AP/-/ready"
wait_for 60 "Prometheus" http_ok "http://127.0.0.1:$PP/-/ready"
# Prometheus knows its Alertmanager, has loaded the rule and has stored a passing probe.
prom_ready() {
  curl -fsS --max-time 2 "http://127.0.0.1:$PP/api/v1/alertmanagers" | grep -q "127.0.0.1:$AP" &&
  curl -fsS --max-time 2 "http://127.0.0.1:$PP/api/v1/rules" | grep -q '"TargetDown"' &&
  curl -fsS --max-time 2 -G "http://127.0.0.1:$PP/api/v1/query" --data-urlencode 'query=probe_success == 1' | grep -q '"value"'
}
wait_for $((INTERVAL * 4 + 30)) "Prometheus's first passing probe" prom_ready
# mxwarden has judged the target up.
mxw_ready() { curl -fsS --max-time 2 "http://127.0.0.1:$MP/api/v1/status" | grep -q '"state":"up"'; }
wait_for $((INTERVAL * 4 + 30)) "mxwarden's first passing probe" mxw_ready
# Both stacks have probed the target at least twice (a steady rhythm), and one more interval.
both_probed() {
  curl -fsS --max-time 2 "http://127.0.0.1:$HP/seen" |
    python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s.get("/mxwarden",0)>=2 and s.get("/blackbox",0)>=2 else 1)'
}
wait_for $((INTERVAL * 4 + 30)) "both stacks to probe the target" both_probed
sleep "$INTERVAL"
alive "$MXW" "$BB" "$AM" "$PROM" || die "a process of the benchmark exited during start-up (logs in $DIR)"

# ---------------------------------------------------------------- the run
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
echo "== $N flips, interval ${INTERVAL}s, down $((DOWN - INTERVAL))–${DOWN}s, up ${UP}s, seed $SEED (about $(( N * (DOWN + UP) / 60 + 1 )) min)" >&2
curl -fsS --max-time 5 -X POST "http://127.0.0.1:$HP/start" >/dev/null || die "the harness did not take /start"
deadline=$((SECONDS + N * (DOWN + UP + INTERVAL) + 60))
while kill -0 "$HARNESS" 2>/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] || die "the flips did not finish in time"
  alive "$MXW" "$BB" "$AM" "$PROM" || {
    for f in mxwarden prometheus alertmanager blackbox; do echo "--- $f.log" >&2; tail -5 "$DIR/$f.log" >&2; done
    die "a process of the benchmark exited during the run"
  }
  sleep 1
done
wait "$HARNESS" || { cat "$DIR/harness.log" >&2; die "the harness failed"; }
[ -z "${EVENTS_OUT:-}" ] || cp "$DIR/events.json" "$EVENTS_OUT"

# ---------------------------------------------------------------- the report
version() { "$1" --version 2>&1 | head -1 | awk '{print $3}'; }
echo "# bench-detect.sh, $STARTED, $(nproc) CPUs, load before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "N=$N flips, INTERVAL=${INTERVAL}s (down $((DOWN - INTERVAL))–${DOWN}s, up ${UP}s each), SEED=$SEED;" \
  "$("$MXWARDEN" --version 2>&1 | head -1), prometheus $(version prometheus)," \
  "blackbox_exporter $(version prometheus-blackbox-exporter), alertmanager $(version prometheus-alertmanager)."
echo
python3 scripts/lib/detect-harness.py report "$DIR/events.json" --interval "$INTERVAL"
