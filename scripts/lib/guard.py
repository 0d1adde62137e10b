#!/usr/bin/env python3
"""Runs a command and stops it when our stdin closes.

    guard.py [--stop-signal INT|TERM] [--log FILE] -- CMD ARGS...

The test harness starts every service through this with a pipe as stdin that it never
writes to. When the test process exits, for any reason (a panic, an abort, a kill), the pipe
closes, and the service's whole process group gets the stop signal, then SIGKILL after 10 s.
If the service exits on its own, guard exits with its status.
"""
import os
import signal
import subprocess
import sys
import threading


def main() -> int:
    args = sys.argv[1:]
    stop = signal.SIGTERM
    log = None
    while args and args[0] != "--":
        if args[0] == "--stop-signal":
            stop = getattr(signal, "SIG" + args[1])
            args = args[2:]
        elif args[0] == "--log":
            log = args[1]
            args = args[2:]
        else:
            print(f"guard.py: unknown option {args[0]}", file=sys.stderr)
            return 2
    if not args or len(args) < 2:
        print("usage: guard.py [--stop-signal INT|TERM] [--log FILE] -- CMD ARGS...", file=sys.stderr)
        return 2
    out = open(log, "ab") if log else None
    child = subprocess.Popen(args[1:], stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)

    stopping = threading.Event()

    def stop_child(*_):
        if stopping.is_set():
            return
        stopping.set()
        try:
            os.killpg(child.pid, stop)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def watch_stdin():
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        stop_child()

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=stop_child).start())
    signal.signal(signal.SIGINT, lambda *_: threading.Thread(target=stop_child).start())
    threading.Thread(target=watch_stdin, daemon=True).start()
    code = child.wait()
    if stopping.is_set():
        # Wait for the stopper to finish killing stragglers of the group.
        for _ in range(100):
            try:
                os.killpg(child.pid, 0)
            except ProcessLookupError:
                break
            threading.Event().wait(0.1)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    # os._exit: no interpreter shutdown racing the stdin-watching thread.
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
