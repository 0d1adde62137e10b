#!/usr/bin/env bash
# bench-backup.sh [REPS] — `mxwarden backup run` against a plain `pg_dump -Fc -Z0 | zstd -LEVEL`
# pipeline on the same ~1 GB database, in the same run, alternating (A B A B …) after one
# warm-up of each. Measures wall time and CPU (user+sys of the client processes: mxwarden with
# its pg_dump, or pg_dump + zstd; the server's own CPU is the same for both and not counted),
# prints every repetition and the medians, and the overhead ratio mxwarden / plain.
# The cluster is a throw-away one (scripts/lib/pg-init.sh) under /tmp, removed at the end.
# Environment: REPS (default 5), ROWS (default 3300000 ≈ 1 GB database), LEVEL (zstd, default 3),
# TARGET (default `dir`: a local directory against `> file`; `s3`: a local S3-compatible server,
# s3s-fs on 127.0.0.1, mxwarden's `backup.to` against `| rclone rcat`, both with 8 MiB parts,
# 2 uploads at a time). Also reports mxwarden's peak RSS (VmHWM of its own process, polled).
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-${REPS:-5}}
ROWS=${ROWS:-3300000}
LEVEL=${LEVEL:-3}
PGBIN=/usr/lib/postgresql/15/bin

if ! command -v zstd >/dev/null; then
  echo "== installing the zstd CLI" >&2
  apt-get install -y zstd >/dev/null
fi
TARGET=${TARGET:-dir}
if [ "$TARGET" = s3 ]; then
  if ! command -v rclone >/dev/null; then
    echo "== installing rclone" >&2
    apt-get install -y rclone >/dev/null
  fi
  if ! command -v s3s-fs >/dev/null && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ]; then
    echo "== installing s3s-fs" >&2
    cargo install s3s-fs --version 0.14.1 --features binary --locked --quiet
  fi
fi
echo "== cargo build --release" >&2
cargo build --release --quiet
MX=${CARGO_TARGET_DIR:-$PWD/target}/release/mxwarden

work=$(mktemp -d /tmp/mxwarden-bench-backup.XXXXXX)
chmod 755 "$work" # the postgres user must traverse it
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pg_started=
s3_pid=
cleanup() {
  if [ -n "$s3_pid" ]; then kill "$s3_pid" 2>/dev/null || true; wait "$s3_pid" 2>/dev/null || true; fi
  if [ -n "$pg_started" ]; then as_pg "$PGBIN/pg_ctl" -D "$work/pg/data" -m fast -w stop >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
trap cleanup EXIT
bash scripts/lib/pg-init.sh "$work/pg" "$port"
as_pg "$PGBIN/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -w start >/dev/null
pg_started=1
for _ in $(seq 100); do "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 0.2; done
psql() { command psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"; }

echo "== generating the database ($ROWS rows)" >&2
psql -d postgres -c "CREATE DATABASE bench"
# Matrix-like rows: ids, timestamps, a room id, JSON-ish text with some repetition.
psql -d bench -c "CREATE TABLE events AS SELECT g AS stream_ordering,
    1700000000000 + g * 37 AS origin_server_ts,
    '!room' || (g % 500) || ':example.org' AS room_id,
    '@user' || (g % 5000) || ':example.org' AS sender,
    '{\"type\":\"m.room.message\",\"content\":{\"body\":\"' || md5(g::text) || ' ' || md5((g * 7)::text) ||
      '\",\"msgtype\":\"m.text\"}}' AS json
  FROM generate_series(1, $ROWS) g"
psql -d bench -c "CREATE INDEX ON events (room_id, stream_ordering)"
psql -d bench -c "VACUUM ANALYZE events"
size=$(psql -d bench -c "SELECT pg_database_size('bench')")
echo "database size: $size bytes" >&2

"$MX" backup keygen --output "$work/identity.txt" >"$work/recipient.txt" 2>/dev/null
if [ "$TARGET" = s3 ]; then
  s3port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$work/s3/bench"
  S3FS=$(command -v s3s-fs || echo "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs")
  "$S3FS" --host 127.0.0.1 --port "$s3port" --access-key BENCHKEY --secret-key bench-secret-key "$work/s3" \
    >"$work/s3.log" 2>&1 &
  s3_pid=$!
  for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $s3port))" 2>/dev/null && break; sleep 0.1; done
  destination="to: s3://bench/mxwarden
  endpoint: http://127.0.0.1:$s3port
  path_style: true
  access_key_id: BENCHKEY
  secret_access_key: bench-secret-key"
else
  s3port=
  destination="dir: $work/backups"
