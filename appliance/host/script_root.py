"""A client's scripts that OpenVPN 2.6 runs as root before its privilege drop, run as root here
although our client drops to `user`/`group` before it connects.

What 2.6 runs as root with `user`/`group` (init.c: do_uid_gid_chroot at "Initialization Sequence
Completed", after do_route): each `ipchange` before the first tunnel is up, the first `up` and the
first `route-up`; everything after (a later ipchange, up-restart's up, route-pre-down, down) as
the user. Here: a helper forked at start while root and single-threaded (as host/down_root.py)
runs exactly those -- the profile's fixed commands, nothing else -- when the main process asks,
and exits once the first tunnel's up and route-up ran (or at the main process's end: end of file
on its socket, a SIGKILL included). Later scripts the main process runs itself, as `user`, as
2.6 does.

The main process handles the network and runs as `user`: what it sends is treated as hostile.
One message per call: a JSON header of at most MAX_HEADER bytes (ASCII, no newline), a newline,
then the environment as the down-root helper's message (down_root.encode, at most MAX_MESSAGE;
not inside the JSON, whose escapes -- 6 bytes for each separating NUL, each non-ASCII character --
made a server's large push overflow the bound, so the helper refused the up and the run ended).
The header holds the kind (ipchange before up, up once, route-up once after it: any other order
is refused and ends the helper) and the words after the command, each checked for its shape
(up's `DEV MTU 0 LOCAL REMOTE init`: a device name, a number, addresses; ipchange's
`[AF_INET]IP PORT`; route-up none), and the environment under the down-root
helper's rules (down_root.decode: bounded, names of OpenVPN's kind or the config's setenv names,
so no LD_PRELOAD, PATH or BASH_ENV). The command runs with execve (no shell), stdin /dev/null, its
output the process's, in a session of its own, killed with its group after TIME_LIMIT or when the main
process ends meanwhile (its socket closed: the client's end runs down after it, not before).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import select
import signal
import socket
import subprocess
import time
from typing import NoReturn

from . import root_helper
from .down_root import MAX_MESSAGE, decode, encode

log = logging.getLogger("vpn-appliance")

TIME_LIMIT = 60.0
MAX_HEADER = 1024               # {"kind": ..., "words": [...]}: the longest words_ok passes is ~250
MAX_IPCHANGE = 1000             # connections before the first tunnel is up (each a root ipchange)
OK, FAILED, REFUSED = b"0", b"1", b"2"
# A device name, not one starting with `-`: a root script's `ip link set "$1" up` would read it
# as an option (the main process keeps CAP_NET_ADMIN and could name its device so).
_DEV = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.\-]{0,14}")
_IPCHANGE = re.compile(r"\[AF_INET6?\]([0-9A-Fa-f.:]{2,45}(?:%[A-Za-z0-9_.\-]{1,15})?) ([0-9]{1,5})")


def _address_or_empty(word: str) -> bool:
    if word == "":
        return True
    try:
        ipaddress.ip_address(word)
        return True
    except ValueError:
        return False


def words_ok(kind: str, words: list[str]) -> bool:
    """Whether the words after the command are what 2.6 would pass for this kind."""
    if kind == "route-up":
        return words == []
    if kind == "ipchange":
        m = _IPCHANGE.fullmatch(words[0]) if len(words) == 1 else None
        return m is not None and _address_or_empty(m.group(1).split("%")[0]) and 0 < int(m.group(2)) < 65536
    if kind == "up":
        return (len(words) == 6 and bool(_DEV.fullmatch(words[0])) and words[1].isdigit() and len(words[1]) <= 5
                and words[2] == "0" and _address_or_empty(words[3]) and _address_or_empty(words[4])
                and words[5] == "init")
    return False


class RootScripts:
    """The main process's side. Create it while root and single-threaded; `run()` from the
    scripts' worker thread (one call at a time); `close()` once the first tunnel's scripts ran."""

    def __init__(self, commands: dict[str, list[str]], setenv_names: frozenset[str] = frozenset()) -> None:
        """`commands`: kind ("ipchange", "up", "route-up") -> argv, the program's path first."""
        self.commands = dict(commands)
        self.pid, ours = root_helper.fork(lambda fd: _serve(fd, commands, setenv_names))
        self.sock: socket.socket | None = ours
        self.ipchanges = 0

    @property
    def open(self) -> bool:
        return self.sock is not None

    def run(self, kind: str, words: list[str], env: dict[str, str], within: float = TIME_LIMIT + 5) -> bool:
        """Have the helper run `kind`'s command with `words` and `env`; True if it exited 0."""
        if self.sock is None:
            return False
        if kind == "ipchange":
            # The helper refuses (and ends at) the one past its bound: the up after it would
            # have no helper, and a server making that many connections fail before their
            # tunnel would end the client's run at its up. So skipped here, the helper kept.
            if self.ipchanges >= MAX_IPCHANGE:
                log.warning("ipchange not run: %d already ran as root before the first tunnel", MAX_IPCHANGE)
                return False
            self.ipchanges += 1
        try:
            self.sock.settimeout(within)
            self.sock.send(message(kind, words, env))
            answer = self.sock.recv(16)
        except (OSError, ValueError) as e:
            log.warning("%s: the root helper did not answer: %s", kind, e)
            self.close()
            return False
        if answer == REFUSED:
            log.warning("%s: the root helper refused the request", kind)
        elif answer not in (OK, FAILED):
            log.warning("%s: the root helper is gone", kind)
            self.close()
        return answer == OK

    def abort(self) -> None:
        """From another thread: wake a run() waiting for the answer (it then closes)."""
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self, within: float = 2.0) -> None:
        """End the helper (it runs nothing more) and reap it, bounded."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.reap(within)

    def reap(self, within: float) -> None:
        """Wait, bounded, until the helper is gone (after abort(): it kills what it runs and
        exits), so that what the end runs next (route-pre-down, down) comes after it."""
        root_helper.reap(self.pid, within)


def _serve(fd: int, commands: dict[str, list[str]], setenv_names: frozenset[str]) -> NoReturn:
    status = 0
    try:
        sock = root_helper.enter(fd)
        path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").encode()
        ipchanges = 0
        # What may come next: ipchange (any number, bounded) until up; up once; route-up once after.
        allowed = {"ipchange", "up" if "up" in commands else "route-up"} & set(commands)
        while allowed:
            data = sock.recv(MAX_HEADER + 1 + MAX_MESSAGE + 1)
            if not data:
                return                  # end of file: the main process closed it or went
            req = _request(data, setenv_names)
            if req is None or req[0] not in allowed or (req[0] == "ipchange" and ipchanges >= MAX_IPCHANGE):
                sock.send(REFUSED)
                return
            kind, words, env = req
            env[b"PATH"] = path         # the helper's own, as every command here has one
            if kind == "ipchange":
                ipchanges += 1
            elif kind == "up":
                allowed = {"route-up"} & set(commands)
            else:
                allowed = set()
            ok = _run(commands[kind], words, env, sock)
            if ok is None:
                return                  # the main process ended (or spoke out of turn): its command killed
            sock.send(OK if ok else FAILED)
    except BaseException:  # noqa: BLE001 - the child must end here, whatever happened
        status = 1
    finally:
        os._exit(status)


def message(kind: str, words: list[str], env: dict[str, str]) -> bytes:
    """One request: the JSON header, a newline, the environment (within the helper's bounds
    whatever the server pushed: encode leaves out the largest variables, said)."""
    header = json.dumps({"kind": kind, "words": words}).encode()     # ASCII: no newline in it
    return header + b"\n" + encode(env, "the root helper's " + kind)


def _request(data: bytes, setenv_names: frozenset[str]):
    """(kind, words, env) from one message, or None (never raises on what it is sent)."""
    header, nl, env_data = data.partition(b"\n")
    if not nl or len(header) > MAX_HEADER:
        return None
    try:
        msg = json.loads(header)
    except (ValueError, RecursionError):
        return None
    if not isinstance(msg, dict) or set(msg) != {"kind", "words"}:
        return None
    kind, words = msg["kind"], msg["words"]
    if not (isinstance(kind, str) and isinstance(words, list) and all(isinstance(w, str) for w in words)) \
            or not words_ok(kind, words):
        return None
    env = decode(env_data, setenv_names)
    return None if env is None else (kind, words, env)


def _run(argv: list[str], words: list[str], env: dict[bytes, bytes], sock: socket.socket | None = None) -> bool | None:
    """execve(argv + words, env) in a session of its own, waited for up to TIME_LIMIT; True if it
    exited 0. None: `sock` ended meanwhile (the client is ending: SIGTERM closes it) or carried a
    message out of turn -- the command is killed with its group then, as the main process kills
    its own scripts at its end: a slow root `up` finished after the `down` that ran at the exit
    had undone nothing, and left its settings (firewall, DNS) behind the ended tunnel."""
    try:
        p = subprocess.Popen([*argv, *words], env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    except (OSError, ValueError) as e:
        os.write(2, f"SCRIPT-ROOT: cannot run {argv[0]}: {getattr(e, 'strerror', None) or e}\n".encode())
        return False
    watch = select.poll()
    if sock is not None:
        watch.register(sock, select.POLLIN | select.POLLRDHUP)
    end = time.monotonic() + TIME_LIMIT
    while (status := p.poll()) is None:
        left = end - time.monotonic()
        if left <= 0:
            _kill(p)
            os.write(2, f"SCRIPT-ROOT: {argv[0]} ran past its {TIME_LIMIT:g} s limit: killed\n".encode())
            return False
        if watch.poll(min(left, 0.05) * 1000):
            _kill(p)
            os.write(2, f"SCRIPT-ROOT: {argv[0]} killed: the client is ending\n".encode())
            return None
    return status == 0


def _kill(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass
    p.wait()
