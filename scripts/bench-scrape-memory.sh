#!/usr/bin/env bash
# bench-scrape-memory.sh — peak RSS of scrapes of hostile metrics pages (issue 13, item 3).
#
# Serves, from a local Python server (scripts/lib/hostile-metrics.py):
# - 580k: 580,000 series of `hostile_series`, a family a rule reads (25.8 MB, under the
#   default 32 MiB scrape_body_limit);
# - 1m: 1,000,000 series of `hostile_series` (44.9 MB), for `mxwarden scrape --json`;
# - rotating: 10,000 series of `hostile_series` that are new at every request (so the series
#   store fills to series_limit), with a 6-byte label value, and with a 3,000-byte one;
# and measures, with the limits at their defaults:
# - `mxwarden run` scraping each of rotating, rotating with long values, and 580k every 2 s
#   for SECONDS_RUN seconds: VmHWM (peak RSS) from /proc/PID/status, and whether /healthz
#   still answers;
# - `mxwarden check` (one shot) on 580k: max RSS from GNU time;
# - `mxwarden scrape --json --body-limit 64MiB` of 1m to a file: max RSS from GNU time.
#
# Environment: MXW (the binary; default: build the release one), SECONDS_RUN (default 30).
# Everything binds 127.0.0.1 and is stopped at the end. Results go to stdout as Markdown.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${SECONDS_RUN:-30}
if [ -z "${MXW:-}" ]; then
  echo "== building mxwarden (release)" >&2
  cargo build --release --quiet --bin mxwarden
  MXW=${CARGO_TARGET_DIR:-$ROOT/target}/release/mxwarden
fi

DIR=$(mktemp -d /tmp/mxwarden-scrape-mem-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "timed out waiting for $1" >&2; exit 1; }
kib_of() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }

mkdir "$DIR/www"
WP=$(free_port)
python3 "$ROOT/scripts/lib/hostile-metrics.py" "$WP" "$DIR/www" & PIDS+=($!)
wait_http "http://127.0.0.1:$WP/580k.txt"

# config PATH: scrape PATH every 2 s, with a rule that reads hostile_series.
LP=$(free_port)
config() {
  printf '%s\n' \
    "listen: 127.0.0.1:$LP" \
    "defaults: { interval: 2s, timeout: 10s }" \
    "checks:" \
    "  - name: hostile" \
    "    scrape: { url: \"http://127.0.0.1:$WP$1\" }" \
    "rules:" \
    "  - alert: HostileSeriesHigh" \
    "    expr: hostile_series > 1e9" \
    "    labels: { severity: warning }" >"$DIR/mxwarden.yaml"
}

# daemon CASE: `mxwarden run` on the current config for SECS seconds; prints a table row.
daemon() {
  "$MXW" --config "$DIR/mxwarden.yaml" run >"$DIR/run.log" 2>&1 & DP=$!
  PIDS+=($DP)
  wait_http "http://127.0.0.1:$LP/healthz"
  sleep "$SECS"
  HWM=$(kib_of "$DP" VmHWM)
  RSS=$(kib_of "$DP" VmRSS)
  HEALTH=$(curl -fsS "http://127.0.0.1:$LP/healthz" || echo unreachable)
  DETAIL=$(curl -fsS "http://127.0.0.1:$LP/api/v1/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["checks"][0]["detail"])')
  echo "| \`mxwarden run\`, $1, ${SECS} s | $((HWM / 1024)) MiB (VmHWM $HWM KiB; VmRSS at the end $((RSS / 1024)) MiB) | /healthz: $HEALTH; check detail: $DETAIL |"
  kill -TERM "$DP"; wait "$DP" 2>/dev/null || true
}

echo "# bench-scrape-memory.sh, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "binary: $MXW ($(stat -c %s "$MXW") bytes)"
echo
echo "| case | peak RSS | notes |"
echo "|---|---|---|"

config "/rotating?pad=6"
daemon "rotating page (10,000 new series per scrape, 6-byte value) every 2 s"
config "/rotating?pad=3000"
daemon "rotating page (10,000 new series per scrape, 3,000-byte value) every 2 s"
config /580k.txt
daemon "580k page every 2 s"

/usr/bin/time -q -f '%M' -o "$DIR/check.kib" "$MXW" --config "$DIR/mxwarden.yaml" check >"$DIR/check.out" 2>&1 || true
echo "| \`mxwarden check\`, 580k page | $(( $(cat "$DIR/check.kib") / 1024 )) MiB (max RSS $(cat "$DIR/check.kib") KiB) | $(grep -m1 hostile "$DIR/check.out" | tr -s ' ' | cut -c1-160) |"

/usr/bin/time -q -f '%M' -o "$DIR/scrape.kib" "$MXW" scrape --json --body-limit 64MiB "http://127.0.0.1:$WP/1m.txt" >"$DIR/scrape.json" 2>"$DIR/scrape.err"
ROWS=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$DIR/scrape.json")
echo "| \`mxwarden scrape --json\`, 1m page | $(( $(cat "$DIR/scrape.kib") / 1024 )) MiB (max RSS $(cat "$DIR/scrape.kib") KiB) | $ROWS rows written |"
