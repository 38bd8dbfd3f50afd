"""Remove, at exit, a file this process made as root and can no longer remove once it dropped to
`user`: the management unix socket (gateway/management.py) in a root-owned directory such as
/run/openvpn. Unlinking needs write permission on the directory, which `user nobody` lacks.

Why a helper process: OpenVPN 2.6 has the same problem and ignores it (manage.c calls unlink()
at close without looking at the result), so after `user nobody` its socket stays behind. Our
server keeps no capability after the drop (CAP_DAC_OVERRIDE would let it write anywhere), and a
directory fd kept open does not help (unlinkat checks the directory's permission for the caller).
So something kept from before the drop does it: a child forked while still root, which only
waits for its pipe to reach end-of-file and then removes the path, if it is still the very socket
we made (same device, inode and change time, still a socket): it never removes what someone else
put there. The change time matters: a second server started with the same path removes ours and
binds its own, which on ext4 gets the freed inode number at once; it is made later, so its ctime
differs (nothing of ours changes our socket's ctime after the bind: its mode comes from the
umask). The directory is held open from the start and both the check and the unlink are made in it (lstat and
unlink with dir_fd): someone who can rename a directory on the way (a parent writable by a user)
cannot swap it for a symlink between the check and the unlink and have root remove a file of the
same name elsewhere.

The pipe is written by nobody: end-of-file comes when the server closes it at shutdown or when the
server dies in any way (SIGKILL included), so the socket goes even where OpenVPN's would stay on a
clean exit. The child ignores the signals a terminal or service manager sends to the whole group
(it must outlive the server by the moment the pipe closes), holds no other descriptor but the
socket's directory (stdio on /dev/null: a reader of the server's output sees end-of-file when the
server exits) and runs no code from the network. A forked child (not an exec'd program) costs no
start-up and, sharing the parent's pages copy-on-write, almost no memory; being root, it could
read the parent's memory anyway, so the fork exposes nothing new.
"""
from __future__ import annotations

import fcntl
import os
import signal
import stat
import time

_IGNORED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def identity(st: os.stat_result) -> tuple[int, int, int]:
    """What tells our socket from one made later at the same path (see above: the inode alone
    does not)."""
    return st.st_dev, st.st_ino, st.st_ctime_ns


def still_ours(path: str, ours: tuple[int, int, int] | None) -> bool:
    """Whether `path` is still the socket whose identity() is `ours`."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return identity(st) == ours and stat.S_ISSOCK(st.st_mode)


class UnlinkAtExit:
    """A root child that removes `path` (as it is now: a socket) once `release()` is called or this
    process ends. Create it while root and single-threaded (before the privilege drop)."""

    def __init__(self, path: str) -> None:
        self.path = path
        name = os.path.basename(path)
        d = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            st = os.lstat(name, dir_fd=d)
            r, self._w = os.pipe()                      # both close-on-exec: scripts never hold them
            self.pid = os.fork()
            if self.pid == 0:                           # the child: never returns
                _wait_then_unlink(d, name, identity(st), r)
        finally:
            os.close(d)
        os.close(r)

    def release(self, within: float = 2.0) -> bool:
        """Let the child remove the path now and reap it (bounded: it exits at once). True if the
        child is gone."""
        if self._w >= 0:
            os.close(self._w)
            self._w = -1
        end = time.monotonic() + within
        while True:
            try:
                pid, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid:
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.01)


def _wait_then_unlink(d: int, name: str, ours: tuple[int, int, int], r: int) -> None:
    try:
        for s in _IGNORED:
            signal.signal(s, signal.SIG_IGN)
        keep = fcntl.fcntl(r, fcntl.F_DUPFD, 10)        # out of the way: the fds may be 0..2
        keep_d = fcntl.fcntl(d, fcntl.F_DUPFD, 10)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.dup2(keep, 3)                                # the pipe
        os.dup2(keep_d, 4)                              # the socket's directory (O_PATH)
        os.closerange(5, os.sysconf("SC_OPEN_MAX"))
        while os.read(3, 64):                           # nothing is written: b"" is end-of-file
            pass
        st = os.lstat(name, dir_fd=4)
        if identity(st) == ours and stat.S_ISSOCK(st.st_mode):
            os.unlink(name, dir_fd=4)
    except BaseException:  # noqa: BLE001 - the child must end here, whatever happened
        pass
    finally:
        os._exit(0)
