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
import errno
import os
import select
import signal
import sys
import time

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


def usage(msg: str) -> "NoReturn":  # noqa: F821
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


def signal_all(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass
    for pid in children():
        try:
            os.kill(pid, sig)
        except OSError:
            pass


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
    pid = os.fork()
    if pid == 0:
        try:
            os.close(err_r)
            os.setsid()
            _libc.prctl(PR_SET_PDEATHSIG, stop_sig, 0, 0, 0)
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE):
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

    status = None           # CMD's exit status once reaped
    stopping_since = None   # when we sent the stop signal
    killed = False
    leftovers_since = None  # when CMD was gone but other descendants were not

    poller = select.poll()
    poller.register(wake_r, select.POLLIN)
    if watch_stdin:
        poller.register(0, select.POLLIN)

    def begin_stop(why: str) -> None:
        nonlocal stopping_since
        if stopping_since is None:
            stopping_since = time.monotonic()
            say(f"{why}: sending SIG{signal.Signals(stop_sig).name[3:]} to {' '.join(cmd)}")
            signal_all(pid, stop_sig)

    while True:
        # Reap everything that has exited.
        while True:
            try:
                got, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                got, st = -1, 0
            if got <= 0:
                break
            if got == pid:
                status = os.waitstatus_to_exitcode(st)
        if status is not None and not children():
            break
        now = time.monotonic()
        if status is not None and stopping_since is None:
            if leftovers_since is None:
                leftovers_since = now
                say(f"{cmd[0]} exited ({status}); stopping what it left behind")
                signal_all(pid, stop_sig)
        started = stopping_since if stopping_since is not None else leftovers_since
        if started is not None and not killed and now - started >= GRACE:
            say(f"still running {GRACE:.0f} s after the stop signal: SIGKILL")
            signal_all(pid, signal.SIGKILL)
            killed = True
        if killed and started is not None and now - started >= GRACE + 5:
            say("processes survive SIGKILL; giving up")
            break
        timeout = 200 if started is not None else None
        try:
            events = poller.poll(timeout)
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
                        data = b""
                if not data:
                    poller.unregister(0)
                    begin_stop("stdin closed")
        if requested:
            if stopping_since is None:
                begin_stop(f"got SIG{signal.Signals(requested[0]).name[3:]}")
            else:  # a further request: pass it on again
                signal_all(pid, stop_sig)
            requested.clear()
    if status is None:
        return 137
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main())