fi
cat >"$work/mxwarden.yaml" <<YAML
services:
  postgres:
    kind: postgres
    dsn: "postgresql://postgres@127.0.0.1:$port/postgres?sslmode=disable"
backup:
  $destination
  pg_bin_dir: $PGBIN
  databases: [bench]
  globals: false
  zstd_level: $LEVEL
  encrypt_to: ["$(cat "$work/recipient.txt")"]
YAML

export MX PGBIN LEVEL work port size TARGET s3port
python3 - "$REPS" <<'PY'
import os, resource, statistics, subprocess, sys, time

reps = int(sys.argv[1])
mx, pgbin, level, work, port = (os.environ[k] for k in ("MX", "PGBIN", "LEVEL", "work", "port"))
env = dict(os.environ, PGHOST="127.0.0.1", PGPORT=port, PGUSER="postgres")

target, s3port = os.environ["TARGET"], os.environ.get("s3port", "")
peaks = []

def measured(cmd, watch=False, env=env):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env)
    hwm = 0
    while p.poll() is None:
        if watch:
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            hwm = max(hwm, int(line.split()[1]))
            except OSError:
                pass
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{cmd} failed with {p.returncode}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if watch:
        peaks.append(hwm / 1024)
    return wall, cpu

def stored_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs if not f.startswith("."))

def mxwarden():
    subprocess.run(["rm", "-rf", f"{work}/backups", f"{work}/s3/bench/mxwarden"], check=True)
    r = measured([mx, "--config", f"{work}/mxwarden.yaml", "backup", "run"], watch=True)
    return r + (stored_bytes(f"{work}/s3/bench/mxwarden" if target == "s3" else f"{work}/backups"),)

def plain():
    if target == "s3":
        out = f"{work}/s3/bench/plain/bench.dump.zst"
        subprocess.run(["rm", "-rf", f"{work}/s3/bench/plain"], check=True)
        rclone = ("rclone rcat --s3-chunk-size 8M --s3-upload-concurrency 2 --s3-upload-cutoff 8M "
                  "bench:bench/plain/bench.dump.zst")
        r = measured(["bash", "-c", f"set -o pipefail; {pgbin}/pg_dump -Fc -Z0 -d bench | zstd -{level} -q -c | {rclone}"],
                     # AWS_CA_BUNDLE (set on some machines) makes rclone's AWS SDK refuse its own HTTP transport.
                     env=dict({k: v for k, v in env.items() if k != "AWS_CA_BUNDLE"}, RCLONE_CONFIG_BENCH_TYPE="s3", RCLONE_CONFIG_BENCH_PROVIDER="Other",
                              RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="BENCHKEY",
                              RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="bench-secret-key",
                              RCLONE_CONFIG_BENCH_ENDPOINT=f"http://127.0.0.1:{s3port}",
                              RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true", RCLONE_CONFIG_BENCH_REGION="us-east-1"))
    else:
        out = f"{work}/plain.dump.zst"
        r = measured(["bash", "-c", f"set -o pipefail; {pgbin}/pg_dump -Fc -Z0 -d bench | zstd -{level} -q -c > {out}"])
    return r + (os.path.getsize(out),)

print(f"database {int(os.environ['size']) / 1e9:.2f} GB, zstd level {level}, target {target}, {reps} alternating repetitions after one warm-up each")
mxwarden(); plain()
rows = {"mxwarden": [], "plain": []}
for i in range(reps):
    for name, f in (("mxwarden", mxwarden), ("plain", plain)) if i % 2 == 0 else (("plain", plain), ("mxwarden", mxwarden)):
        wall, cpu, out = f()
        rows[name].append((wall, cpu, out))
        print(f"rep {i + 1} {name:9} wall {wall:7.2f} s  cpu {cpu:7.2f} s  output {out / 1e6:8.1f} MB", flush=True)
med = {n: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v), statistics.median(r[2] for r in v)) for n, v in rows.items()}
print()
print("| pipeline | median wall (s) | median CPU (s) | output (MB) |")
print("|---|---:|---:|---:|")
for n in ("mxwarden", "plain"):
    print(f"| {n} | {med[n][0]:.2f} | {med[n][1]:.2f} | {med[n][2] / 1e6:.1f} |")
print()
print(f"mxwarden peak RSS (VmHWM): median {statistics.median(peaks):.1f} MB, max {max(peaks):.1f} MB (goal: <= 64 MB)")
print(f"overhead ratio mxwarden / plain: wall {med['mxwarden'][0] / med['plain'][0]:.3f}, CPU {med['mxwarden'][1] / med['plain'][1]:.3f} (goal: wall <= 1.05)")
PY
