#!/usr/bin/env python3
"""detect-harness.py: the flipping target, the webhook receiver and the report of
scripts/bench-detect.sh. Python 3 standard library only; everything binds 127.0.0.1.

  detect-harness.py serve --target-port P --hook-port Q --interval SECONDS --flips N
                          --down SECONDS --up SECONDS --events FILE [--seed S]
                          [--start-timeout SECONDS]

    The target (port P) answers every GET with 200 "up" or 503 "down", whatever the path; each
    stack probes its own path (/mxwarden, /blackbox), and every probe is logged with the time
    the answer was chosen, its path and its status. The receiver (port Q) takes Alertmanager's
    webhook payload (version 4) on POST /<stack> (/mxwarden, /alertmanager) and logs the arrival
    time (taken before the body is read), the stack, the payload's status and its alerts.

    Control, on the receiver's port:
      GET  /health          200 "ok"
      GET  /seen            probes so far per path, as JSON: {"/mxwarden": 3, "/blackbox": 2}
      POST /start           start flipping (once)

    After /start (which must come within --start-timeout), N times: wait a random offset in
    [0, interval), flip to 503, stay down a random time in [down - interval, down] seconds
    (so the recovery, too, falls at a random phase of the probes), flip back to 200, stay up
    --up seconds. Every flip's time is logged at the moment the state changes. Then the log (flips,
    probes, notifications) is written to FILE as JSON and the process exits 0. It exits 1 when
    /start never comes. Times are logged twice: wall clock (time.time(), for the record) and
    monotonic (time.monotonic(), what the latencies are computed from).

  detect-harness.py report FILE --interval SECONDS [--goal-factor 0.95 --goal-slack 0.3]

    Reads the log and prints, in Markdown, per stack: flips caught, outage -> firing arrival
    and recovery -> resolved arrival (p50, p95, min, max, in seconds), how long after the first
    failing (or first passing) probe the notification arrived, notifications that belong to no
    flip, and the goal line. Percentiles are nearest-rank over the caught flips.
"""
import argparse
import json
import math
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STACKS = {"mxwarden": "/mxwarden", "prometheus": "/alertmanager"}  # stack -> receiver path
PROBE_PATHS = {"mxwarden": "/mxwarden", "prometheus": "/blackbox"}  # stack -> target path
LABELS = {"mxwarden": "mxwarden run", "prometheus": "Prometheus + blackbox_exporter + Alertmanager"}


def now():
    """(wall, monotonic) seconds."""
    return time.time(), time.monotonic()


