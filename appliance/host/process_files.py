"""`log FILE`, `log-append FILE` and `writepid FILE` on a host run (`vpn-appliance run profile.ovpn`).

As OpenVPN 2.6 does them, because a profile (or the service unit around it) that names them
expects the files there: the log in the file and not on the terminal, the PID where a supervisor
script looks for it.
- log / log-append (error.c redirect_stdout_stderr): the file opened O_CREAT|O_WRONLY with O_TRUNC
  (log) or O_APPEND (log-append), mode 0600 when made, and put on descriptors 1 and 2, so every
  line the process writes goes there, tracebacks and what a helper process prints included. Done
  once, at the start and as the starting user (before `user`/`group` drop privileges: the
  descriptor stays writable after), kept across reconnects, as there. OpenVPN only warns when it
  cannot open the file and logs on; here it ends the start with the directive's file:line, so
  the log is never somewhere the operator does not look. A FIFO with no reader fails at once
  (opened non-blocking) instead of hanging the start.
- writepid (init.c write_pid_file): "PID\\n" written at the start (before the privilege drop),
  removed at the end if it still holds our PID (OpenVPN removes it unconditionally; after a drop to
  `user nobody` neither can remove it from a root-owned directory, and both leave it). A FIFO
  there fails the start at once and is never waited on at the end (PidFile).
The appliance VM does not apply them: its log is its console, its PID is 1 (run_toml.py says so).
"""
from __future__ import annotations

import fcntl
import os
import stat

from ..openvpn.config import Options
from ..openvpn.errors import ConfigError


def redirect_log(path: str, append: bool) -> None:
    """Descriptors 1 and 2 to the log file; OSError if it cannot be opened."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC
                 | (os.O_APPEND if append else os.O_TRUNC), 0o600)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        for std in (1, 2):
            os.dup2(fd, std)            # dup2 leaves 1 and 2 inheritable, as they were
    finally:
        os.close(fd)


class PidFile:
    """The PID file. Opened non-blocking both times: a FIFO at its place (a directory writable by
    another user) is an error at the start, as a `log` FIFO is, and left alone at the end -- a
    blocking open waited for a writer forever, and the process never exited."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = os.getpid()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
        with os.fdopen(fd, "w") as f:
            os.set_blocking(fd, True)
            f.write(f"{self.pid}\n")

    def remove(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            with os.fdopen(fd) as f:
                if not stat.S_ISREG(os.fstat(fd).st_mode) or f.read(32).strip() != str(self.pid):
                    return                # someone else's by now
            os.unlink(self.path)
        except (OSError, UnicodeDecodeError):
            pass                          # gone already, or no longer ours to remove (after `user`)


def start(opts: Options) -> PidFile | None:
    """Apply log/log-append, then writepid; ConfigError at the directive's line when a file cannot be
    opened or written."""
    if opts.log_file is not None:
        path, append = opts.log_file
        try:
            redirect_log(path, append)
        except OSError as e:
            raise _error(opts, "log_file", "log-append" if append else "log", path, e) from None
    if opts.writepid is not None:
        try:
            return PidFile(opts.writepid)
        except OSError as e:
            raise _error(opts, "writepid", "writepid", opts.writepid, e) from None
    return None


def _error(opts: Options, field: str, directive: str, path: str, e: OSError) -> ConfigError:
    where = opts.source.get(field, (opts.path, None))
    return ConfigError(f"cannot open {path}: {e.strerror or e}", where[0], where[1], directive)


def check_start_paths(o) -> None:
    """The files and directories a start needs, as OpenVPN 2.6 checks them before it
    starts (options.c check_file_access: "--status fails with ..."): the `status` file's
    directory, the `client-config-dir`. Ours found neither: a status file in a missing directory
    was warned about once running and never written; a missing client-config-dir applied no
    client's file (with ccd-exclusive: let no one in) without a word."""
    if o.status:
        f = o.status[0]
        d = os.path.dirname(os.path.abspath(f))
        why = None
        if os.path.isdir(f):
            why = "is a directory"
        elif not os.path.isdir(d):
            why = f"its directory {d} does not exist"
        elif not os.access(d, os.W_OK | os.X_OK) and not os.access(f, os.W_OK):
            why = f"its directory {d} is not writable"
        if why is not None:
            path, line = o.source.get("status", (o.path, None))
            raise ConfigError(f"cannot write {f}: {why}", path, line, "status")
    if o.client_config_dir and not os.path.isdir(o.client_config_dir):
        path, line = o.source.get("client_config_dir", (o.path, None))
        raise ConfigError(f"{o.client_config_dir} is not a directory" +
                          (" (does not exist)" if not os.path.exists(o.client_config_dir) else ""),
                          path, line, "client-config-dir")
