"""`daemon [NAME]` and `syslog [NAME]` on a host run, as OpenVPN 2.6 does them.

Why: legacy init scripts, rc.local lines and router configs (pfSense's and OPNsense's server
configs carry `daemon`) start OpenVPN expecting it to return at once and run on in the
background, logging to syslog; a run that stayed in the foreground would hang such a script.
What 2.6 does (init.c possibly_become_daemon, error.c open_syslog), and so this:
- `daemon`: once the config is read and any password asked on the terminal, the process forks;
  the parent exits 0 and the child, in a session of its own (setsid), runs on with standard input,
  output and error on /dev/null -- output and error stay on the `log`/`log-append` file when one is
  named -- and writes `writepid` with its own PID after that. Not under systemd ($NOTIFY_SOCKET
  set): there it stays in the foreground and tells systemd instead (sdnotify.py), as 2.6 does.
  Once started, the process moves to / unless `cd` was given, as 2.6's do_init_first_time does
  after its daemon(): the scripts run there, and a name read again later (a reload's config named
  relatively, the command line's relative names) is read from there, as 2.6 reads it -- where a
  reload then cannot find its file, 2.6 exits and ours keeps running as it was, saying why.
- `syslog` (or `daemon`, whichever comes first naming the program): the log goes to syslog
  (/dev/log, facility daemon, `NAME[PID]: ` before each line) instead of standard error, unless a
  `log`/`log-append` file is named, which wins, as in 2.6. Without a syslog socket at start (no
  syslog daemon) the log stays on standard error, where 2.6 loses it; a line syslog refuses later
  is dropped, as syslog(3) drops it.
Errors found before the fork (a config error, a missing file) still go to the terminal.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import sys

SYSLOG_SOCKET = os.environ.get("VPN_APPLIANCE_SYSLOG_SOCKET", "/dev/log")   # (tests point it elsewhere)


def under_systemd() -> bool:
    """Whether systemd takes our notifications, decided as 2.6 decides it (`sd_notify(0, "READY=0")
    > 0`): by one that is delivered. A NOTIFY_SOCKET left over in the environment (a script run
    from a notify unit, a socket long gone, a file) is no systemd: `daemon` forks as there, where
    it stayed in the foreground and hung the script that started it."""
    from .sdnotify import from_environment
    notify = from_environment()
    if notify is None:
        return False
    try:
        return notify.send("READY=0")
    finally:
        notify.close()


def become_daemon(keep_output: bool) -> None:
    """Fork into the background: the parent exits 0 here; the child returns, in a new session,
    with stdin on /dev/null, and stdout/stderr too unless `keep_output` (a log file holds them)."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() != 0:
        os._exit(0)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in (0,) if keep_output else (0, 1, 2):
            os.dup2(null, fd)
    finally:
        if null > 2:
            os.close(null)


def leave_start_directory(opts) -> None:
    """After become_daemon, once the log and pid files are open: to / unless the profile has a
    `cd` (it stays there), as 2.6 (init.c: platform_chdir("/") when it daemonized without cd_dir).
    Why: the directory it was started from may be unmounted or removed while it runs; and a
    script or reload then reads relative names from where 2.6's would."""
    if opts.cd_dir:
        return
    os.chdir("/")
    from . import workdir
    workdir.started_in("/")             # a reload that drops a later `cd` comes back here


class _Syslog(logging.handlers.SysLogHandler):
    """A line syslog cannot take (no syslog daemon, its socket gone) is dropped, as syslog(3) drops
    it -- not reported on standard error with a traceback, line after line.

    The socket is non-blocking: a syslog daemon that stops reading (stuck, or swamped by another
    program) fills its socket's queue, and a blocking send then stopped our event loop -- every
    tunnel with it -- until the daemon read again (glibc's syslog(3) blocks 2.6 the same way). Here
    such a line is dropped and counted instead, and the count is logged with the next line that
    gets through."""

    dropped = 0          # lines syslog did not take, in all
    unreported = 0       # ... since the last count logged

    def _connect_unixsocket(self, address: str) -> None:
        super()._connect_unixsocket(address)
        self.socket.setblocking(False)

    def format(self, record: logging.LogRecord) -> str:
        """A file name's bytes that are not UTF-8 (lone surrogates from argv or the environment)
        written `\\xNN`: the handler encodes strictly and dropped the whole line."""
        text = super().format(record)
        try:
            text.encode()
            return text
        except UnicodeEncodeError:
            pass
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:          # a surrogate no byte stands for
            return text.encode("utf-8", "backslashreplace").decode()

    def emit(self, record: logging.LogRecord) -> None:
        before = self.dropped
        super().emit(record)
        if self.dropped == before and self.unreported:
            n = self.unreported
            super().emit(logging.LogRecord(record.name, logging.WARNING, __file__, 0,
                                           "syslog: %d log lines dropped (the syslog daemon was not reading)",
                                           (n,), None))
            if self.dropped == before:
                self.unreported -= n

    def handleError(self, record: logging.LogRecord) -> None:
        self.dropped += 1
        self.unreported += 1


def log_to_syslog(name: str) -> None:
    """Our log lines to syslog as `name`, replacing the standard-error handler (logsetup). The
    socket is connected now and again after a failure (the handler's own retry)."""
    from ..logsetup import _Formatter
    if not os.path.exists(SYSLOG_SOCKET):
        # No syslog daemon on this host: 2.6 loses its lines then; standard error keeps them
        # (the log file or /dev/null after `daemon`, the terminal or journal otherwise).
        logging.getLogger("vpn-appliance").warning("syslog: no %s on this host (no syslog daemon): logging to "
                                                   "standard error instead", SYSLOG_SOCKET)
        return
    try:
        handler = _Syslog(SYSLOG_SOCKET, logging.handlers.SysLogHandler.LOG_DAEMON)
    except OSError as e:
        logging.getLogger("vpn-appliance").warning("syslog %s: %s; logging to standard error instead",
                                                   SYSLOG_SOCKET, e.strerror or e)
        return
    handler.ident = f"{name}[{os.getpid()}]: "
    handler.setFormatter(_Formatter("%(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
