#!/usr/bin/env bash
# measure-idle-flood.sh [BIN] [N] [SOFT:HARD] — what N idle, half-sent connections do to
# `mxwarden run` (default N=10000, open-file limits SOFT:HARD default 1024:1024): a local HTTP
# target is probed every second while a client holds N connections that each sent half a request
# head. For 8 s it samples /healthz (slowest answer), the probe's state and fresh results in the
# status API, and the daemon's open descriptors; then prints those, how long opening the N
# connections took, and the daemon's peak RSS (VmHWM) and RSS. BIN defaults to
# target/debug/mxwarden (built first). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${1:-}" ]; then
  cargo build --quiet
  BIN=${CARGO_TARGET_DIR:-target}/debug/mxwarden
else
  BIN=$1
fi
N=${2:-10000}
LIMITS=${3:-1024:1024}
work=$(mktemp -d /tmp/mxwarden-flood.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
target_port=$(free_port)
port=$(free_port)
python3 -m http.server "$target_port" --bind 127.0.0.1 --directory "$work" >/dev/null 2>&1 &
target=$!
cat >"$work/mxwarden.yaml" <<YAML
listen: 127.0.0.1:$port
defaults: { interval: 1s, timeout: 2s }
checks:
  - name: web
    http: { url: "http://127.0.0.1:$target_port/" }
YAML
prlimit --nofile="$LIMITS" -- "$BIN" --config "$work/mxwarden.yaml" run 2>"$work/daemon.log" &
daemon=$!
trap 'kill "$daemon" "$target" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 - "$port" "$daemon" "$N" <<'PY'
import json, os, resource, socket, sys, time, urllib.request
port, pid, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
base = f"http://127.0.0.1:{port}"
def get(path):
    with urllib.request.urlopen(base + path, timeout=30) as r:
        return r.status, r.read()
def web():
    _, body = get("/api/v1/status")
    return next(c for c in json.loads(body)["checks"] if c["name"] == "web")
def status_kb(field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field):
            return int(line.split()[1])
deadline = time.time() + 30
while True:
    try:
        if web()["state"] == "up":
            break
    except Exception:
        pass
    if time.time() > deadline:
        sys.exit("the daemon did not start probing")
    time.sleep(0.2)
print(f"daemon open-file limit: {open(f'/proc/{pid}/limits').read().split('Max open files')[1].split()[0]}")
print(f"before: {len(os.listdir(f'/proc/{pid}/fd'))} descriptors, RSS {status_kb('VmRSS')} kB")
started = time.time()
held = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    except OSError:
        pass
    held.append(s)
print(f"opened {n} half-sent connections in {time.time() - started:.2f} s")
since = int(time.time() * 1000)
slowest, fresh, states, fds_max, samples = 0.0, set(), set(), 0, 0
end = time.time() + 8
while time.time() < end:
    t = time.time()
    code, body = get("/healthz")
    assert code == 200 and body == b"ok\n", (code, body)
    slowest = max(slowest, time.time() - t)
    w = web()
    states.add(w["state"])
    if w["last_run_ms"] > since:
        fresh.add(w["last_run_ms"])
    fds_max = max(fds_max, len(os.listdir(f"/proc/{pid}/fd")))
    samples += 1
    time.sleep(0.2)
print(f"while held ({samples} samples over 8 s): /healthz slowest {slowest * 1000:.1f} ms; "
      f"probe states {sorted(states)}; {len(fresh)} fresh results; at most {fds_max} descriptors open")
print(f"daemon RSS {status_kb('VmRSS')} kB, peak {status_kb('VmHWM')} kB")
PY
grep -ciE "too many open files|os error 24" "$work/daemon.log" | sed 's/^/daemon log lines naming EMFILE: /' || true
