"""The root helper that makes the auth-pam plugin's PAM calls for a server that drops root
(`user nobody`), as OpenVPN's plugin forks its background process before the drop: pam_unix
must read /etc/shadow, which only root may.

Started once, while the server is still root (gateway/pam_check.py), with its PAM service and
name/value pairs fixed for its life: the server can ask it only "does this login pass the
configured service", never to use another service. It talks over a SOCK_SEQPACKET socketpair,
one message a request and one a reply, each length-checked:

  request  b"V" + id (8 bytes) + 5 strings, each a length byte and at most 127 bytes (the remote
           address at most 45): username, password, common name, static-challenge response,
           remote address
  reply    b"R" + id + status byte (OK, REFUSED, BUSY, ERROR) + PAM's words (at most 200 bytes)
  ready    b"I" once libpam is loaded (else the helper exits: the server's start fails)
  restart  b"S" when the checks' process ended and another is started (keep_serving): the
           checks it had taken are lost, so the server stops waiting for them

Each check runs in a child forked for it, so a slow PAM module (a directory server, pam_unix's
failure delay) holds only its own child, and one that crashes or hangs ends only that check: at
most MAX_CHILDREN run at once (MAX_QUEUED more wait for a place, others get BUSY), each
killed at its time limit (ERROR). The server's side is hostile by assumption (it dropped root so that a compromise stays
small): a malformed or oversized message is counted and refused, never the helper's end. The
helper ends when the server does: at EOF on the socket, or by PR_SET_PDEATHSIG; its children
are killed with it. The checks' loop itself runs in a child of the helper, started again when
it ends before the server does (keep_serving): the helper kept root, the server did not.
"""
from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from collections import deque

from .pam_rules import FIELD_MAX, REMOTE_MAX, Creds

OK, REFUSED, BUSY, ERROR = 1, 0, 2, 3
MAX_CHILDREN = 8
MAX_QUEUED = 64             # requests waiting for a child's place (then BUSY)
RESTART_PAUSE = 1.0         # the checks' process started again at most once a second (keep_serving)
REPLY_TEXT_MAX = 200
SPEC_MAX = 1 << 20          # the start's spec on stdin (16 pairs of config words: far below)
RESTARTED = b"S"            # the helper's notice: the checks' process was started again
REQUEST_MAX = 1 + 8 + 4 * (1 + FIELD_MAX) + 1 + REMOTE_MAX
_LIMITS = (FIELD_MAX, FIELD_MAX, FIELD_MAX, FIELD_MAX, REMOTE_MAX)


def encode_request(rid: int, c: Creds) -> bytes:
    out = [b"V", struct.pack(">Q", rid)]
    for value, limit in zip((c.username, c.password, c.common_name, c.response, c.remote), _LIMITS):
        v = value[:limit]
        out += [bytes((len(v),)), v]
    return b"".join(out)


def decode_request(msg: bytes) -> tuple[int, Creds | None] | None:
    """(id, creds) of a request; (id, None) for a malformed one whose id can be read; None when
    not even that. Strings hold no NUL (C strings: what follows one is dropped)."""
    if len(msg) < 9 or msg[:1] != b"V":
        return None
    rid = struct.unpack(">Q", msg[1:9])[0]
    fields = []
    i = 9
    for limit in _LIMITS:
        if i >= len(msg):
            return rid, None
        n = msg[i]
        if n > limit or i + 1 + n > len(msg):
            return rid, None
        fields.append(msg[i + 1:i + 1 + n].split(b"\0", 1)[0])
        i += 1 + n
    if i != len(msg) or not fields[0]:
        return rid, None
    return rid, Creds(*fields)


def encode_reply(rid: int, status: int, text: str = "") -> bytes:
    return b"R" + struct.pack(">Q", rid) + bytes((status,)) + text.encode("utf-8", "replace")[:REPLY_TEXT_MAX]


def decode_reply(msg: bytes) -> tuple[int, int, str] | None:
    if len(msg) < 10 or msg[:1] != b"R" or msg[9] not in (OK, REFUSED, BUSY, ERROR):
        return None
    return struct.unpack(">Q", msg[1:9])[0], msg[9], msg[10:10 + REPLY_TEXT_MAX].decode("utf-8", "replace")


def _hung_up(sock: socket.socket) -> bool:
    """Whether an empty read is the end of the server's side: SOCK_SEQPACKET also carries an
    empty message, which ended the helper like an EOF (a malformed request, counted instead)."""
    p = select.poll()
    p.register(sock, select.POLLIN)
    return any(ev & (select.POLLHUP | select.POLLERR) for _fd, ev in p.poll(0))


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: SIGKILL when the process that started this one ends."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _child(sock: socket.socket, rid: int, service: bytes, pairs, c: Creds) -> None:
    """One check, in its own process; never returns."""
    code = 1
    try:
        _die_with_parent()
        from .pam_lib import authenticate
        ok, why = authenticate(service, pairs, c)
        sock.send(encode_reply(rid, OK if ok else REFUSED, why))
        code = 0
    except BaseException:  # noqa: BLE001 - the parent answers ERROR for a child that did not
        pass
    os._exit(code)