class Log:
    """Everything that happened, guarded by one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.down = False
        self.flips = []  # {"to": "down"|"up", "wall", "mono"}
        self.probes = []  # {"path", "status", "wall", "mono"}
        self.notifications = []  # {"path", "status", "alerts": [{"status", "alertname"}], "wall", "mono"}
        self.started = threading.Event()

    def flip(self, down):
        with self.lock:
            wall, mono = now()
            self.down = down
            self.flips.append({"to": "down" if down else "up", "wall": wall, "mono": mono})

    def probe(self, path):
        """The status to answer a probe of path with; logs the probe."""
        with self.lock:
            wall, mono = now()
            status = 503 if self.down else 200
            self.probes.append({"path": path, "status": status, "wall": wall, "mono": mono})
            return status

    def seen(self):
        with self.lock:
            counts = {}
            for p in self.probes:
                counts[p["path"]] = counts.get(p["path"], 0) + 1
            return counts

    def dump(self, path):
        with self.lock:
            data = {"flips": self.flips, "probes": self.probes, "notifications": self.notifications}
        with open(path, "w") as f:
            json.dump(data, f)


class Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body, ctype="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def target_handler(log):
    class Target(Quiet):
        def do_GET(self):
            status = log.probe(self.path.split("?")[0])
            self.answer(status, b"up\n" if status == 200 else b"down\n")

    return Target


def hook_handler(log):
    class Hook(Quiet):
        def do_GET(self):
            if self.path == "/health":
                self.answer(200, b"ok\n")
            elif self.path == "/seen":
                self.answer(200, json.dumps(log.seen()).encode(), "application/json")
            else:
                self.answer(404, b"not found\n")

        def do_POST(self):
            wall, mono = now()  # the arrival, before the body is read
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            if self.path == "/start":
                log.started.set()
                self.answer(200, b"started\n")
                return
            if self.path not in STACKS.values():
                self.answer(404, b"not found\n")
                return
            try:
                payload = json.loads(body)
                entry = {
                    "path": self.path,
                    "status": payload.get("status"),
                    "alerts": [
                        {"status": a.get("status"), "alertname": (a.get("labels") or {}).get("alertname")}
                        for a in payload.get("alerts") or []
                    ],
                    "wall": wall,
                    "mono": mono,
                }
            except (ValueError, AttributeError) as e:
                entry = {"path": self.path, "status": None, "alerts": [], "error": str(e), "wall": wall, "mono": mono}
            with log.lock:
                log.notifications.append(entry)
            self.answer(200, b"ok\n")

    return Hook


def serve(args):
    log = Log()
    servers = [
        ThreadingHTTPServer(("127.0.0.1", args.target_port), target_handler(log)),
        ThreadingHTTPServer(("127.0.0.1", args.hook_port), hook_handler(log)),
    ]
    for s in servers:
        s.daemon_threads = True
        threading.Thread(target=s.serve_forever, daemon=True).start()
    if not log.started.wait(args.start_timeout):
        print(f"detect-harness: no POST /start within {args.start_timeout}s", file=sys.stderr)
        return 1
    rng = random.Random(args.seed)
    for k in range(args.flips):
        time.sleep(rng.uniform(0, args.interval))
        log.flip(True)
        time.sleep(rng.uniform(max(0.0, args.down - args.interval), args.down))
        log.flip(False)
        time.sleep(args.up)
        print(f"detect-harness: flip {k + 1}/{args.flips} done", file=sys.stderr, flush=True)
    log.dump(args.events)
    for s in servers:
        s.shutdown()
    return 0


# ------------------------------------------------------------------------------------ report


def nearest_rank(sorted_values, q):
    """The nearest-rank q-quantile of sorted values (q in (0, 1])."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def firing(n):
    return any(a["status"] == "firing" for a in n["alerts"])


def resolved(n):
    return bool(n["alerts"]) and all(a["status"] == "resolved" for a in n["alerts"])


def analyse(data, stack):
    """Per flip latencies of one stack, and its notifications that match no flip."""
    downs = [f["mono"] for f in data["flips"] if f["to"] == "down"]
    ups = [f["mono"] for f in data["flips"] if f["to"] == "up"]
    notes = sorted((n for n in data["notifications"] if n["path"] == STACKS[stack]), key=lambda n: n["mono"])
    probes = sorted((p for p in data["probes"] if p["path"] == PROBE_PATHS[stack]), key=lambda p: p["mono"])
    used = set()
    out = {"fire": [], "resolve": [], "fire_after_probe": [], "resolve_after_probe": [], "flips": len(downs)}
    for k, (d, u) in enumerate(zip(downs, ups)):
        end = downs[k + 1] if k + 1 < len(downs) else math.inf
        fire = next((i for i, n in enumerate(notes) if d <= n["mono"] < end and firing(n)), None)
        if fire is not None:
            used.add(fire)
            at = notes[fire]["mono"]
            out["fire"].append(at - d)
            probe = next((p["mono"] for p in probes if d <= p["mono"] and p["status"] == 503), None)
            if probe is not None and probe <= at:
                out["fire_after_probe"].append(at - probe)
        res = next((i for i, n in enumerate(notes) if u <= n["mono"] < end and resolved(n)), None)
        if res is not None:
            used.add(res)
            at = notes[res]["mono"]
            out["resolve"].append(at - u)
            probe = next((p["mono"] for p in probes if u <= p["mono"] and p["status"] == 200), None)
            if probe is not None and probe <= at:
                out["resolve_after_probe"].append(at - probe)
    out["stray"] = [n for i, n in enumerate(notes) if i not in used]
    return out


