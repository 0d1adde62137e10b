#!/usr/bin/env bash
# bench-scale.sh — 10,000 HTTP endpoints at a 60 s interval (issue 20): `mxwarden run` side by
# side with Prometheus + blackbox_exporter probing the same targets at the same interval, in one
# run, against local targets.
#
# Targets: crates/target-farm (`mxwarden-target-farm`), N endpoints per side over 4 loopback
#   ports; mxwarden probes /m/<i>, the peer /p/<i>, so the farm counts each side's requests and
#   how many distinct targets each side asked within the last interval. Its CPU is in neither
#   figure.
# mxwarden: N `http` checks (expect status 200 and latency under 2 s), interval 60 s, timeout
#   5 s; the uptime history written (it always is); two rules over every check (`EndpointDown`:
#   probe_success == 0 for 2m, critical; `EndpointSlow`: probe_duration_seconds > 2 for 5m,
#   warning) routed to a webhook (critical) and a daily digest (warning); status page, API and
#   /metrics served.
# Peer: Prometheus (Debian, /usr/bin/prometheus) with one scrape job of the N targets through
#   blackbox_exporter (Debian `prometheus-blackbox-exporter`, module http_2xx, ip4, 5 s), file_sd
#   targets and the usual relabelling to __param_target, scrape_interval 60s, its TSDB on (its
#   history) and the same two rules (evaluation_interval 15s, mxwarden's sweep period).
# Both sides start together; after WARMUP seconds (default 75: one interval for the first round,
#   which both spread over the interval, and 15 s for start-up) CPU seconds (utime + stime from
#   /proc/PID/stat; Prometheus + blackbox_exporter summed) are taken over WINDOW seconds (default
#   300: five rounds). RSS: VmRSS sampled every 5 s in the window (peak and end) and VmHWM (the
#   peak of the whole life, start-up included) from /proc/PID/status.
#
# Environment: N (default 10000), WINDOW (300), WARMUP (75), CARGO_TARGET_DIR (default ./target).
# Everything binds 127.0.0.1 and is stopped at the end. Results go to stdout as Markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${N:-10000}
WINDOW=${WINDOW:-300}
WARMUP=${WARMUP:-75}
PORTS=4

bash scripts/install-test-deps.sh >/dev/null
command -v prometheus >/dev/null || { echo "prometheus (Debian) is missing" >&2; exit 1; }
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
MXW=$TARGET/release/mxwarden
FARM=$TARGET/release/mxwarden-target-farm
echo "== building mxwarden and the target farm (release)" >&2
cargo build --release --quiet -p mxwarden --bin mxwarden
cargo build --release --quiet -p mxwarden-target-farm

