"""What every helper forked while root before the privilege drop shares (down_root.py for the
down-root plugin's command, script_root.py for a client's first up/route-up/ipchange): one place
for the fork, the child's descriptor and signal hygiene, and the bounded reaping.

Why one place: these children stay root for the whole run and take their orders from the
unprivileged main process, so what they may inherit is a security decision. The child keeps
exactly its end of an anonymous SOCK_SEQPACKET socketpair (moved to descriptor 3, not inherited by
the commands it starts), reads /dev/null as stdin, keeps stdout/stderr for its commands' output,
and closes every other descriptor; it ignores the group's signals (a Ctrl-C or a supervisor's
SIGTERM is for the main process, which then closes the socket: the helper's end of file).
"""
from __future__ import annotations

import os
import signal
import socket
import time
from typing import Callable, NoReturn

# The group's signals the helper ignores (its commands get the defaults back at exec).
IGNORED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
           signal.SIGPIPE)


def fork(serve: Callable[[int], NoReturn]) -> tuple[int, socket.socket]:
    """(the helper's pid, the main process's end of the socket). `serve(fd)` runs in the child
    with its end of the socketpair and must end with os._exit."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)   # both close-on-exec
    pid = os.fork()
    if pid == 0:                                # the child: never returns
        serve(theirs.detach())
    theirs.close()
    return pid, ours


def enter(fd: int) -> socket.socket:
    """In the child, first: signals ignored, the socket on descriptor 3 (not inheritable), stdin
    /dev/null, every descriptor from 4 up closed. Returns the socket."""
    for s in IGNORED:
        signal.signal(s, signal.SIG_IGN)
    keep = os.dup2(fd, 3) if fd != 3 else 3
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.closerange(4, os.sysconf("SC_OPEN_MAX"))
    os.set_inheritable(keep, False)
    return socket.socket(fileno=keep)


def reap(pid: int, within: float) -> None:
    """Wait, bounded, until the helper `pid` has exited (after its socket was closed)."""
    end = time.monotonic() + within
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done or time.monotonic() >= end:
            return
        time.sleep(0.01)