def serve(sock: socket.socket, service: bytes, pairs, limit: float, max_children: int = MAX_CHILDREN,
          max_queued: int = MAX_QUEUED) -> None:
    """The helper's loop, until EOF on `sock`. A request beyond `max_children` running waits in
    a queue of `max_queued` (a child that has replied may not have exited yet: refusing then
    turned a burst of good logins into refusals), beyond that it gets BUSY."""
    children: dict[int, tuple[int, float]] = {}     # pid -> (request id, deadline)
    queued: deque[tuple[int, Creds]] = deque()
    timed_out: set[int] = set()
    malformed = 0
    # SIGCHLD wakes the select below, so an ended child's place goes to a queued request at once.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)

    def reply(rid: int, status: int, text: str = "") -> None:
        try:
            sock.send(encode_reply(rid, status, text))
        except OSError:
            pass

    def start(rid: int, creds: Creds) -> None:
        try:
            pid = os.fork()
        except OSError as e:
            reply(rid, ERROR, f"cannot fork: {e.strerror}")
            return
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(wake_r)
            os.close(wake_w)
            _child(sock, rid, service, pairs, creds)
        children[pid] = (rid, time.monotonic() + limit)

    while True:
        now = time.monotonic()
        for pid, (rid, deadline) in children.items():
            if now >= deadline and pid not in timed_out:
                timed_out.add(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        wait = min([1.0] + [max(0.0, d - now) for _r, d in children.values()])
        readable, _, _ = select.select([sock, wake_r], [], [], wait if children else None)
        if wake_r in readable:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            entry = children.pop(pid, None)
            if entry is not None and not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
                reply(entry[0], ERROR, f"ran past its {limit:g} s limit" if pid in timed_out
                      else "the PAM check ended abnormally")
            timed_out.discard(pid)
        while queued and len(children) < max_children:
            start(*queued.popleft())
        if sock not in readable:
            continue
        try:
            msg, _anc, flags, _addr = sock.recvmsg(REQUEST_MAX + 1)
        except InterruptedError:
            continue
        except OSError:
            break
        if not msg and not flags and _hung_up(sock):
            break                                   # EOF: the server is gone
        req = decode_request(msg) if not flags & socket.MSG_TRUNC and len(msg) <= REQUEST_MAX else None
        if req is None or req[1] is None:
            malformed += 1
            if malformed in (1, 10, 100, 1000) or malformed % 10000 == 0:
                sys.stderr.write(f"AUTH-PAM helper: {malformed} malformed request(s) refused\n")
            if req is not None:
                reply(req[0], ERROR, "malformed request")
            continue
        if len(children) < max_children and not queued:
            start(*req)
        elif len(queued) < max_queued:
            queued.append(req)
        else:
            reply(req[0], BUSY, f"{max_children} PAM checks running and {max_queued} waiting already")
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def main() -> int:
    # The spec comes on stdin, not in argv: /proc/PID/cmdline is every local user's to read, and
    # the plugin line's name/value pairs are the config's (a file that may be the admin's only).
    spec = json.loads(sys.stdin.buffer.read(SPEC_MAX))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    _die_with_parent()
    if os.getppid() != spec["parent"]:
        return 1                                    # the server ended before the line above
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)          # the server's to handle; its end ends this
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    # Passed to this process inheritable (pass_fds); closed on exec from here on, so a program
    # a PAM module runs (pam_exec, a module's helper) cannot answer the server's checks.
    os.set_inheritable(spec["fd"], False)
    sock = socket.socket(fileno=spec["fd"])
    service = spec["service"].encode("utf-8", "surrogateescape")
    pairs = tuple((n.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape"))
                  for n, v in spec["pairs"])
    try:
        from .pam_lib import load
        load()
    except OSError as e:
        sys.stderr.write(f"AUTH-PAM helper: cannot load libpam: {e}\n")
        return 1
    sock.send(b"I")
    return keep_serving(sock, lambda: serve(sock, service, pairs, float(spec["limit"]),
                                             int(spec.get("children", MAX_CHILDREN))))


def keep_serving(sock: socket.socket, run, pause: float = RESTART_PAUSE) -> int:
    """Run `run` (the checks' loop) in a child, and another when it ends before the server's
    end (killed, out of memory, our bug): this process keeps root, which the server dropped, so
    only it can start one again -- before, one crash of the helper refused every later login.
    Requests under way in the ended child get no answer: RESTARTED tells the server's side, which
    refuses each check it still waits for, for now (the client retries) -- without it each waited
    its limit (hand-window + 5 s) and, the server's workers all waiting, no login was decided. At most one start each `pause` seconds, so a loop
    that dies at once cannot spin. Ends (0) once the server's side hung up."""
    while True:
        started = time.monotonic()
        try:
            pid = os.fork()
        except OSError as e:
            sys.stderr.write(f"AUTH-PAM helper: cannot fork the checks' process: {e.strerror}\n")
            pid = -1
        if pid == 0:
            code = 1
            try:
                _die_with_parent()
                run()
                code = 0
            except BaseException:  # noqa: BLE001 - this child ends here; its parent starts another
                pass
            os._exit(code)
        status = os.waitpid(pid, 0)[1] if pid > 0 else -1
        if status == 0 or _hung_up(sock):
            return 0                                # the server's end (EOF): ours too
        what = (f"killed by signal {os.WTERMSIG(status)}" if status > 0 and os.WIFSIGNALED(status)
                else f"ended with status {os.WEXITSTATUS(status)}" if status > 0 else "not started")
        sys.stderr.write(f"AUTH-PAM helper: the checks' process {what}; starting it again\n")
        try:
            sock.send(RESTARTED)            # what it had taken gets no answer: none is waited for
        except OSError:
            pass
        time.sleep(max(0.0, started + pause - time.monotonic()))


if __name__ == "__main__":
    raise SystemExit(main())