DIR=$(mktemp -d /tmp/mxwarden-scale-XXXXXX)
chmod 755 "$DIR"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 600); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "timed out waiting for $1" >&2; exit 1; }
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"; }
kib_of() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
alive() { for p in "$@"; do kill -0 "$p" 2>/dev/null || { echo "process $p exited early; logs in $DIR" >&2; tail -20 "$DIR"/*.log >&2; trap - EXIT; exit 1; }; done; }

echo "# bench-scale.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, commit $(git rev-parse --short HEAD), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# The targets.
"$FARM" --targets "$N" --ports "$PORTS" --sides m,p >"$DIR/farm.ports" 2>"$DIR/farm.log" & PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$DIR/farm.ports" ] && break; sleep 0.1; done
read -r -a FP <"$DIR/farm.ports"
COUNT="http://127.0.0.1:${FP[0]}/count"
wait_http "$COUNT"

# mxwarden's config.
MP=$(free_port)
python3 - "$DIR" "$N" "$MP" "${FP[@]}" >"$DIR/mxwarden.yaml" <<'PY'
import sys
d, n, mp, ports = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
print(f"store: {d}/mxwarden.db")
print(f"listen: 127.0.0.1:{mp}")
print("defaults: { interval: 60s, timeout: 5s }")
print("checks:")
for i in range(n):
    p = ports[i % len(ports)]
    print(f'  - {{ name: t{i}, http: {{ url: "http://127.0.0.1:{p}/m/{i}", expect: {{ status: 200, max_latency: 2s }} }} }}')
print("""rules:
  - alert: EndpointDown
    expr: probe_success == 0
    for: 2m
    labels: { severity: critical }
    annotations: { summary: "{{ $labels.check }} is down" }
  - alert: EndpointSlow
    expr: probe_duration_seconds > 2
    for: 5m
    labels: { severity: warning }
    annotations: { summary: "{{ $labels.check }} answers in {{ $value }} s" }
alerting:
  receivers:
    hook: { webhook: { url: "http://127.0.0.1:%s/hook" } }
  tiers:
    critical: { receivers: [hook] }
    warning: { receivers: [hook], digest: { daily: "09:00" } }""" % ports[0])
PY

# The peer's configs.
BP=$(free_port); PP=$(free_port)
cat >"$DIR/blackbox.yml" <<YAML
modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      method: GET
      valid_status_codes: [200]
      preferred_ip_protocol: ip4
YAML
python3 - "$N" "${FP[@]}" >"$DIR/targets.json" <<'PY'
import json, sys
n, ports = int(sys.argv[1]), sys.argv[2:]
print(json.dumps([{"targets": [f"http://127.0.0.1:{ports[i % len(ports)]}/p/{i}" for i in range(n)], "labels": {}}]))
PY
cat >"$DIR/rules.yml" <<'YAML'
groups:
  - name: endpoints
    rules:
      - alert: EndpointDown
        expr: probe_success == 0
        for: 2m
        labels: { severity: critical }
        annotations: { summary: "{{ $labels.instance }} is down" }
      - alert: EndpointSlow
        expr: probe_duration_seconds > 2
        for: 5m
        labels: { severity: warning }
        annotations: { summary: "{{ $labels.instance }} answers in {{ $value }} s" }
YAML
cat >"$DIR/prometheus.yml" <<YAML
global:
  scrape_interval: 60s
  scrape_timeout: 10s
  evaluation_interval: 15s
rule_files: [$DIR/rules.yml]
scrape_configs:
  - job_name: blackbox
    metrics_path: /probe
    params: { module: [http_2xx] }
    file_sd_configs: [{ files: [$DIR/targets.json] }]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: 127.0.0.1:$BP
YAML
promtool check config "$DIR/prometheus.yml" >/dev/null
t0=$(date +%s.%N)
"$MXW" --config "$DIR/mxwarden.yaml" config check >/dev/null
t1=$(date +%s.%N)
CHECK_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')

# Both sides start together.
"$MXW" --config "$DIR/mxwarden.yaml" run >"$DIR/mxwarden.log" 2>&1 & MXW_PID=$!; PIDS+=($MXW_PID)
prometheus-blackbox-exporter --config.file="$DIR/blackbox.yml" --web.listen-address="127.0.0.1:$BP" \
  >"$DIR/blackbox.log" 2>&1 & BB_PID=$!; PIDS+=($BB_PID)
prometheus --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/tsdb" \
  --web.listen-address="127.0.0.1:$PP" >"$DIR/prometheus.log" 2>&1 & PROM_PID=$!; PIDS+=($PROM_PID)
START=$(date +%s)
wait_http "http://127.0.0.1:$MP/healthz"
STARTUP_SECS=$(( $(date +%s) - START ))
sleep $(( START + WARMUP - $(date +%s) ))
alive "$MXW_PID" "$BB_PID" "$PROM_PID"

c_m0=$(cpu_of "$MXW_PID"); c_p0=$(cpu_of "$PROM_PID"); c_b0=$(cpu_of "$BB_PID")
n0=$(curl -fsS "$COUNT")
: >"$DIR/rss"
for ((t = 5; t <= WINDOW; t += 5)); do
  sleep $(( START + WARMUP + t - $(date +%s) > 0 ? START + WARMUP + t - $(date +%s) : 0 ))
  alive "$MXW_PID" "$BB_PID" "$PROM_PID"
  echo "$(kib_of "$MXW_PID" VmRSS) $(kib_of "$PROM_PID" VmRSS) $(kib_of "$BB_PID" VmRSS)" >>"$DIR/rss"
done
c_m1=$(cpu_of "$MXW_PID"); c_p1=$(cpu_of "$PROM_PID"); c_b1=$(cpu_of "$BB_PID")
n1=$(curl -fsS "$COUNT?within=62")
hwm_m=$(kib_of "$MXW_PID" VmHWM); hwm_p=$(kib_of "$PROM_PID" VmHWM); hwm_b=$(kib_of "$BB_PID" VmHWM)
anon_m=$(kib_of "$MXW_PID" RssAnon); file_m=$(kib_of "$MXW_PID" RssFile)
rss_m=$(kib_of "$MXW_PID" VmRSS); rss_p=$(kib_of "$PROM_PID" VmRSS); rss_b=$(kib_of "$BB_PID" VmRSS)

# mxwarden's surfaces with N checks: how long and how large (after the window, not in its CPU).
surface() {
  curl -fsS --max-time 60 -o /dev/null -w '%{time_total} %{size_download}' "http://127.0.0.1:$MP$1" 2>/dev/null || echo "60 0"
}
S_PAGE=$(surface /); S_API=$(surface /api/v1/status); S_METRICS=$(surface /metrics)
PROM_UP=$(curl -fsS "http://127.0.0.1:$PP/api/v1/query" --data-urlencode 'query=count(probe_success == 1)' \
  | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)')
kill -TERM "$MXW_PID"; wait "$MXW_PID" 2>/dev/null || true
HIST=$(python3 - "$DIR/mxwarden.db" "$((START + WARMUP))" "$((START + WARMUP + WINDOW))" <<'PY'
import sqlite3, sys
db, a, b = sys.argv[1], int(sys.argv[2]) * 1000, int(sys.argv[3]) * 1000
c = sqlite3.connect(db)
rows = c.execute("SELECT count(*), count(DISTINCT check_id) FROM results WHERE at >= ? AND at < ?", (a, b)).fetchone()
print(f"{rows[0]} {rows[1]}")
PY
)

echo "## $N HTTP endpoints at a 60 s interval: mxwarden run against Prometheus + blackbox_exporter"
echo
echo "Window: ${WINDOW} s after a ${WARMUP} s warm-up, both sides started together. \`mxwarden config check\` on the"
echo "$N-check config: ${CHECK_SECS} s; \`mxwarden run\` served /healthz ${STARTUP_SECS} s after start."
echo "Expected requests per side in the window: $((N * WINDOW / 60))."
echo
echo "| side | requests served in the window | targets asked in the last 62 s | CPU seconds | CPU share of one core | RSS end | RSS peak in window | VmHWM (life) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
python3 - "$n0" "$n1" "$WINDOW" "$DIR/rss" "$c_m0" "$c_m1" "$c_p0" "$c_p1" "$c_b0" "$c_b1" \
  "$rss_m" "$rss_p" "$rss_b" "$hwm_m" "$hwm_p" "$hwm_b" "$(prometheus --version 2>&1 | head -1 | awk '{print $3}')" \
  "$(prometheus-blackbox-exporter --version 2>&1 | head -1 | awk '{print $3}')" <<'PY'
import json, sys
a = sys.argv[1:]
n0, n1, window = json.loads(a[0]), json.loads(a[1]), float(a[2])
samples = [list(map(int, l.split())) for l in open(a[3]) if l.strip()]
cm, cp, cb = float(a[5]) - float(a[4]), float(a[7]) - float(a[6]), float(a[9]) - float(a[8])
rm, rp, rb, hm, hp, hb = (int(x) / 1024 for x in a[10:16])
pm = max(s[0] for s in samples) / 1024
pp = max(s[1] for s in samples) / 1024
pb = max(s[2] for s in samples) / 1024
ppb = max(s[1] + s[2] for s in samples) / 1024
req = lambda s: n1[s]["requests"] - n0[s]["requests"]
seen = lambda s: f'{n1[s]["targets_seen"]} of {n1[s]["targets"]}'
row = lambda name, r, seen, c, end, peak, hwm: print(f"| {name} | {r} | {seen} | {c:.2f} | {100 * c / window:.1f} % | {end:.1f} MiB | {peak:.1f} MiB | {hwm:.1f} MiB |")
row("mxwarden run", req("m"), seen("m"), cm, rm, pm, hm)
row(f"Prometheus {a[16]}", "", "", cp, rp, pp, hp)
row(f"blackbox_exporter {a[17]}", "", "", cb, rb, pb, hb)
row("**Prometheus + blackbox_exporter**", req("p"), seen("p"), cp + cb, rp + rb, ppb, hp + hb)
print()
ratio = (cp + cb) / cm if cm > 0 else float("inf")
print(f"CPU: mxwarden used **1/{ratio:.1f}** of the peer's CPU seconds (goal ≤ 1/5: {'met' if ratio >= 5 else 'NOT met'}); "
      f"RSS peak {max(pm, hm):.1f} MiB = {max(pm, hm) * 1.048576:.1f} MB (goal ≤ 200 MB: {'met' if max(pm, hm) * 1.048576 <= 200 else 'NOT met'}).")
PY
echo
read -r hist_rows hist_checks <<<"$HIST"
awk -v a="$anon_m" -v f="$file_m" 'BEGIN { printf "mxwarden at the end: %.1f MiB anonymous (heap, stacks), %.1f MiB file-backed (code).\n\n", a / 1024, f / 1024 }'
echo "mxwarden's history rows in the window: $hist_rows, of $hist_checks distinct checks. Prometheus: $PROM_UP targets with probe_success 1 at the end."
echo
echo "| mxwarden surface, $N checks | time | size |"
echo "|---|---:|---:|"
for s in "status page /:$S_PAGE" "/api/v1/status:$S_API" "/metrics:$S_METRICS"; do
  name=${s%%:*}; read -r t b <<<"${s#*:}"
  awk -v n="$name" -v t="$t" -v b="$b" 'BEGIN { printf "| %s | %.0f ms | %.1f KiB |\n", n, t * 1000, b / 1024 }'
done
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