def summary(values):
    if not values:
        return "–", "–", "–", "–"
    s = sorted(values)
    return tuple(f"{v:.2f}" for v in (nearest_rank(s, 0.5), nearest_rank(s, 0.95), s[0], s[-1]))


def report(args):
    with open(args.events) as f:
        data = json.load(f)
    results = {stack: analyse(data, stack) for stack in STACKS}
    flips = results["mxwarden"]["flips"]
    print("| stack | flips caught (firing / resolved) | outage → firing p50 | p95 | min | max "
          "| recovery → resolved p50 | p95 | min | max |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for stack, r in results.items():
        f50, f95, fmin, fmax = summary(r["fire"])
        r50, r95, rmin, rmax = summary(r["resolve"])
        print(f"| {LABELS[stack]} | {len(r['fire'])}/{flips} / {len(r['resolve'])}/{flips} "
              f"| {f50} | **{f95}** | {fmin} | {fmax} | {r50} | {r95} | {rmin} | {rmax} |")
    print()
    print("After the first probe that saw the change (the part that does not depend on when the")
    print("next probe happens to run):")
    print()
    print("| stack | first failing probe → firing p50 | p95 | max | first passing probe → resolved p50 | p95 | max |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for stack, r in results.items():
        a50, a95, _, amax = summary(r["fire_after_probe"])
        b50, b95, _, bmax = summary(r["resolve_after_probe"])
        print(f"| {LABELS[stack]} | {a50} | {a95} | {amax} | {b50} | {b95} | {bmax} |")
    print()
    for stack, r in results.items():
        for n in r["stray"]:
            kinds = ",".join(sorted({a["status"] or "?" for a in n["alerts"]})) or "no alerts"
            print(f"- {LABELS[stack]}: a notification matched no flip ({kinds}, wall clock {n['wall']:.3f})")
    mxw, prom = results["mxwarden"], results["prometheus"]
    bound = args.goal_factor * args.interval + args.goal_slack
    if mxw["fire"] and prom["fire"]:
        m95 = nearest_rank(sorted(mxw["fire"]), 0.95)
        p95 = nearest_rank(sorted(prom["fire"]), 0.95)
        met = m95 <= bound and m95 < p95 and len(mxw["fire"]) == flips
        print(f"Goal: mxwarden's p95 outage → firing ≤ {args.goal_factor} × {args.interval:g} s + "
              f"{args.goal_slack:g} s = {bound:.2f} s and below the Prometheus stack's p95, every flip "
              f"caught: {m95:.2f} s vs {p95:.2f} s, {len(mxw['fire'])}/{flips} caught — "
              f"**{'met' if met else 'not met'}**.")
        return 0
    print(f"Goal: mxwarden's p95 outage → firing ≤ {bound:.2f} s and below the Prometheus stack's: "
          "**not measurable** (a stack caught no flip).")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--target-port", type=int, required=True)
    s.add_argument("--hook-port", type=int, required=True)
    s.add_argument("--interval", type=float, required=True)
    s.add_argument("--flips", type=int, required=True)
    s.add_argument("--down", type=float, required=True)
    s.add_argument("--up", type=float, required=True)
    s.add_argument("--events", required=True)
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--start-timeout", type=float, default=300)
    r = sub.add_parser("report")
    r.add_argument("events")
    r.add_argument("--interval", type=float, required=True)
    r.add_argument("--goal-factor", type=float, default=0.95)
    r.add_argument("--goal-slack", type=float, default=0.3)
    args = p.parse_args()
    return serve(args) if args.cmd == "serve" else report(args)


if __name__ == "__main__":
    sys.exit(main())
