#!/usr/bin/env python3
"""failover-bench.py: the driver of scripts/bench-failover.sh. Python 3 standard library only;
everything binds 127.0.0.1.

  failover-bench.py --mxwarden BIN --store URL --dir DIR [--kills 10] [--lease 15s] [--seed S]

Starts a target (GET /health answers 200 or 503 as the driver says) and a webhook receiver
(POST /hook, arrival time taken before the body is read), writes two configs (instances
`alpha` and `bravo`, one store, one check every second, the rule `probe_success == 0` as a
critical page to the receiver) and starts both `mxwarden run`. Then, KILLS times:

  1. waits until exactly one instance says it leads (`/api/v1/status` → leader.this_instance)
     and the other names it;
  2. takes the target down and waits for the page (decided and sent by the leader);
  3. after a random wait of up to a third of the lease (so the kill falls at a random point of
     the leader's renewal cycle), at one instant `kill -9`s the leader and brings the target back up: the resolve can only
     be decided by a leader, so the time from the kill to the resolve's arrival is the time
     until the other instance decided as leader (plus at most one 1 s probe and the delivery);
     the time until the survivor's status says it leads is printed too;
  4. restarts the killed instance (it follows) and checks that nothing arrived twice.

Prints each round, then p50/p95/max (nearest rank) of kill → resolve and kill → leads, the
notifications received against those expected (one page and one resolve per round), and the
goal line (p95 kill → decided ≤ 30 s). Exits 1 when a wait times out or something doubled.
"""
import argparse
import http.server
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.up = True
        self.arrivals = []  # (monotonic, status, delivery id)


STATE = State()


class Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body=b"ok"):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Target(Quiet):
    def do_GET(self):
        with STATE.lock:
            up = STATE.up
        self.answer(200 if up else 503, b"up" if up else b"down")


class Hook(Quiet):
    def do_POST(self):
        at = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        with STATE.lock:
            STATE.arrivals.append((at, body.get("status"), self.headers.get("X-Mxwarden-Delivery")))
        self.answer(200)


def serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def die(msg):
    print(f"bench-failover: {msg}", file=sys.stderr)
    sys.exit(1)


def wait_for(what, secs, fn):
    deadline = time.monotonic() + secs
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            die(f"timed out after {secs}s waiting for {what}")
        time.sleep(0.05)


class Instance:
    def __init__(self, args, name, target_port, hook_port):
        self.name, self.args = name, args
        self.port = free_port()
        self.config = os.path.join(args.dir, f"{name}.yaml")
        self.log = os.path.join(args.dir, f"{name}.log")
        self.proc = None
        with open(self.config, "w") as f:
            f.write(f"""instance: {name}
leader: {{ lease: {args.lease} }}
defaults: {{ interval: 1s, timeout: 1s }}
store: "{args.store}"
listen: 127.0.0.1:{self.port}
checks:
  - name: web
    service: web
    http: {{ url: "http://127.0.0.1:{target_port}/health" }}
rules:
  - alert: WebDown
    expr: probe_success{{check="web"}} == 0
    labels: {{ severity: critical, service: web }}
    annotations: {{ summary: "web is down" }}
alerting:
  receivers:
    hook: {{ webhook: {{ url: "http://127.0.0.1:{hook_port}/hook" }} }}
  tiers:
    critical: {{ receivers: [hook] }}
""")

    def start(self):
        env = {k: v for k, v in os.environ.items() if k not in ("RUST_LOG", "MXWARDEN_FAILPOINT")}
        log = open(self.log, "a")
        self.proc = subprocess.Popen([self.args.mxwarden, "--config", self.config, "run"],
                                     stdout=subprocess.DEVNULL, stderr=log, env=env)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def leader(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/status", timeout=2) as r:
                return json.load(r).get("leader")
        except Exception:
            return None


def lease_seconds(text):
    m = re.fullmatch(r"(\d+)(s|m)", text)
    if not m:
        die(f"--lease must be like 15s or 1m, got {text!r}")
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1)


def nearest_rank(values, q):
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mxwarden", required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--lease", default="15s")
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    print(f"seed {args.seed}", file=sys.stderr)
    random.seed(args.seed)
    target_port, hook_port = serve(Target), serve(Hook)
    instances = [Instance(args, n, target_port, hook_port) for n in ("alpha", "bravo")]
    for i in instances:
        i.start()
    try:
        run(args, instances)
    finally:
        for i in instances:
            i.stop()


def arrivals(status):
    with STATE.lock:
        return [a for a in STATE.arrivals if a[1] == status]


def current_leader(instances):
    views = [i.leader() for i in instances]
    leading = [k for k, v in enumerate(views) if v and v.get("this_instance")]
    agree = all(v and v.get("instance") == views[0].get("instance") for v in views)
    return leading[0] if len(leading) == 1 and agree else None


def run(args, instances):
    to_decide, to_lead = [], []
    print(f"| round | killed | kill → survivor leads (s) | kill → resolve arrives (s) |")
    print(f"|---:|---|---:|---:|")
    for n in range(1, args.kills + 1):
        leader = wait_for("one agreed leader", 90, lambda: (lambda k: None if k is None else k + 1)(current_leader(instances))) - 1
        other = instances[1 - leader]
        pages = len(arrivals("firing"))
        with STATE.lock:
            STATE.up = False
        wait_for("the page", 30, lambda: len(arrivals("firing")) > pages)
        resolves = len(arrivals("resolved"))
        time.sleep(random.uniform(0.5, 0.5 + lease_seconds(args.lease) / 3))
        killed_at = time.monotonic()
        instances[leader].kill9()
        with STATE.lock:
            STATE.up = True
        led = wait_for("the survivor to lead", 60, lambda: other.leader() and other.leader().get("this_instance") and time.monotonic())
        wait_for("the resolve", 60, lambda: len(arrivals("resolved")) > resolves)
        resolved_at = arrivals("resolved")[resolves][0]
        to_lead.append(led - killed_at)
        to_decide.append(resolved_at - killed_at)
        print(f"| {n} | {instances[leader].name} | {to_lead[-1]:.2f} | {to_decide[-1]:.2f} |", flush=True)
        instances[leader].start()
    time.sleep(3)
    with STATE.lock:
        ids = [a[2] for a in STATE.arrivals]
    firing, resolved = len(arrivals("firing")), len(arrivals("resolved"))
    print()
    print(f"| measure | p50 | p95 | max |")
    print(f"|---|---:|---:|---:|")
    for name, v in (("kill → survivor leads", to_lead), ("kill → resolve arrives (decided by the new leader)", to_decide)):
        print(f"| {name} | {nearest_rank(v, 0.5):.2f} s | {nearest_rank(v, 0.95):.2f} s | {max(v):.2f} s |")
    print()
    print(f"notifications: {firing} pages, {resolved} resolves (expected {args.kills} each); "
          f"distinct delivery ids {len(set(ids))} of {len(ids)}")
    p95 = nearest_rank(to_decide, 0.95)
    print(f"goal: p95 kill → decided {p95:.2f} s ≤ 30 s: {'met' if p95 <= 30 else 'NOT met'}")
    if firing != args.kills or resolved != args.kills or len(set(ids)) != len(ids):
        die("a notification was lost or doubled")


if __name__ == "__main__":
    main()
