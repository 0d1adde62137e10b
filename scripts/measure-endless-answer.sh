#!/usr/bin/env bash
# measure-endless-answer.sh [BIN] — what an endless answer costs `mxwarden notify test`: a local
# server answers the Matrix join with 200 and a chunked body that never ends; prints the
# command's wall time and peak RSS (GNU time) and how many bytes the server could push before
# mxwarden hung up. BIN defaults to target/debug/mxwarden (built first).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${1:-}" ]; then
  cargo build --quiet
  BIN=${CARGO_TARGET_DIR:-target}/debug/mxwarden
else
  BIN=$1
fi
work=$(mktemp -d /tmp/mxwarden-endless.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/endless.py" <<'PY'
import http.server, socketserver, sys
CHUNK = b"{" * 65536
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n: self.rfile.read(n)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        try:
            while True:
                self.wfile.write(b"%x\r\n" % len(CHUNK) + CHUNK + b"\r\n")
                sent += len(CHUNK)
        except Exception:
            pass
        print(f"server pushed {sent} bytes", file=sys.stderr, flush=True)
    do_POST = do_PUT = answer
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer): daemon_threads = True
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$work/endless.py" "$port" 2>"$work/server.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
cat >"$work/mxwarden.yaml" <<YAML
alerting:
  receivers:
    endless: { matrix: { homeserver: "http://127.0.0.1:$port", room: "!r:example.org", access_token: t } }
YAML
sleep 1
/usr/bin/time -v "$BIN" --config "$work/mxwarden.yaml" notify test endless 2>"$work/time.txt" || true
grep -E "not delivered|Elapsed|Maximum resident" "$work/time.txt"
sleep 1
cat "$work/server.log"
