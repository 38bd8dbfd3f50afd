"""The server's side of the PAM helper (pam_helper.py): start it while root, ask it from any
thread, each asker waiting for its own reply (a reader thread hands the replies out by id)."""
from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import threading

from .pam_helper import ERROR, REPLY_TEXT_MAX, RESTARTED as RESTART_NOTICE, decode_reply, encode_request
from .pam_rules import Creds

log = logging.getLogger("vpn-appliance")

START_WAIT = 10.0          # for the helper's "ready" (Python's start and libpam's loading)
REPLY_SLACK = 5.0          # past the check's own limit (the helper kills it at that limit)
GONE, NO_ANSWER = "the PAM helper is gone", "no answer from the PAM helper"
RESTARTED = "the PAM helper's checks process was started again"
# The words of a check that got no verdict from PAM (the helper gone, or its checks' process
# restarted under it: host/pam_helper.keep_serving): a temporary refusal (gateway/pam_check.py).
UNANSWERED = frozenset({GONE, NO_ANSWER, RESTARTED})


class PamHelper:
    """The running helper for one PAM service and its name/value pairs."""

    def __init__(self, service: str, pairs: tuple[tuple[str, str], ...], limit: float) -> None:
        """Start it (OSError when it does not come up: no libpam, say). `limit`: a check's time."""
        self.limit = limit
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        spec = json.dumps({"service": service, "pairs": [list(p) for p in pairs], "fd": theirs.fileno(),
                           "limit": limit, "parent": os.getpid()})
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            out = sys.stderr.fileno()       # what a PAM module prints goes to our log
        except (OSError, ValueError, AttributeError):
            out = None
        try:
            # -P: as resolvectl_helper, no module from the working directory runs as root.
            # The spec on its stdin (pam_helper.main: argv is any local user's to read).
            self.proc = subprocess.Popen([sys.executable, "-P", "-m", "appliance.host.pam_helper"], env=env,
                                         stdin=subprocess.PIPE, stdout=out,
                                         pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(spec.encode())
            self.proc.stdin.close()
        except OSError as e:
            log.debug("PAM helper: %s", e)          # it ended at once: the ready wait below says so
        self.sock = mine
        mine.settimeout(START_WAIT)
        try:
            ready = mine.recv(16)
        except OSError as e:
            ready = b""
            log.debug("PAM helper: %s", e)
        if ready != b"I":
            self.close()
            raise OSError("the PAM helper did not start (see the lines above)")
        mine.settimeout(None)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._waiting: dict[int, list] = {}      # id -> [Event, reply]
        self.dead = False
        # Started at the first check, not here: the server drops root after its start, which it
        # refuses with another thread running (capabilities are per thread: host/privileges.py).
        self._reader: threading.Thread | None = None

    def _read(self) -> None:
        while True:
            try:
                msg = self.sock.recv(16 + REPLY_TEXT_MAX)
            except OSError:
                msg = b""
            if not msg:
                break
            if msg == RESTART_NOTICE:
                # The checks under way are lost with the ended process: each waiting one is
                # refused for now at once, not after its limit. (One the new process still reads
                # is answered too; the answer finds no waiter.)
                with self._lock:
                    for w in self._waiting.values():
                        if w[1] is None:
                            w[1] = (ERROR, RESTARTED)
                            w[0].set()
                continue
            r = decode_reply(msg)
            if r is None:
                continue
            with self._lock:
                w = self._waiting.get(r[0])
            if w is not None:
                w[1] = (r[1], r[2])
                w[0].set()
        with self._lock:
            self.dead = True
            for w in self._waiting.values():
                w[1] = (ERROR, GONE)
                w[0].set()

    def check(self, c: Creds) -> tuple[int, str]:
        """(status, PAM's words): pam_helper's OK, REFUSED, BUSY or ERROR."""
        w: list = [threading.Event(), None]
        with self._lock:
            if self.dead:
                return ERROR, GONE
            rid = next(self._ids)
            self._waiting[rid] = w
            if self._reader is None:
                self._reader = threading.Thread(target=self._read, name="pam-helper-reader", daemon=True)
                self._reader.start()
        try:
            try:
                self.sock.send(encode_request(rid, c))
            except OSError as e:
                return ERROR, f"cannot reach the PAM helper: {e.strerror or e}"
            if not w[0].wait(self.limit + REPLY_SLACK):
                return ERROR, NO_ANSWER
            return w[1]
        finally:
            with self._lock:
                self._waiting.pop(rid, None)

    def close(self) -> None:
        """End it (its checks under way end with it)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
