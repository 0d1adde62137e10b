#!/usr/bin/env python3
"""Runs a command and stops it when our stdin closes.

    guard.py [--stop-signal INT|TERM|QUIT|HUP] [--log FILE] [--no-stdin] -- CMD ARGS...

CMD runs in a new session (so in its own process group) with /dev/null as stdin, and its
stdout and stderr appended to FILE (default: ours). guard.py then stops it, sending the stop
signal (default TERM) to its whole process group and SIGKILL to whatever is left 10 s later,
as soon as

  * its own stdin reaches end of file (or errors): the test harness starts every service
    with a pipe as stdin that it never writes to nor closes, so when the test process exits
    for any reason (a panic, an abort, a kill) the pipe closes and the service is stopped;
  * it gets SIGTERM, SIGINT or SIGHUP.

With --no-stdin, stdin is not watched (for detached use: stop it with SIGTERM).

guard.py is a child subreaper: descendants that leave CMD's process group (PostgreSQL's
backends call setsid) or are orphaned are reparented to it, and it waits for them all, so
nothing outlives it. If CMD dies first, what is left gets the stop signal, then SIGKILL.
If guard.py itself is killed with SIGKILL, CMD gets the stop signal from the kernel
(PR_SET_PDEATHSIG).

Exit status: CMD's (128+N if it died of signal N); 127 if CMD cannot be started; 2 on usage
errors.
"""
import ctypes
import os
import select
import signal
import sys
import time
from typing import NoReturn

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE = 10.0
MAX_FD = os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 65536

_libc = ctypes.CDLL(None, use_errno=True)

log_fd = 2


def say(msg: str) -> None:
    try:
        os.write(log_fd, f"guard.py[{os.getpid()}]: {msg}\n".encode())
    except OSError:
        pass


def usage(msg: str) -> NoReturn:
    print(f"guard.py: {msg}\nusage: guard.py [--stop-signal INT|TERM|QUIT|HUP] [--log FILE] [--no-stdin] -- CMD ARGS...",
          file=sys.stderr)
    sys.exit(2)


def parse(argv):
    stop, log, watch_stdin = signal.SIGTERM, None, True
    while argv and argv[0] != "--":
        opt = argv.pop(0)
        if opt == "--stop-signal" and argv:
            name = argv.pop(0).upper().removeprefix("SIG")
            if name not in ("INT", "TERM", "QUIT", "HUP"):
                usage(f"unsupported stop signal {name}")
            stop = getattr(signal, "SIG" + name)
        elif opt == "--log" and argv:
            log = argv.pop(0)
        elif opt == "--no-stdin":
            watch_stdin = False
        else:
            usage(f"unknown or incomplete option {opt}")
    if len(argv) < 2:
        usage("no command")
    return stop, log, watch_stdin, argv[1:]


def children() -> set:
    """Our direct children (including reparented orphans), from /proc."""
    pids = set()
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as f:
                pids.update(int(p) for p in f.read().split())
    except OSError:
        pass
    return pids


def main() -> int:
    global log_fd
    stop_sig, log, watch_stdin, cmd = parse(sys.argv[1:])
    # Hold no inherited descriptor (say, the write end of a pipe or FIFO whose closing
    # someone else waits for): only stdin, stdout and stderr are ours.
    os.closerange(3, MAX_FD)
    if log:
        log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    # Signals (and SIGCHLD) wake the poll loop through this pipe.
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    requested = []
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, lambda n, _f: requested.append(n))
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    # An exec failure is reported through this pipe.
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    me = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(err_r)
            os.setsid()
            _libc.prctl(PR_SET_PDEATHSIG, stop_sig, 0, 0, 0)
            if os.getppid() != me:  # guard died before prctl took effect
                os._exit(1)
            # Default dispositions, also for what a non-interactive shell ignores in
            # background jobs (INT, QUIT) and what Python ignores (PIPE, XFSZ).
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD,
                      signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(s, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            if log_fd != 2:
                os.dup2(log_fd, 1)
                os.dup2(log_fd, 2)
            os.closerange(3, err_w)
            os.closerange(err_w + 1, MAX_FD)
            os.execvp(cmd[0], cmd)
        except BaseException as e:  # noqa: BLE001
            try:
                os.write(err_w, f"cannot run {cmd[0]}: {e}".encode())
            finally:
                os._exit(127)
    os.close(err_w)
    failure = os.read(err_r, 4096).decode()
    os.close(err_r)
    if failure:
        say(failure)
        os.waitpid(pid, 0)
        return 127

    status = None    # CMD's exit status once reaped
    since = None     # when stopping began: a stop request, or CMD gone with descendants left
    sent = {}        # pid -> last signal sent to it
    current = stop_sig

    poller = select.poll()
    poller.register(wake_r, select.POLLIN)
    if watch_stdin:
        poller.register(0, select.POLLIN)

    def sweep(sig: int) -> None:
        """Sends sig to CMD's group and to each child, each of them once."""
        if sent.get(-pid) != sig:
            sent[-pid] = sig
            try:
                os.killpg(pid, sig)
            except OSError:
                pass
        for child in children():
            if sent.get(child) != sig:
                sent[child] = sig
                try:
                    os.kill(child, sig)
                except OSError:
                    pass

    def begin_stop(why: str) -> None:
        nonlocal since
        if since is None:
            since = time.monotonic()
            say(f"{why}: sending SIG{signal.Signals(stop_sig).name[3:]} to {' '.join(cmd)}")
            if watch_stdin:
                poller.unregister(0)
            sweep(stop_sig)

    while True:
        while True:  # reap whatever has exited
            try:
                got, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if got <= 0:
                break
            sent.pop(got, None)
            if got == pid:
                status = os.waitstatus_to_exitcode(st)
        if status is not None:
            if not children():
                break
            if since is None:
                begin_stop(f"{cmd[0]} exited ({status}) but left processes behind")
        if requested:
            if since is None:
                begin_stop(f"got SIG{signal.Signals(requested[0]).name[3:]}")
            else:  # asked again: pass it on again
                sent.clear()
                sweep(current)
            requested.clear()
        if since is not None:
            elapsed = time.monotonic() - since
            if current != signal.SIGKILL and elapsed >= GRACE:
                say(f"still running {GRACE:.0f} s after the stop signal: SIGKILL")
                current = signal.SIGKILL
            if current == signal.SIGKILL and elapsed >= GRACE + 5:
                say("processes survive SIGKILL; giving up")
                break
            sweep(current)  # orphans reparented to us since get it too
        try:
            events = poller.poll(200 if since is not None else None)
        except InterruptedError:
            events = []
        for fd, ev in events:
            if fd == wake_r:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            elif fd == 0:
                data = b""
                if ev & select.POLLIN:
                    try:
                        data = os.read(0, 4096)
                    except OSError:
                        pass
                if not data:
                    begin_stop("stdin closed")
    if status is None:
        return 137
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main())
