"""OpenVPN's down-root plugin done natively: `plugin .../openvpn-plugin-down-root.so "CMD ARGS"`
runs CMD as root when the tunnel goes down, after the process dropped to `user`/`group`.

What OpenVPN 2.6's plugin does (src/plugins/down-root/down-root.c): at the UP call, still root, it
forks a process that keeps root and waits on a socket; at the DOWN call the main process tells it
to run; it runs CMD with execve (no shell, no PATH search: the words as given, the program relative
to the working directory) with the environment of that UP call, waits for it, and answers whether
it exited 0 (a failure is logged by OpenVPN as "up/down plugin call failed", fatal there). It is
not subject to `script-security` (a plugin runs its own execve). Several plugin lines: each runs
its own command, in their order.

Here: our client drops root before it connects (cli.py) and our server after its start-up, so the
helper is forked at start, while root and single-threaded (as host/unlink_at_exit.py); the
environment comes at DOWN from the main process (the UP one: gateway/updown_env.py). Since that
process runs as `user` and handles the network, what it sends is treated as hostile: each message
at most MAX_MESSAGE bytes and MAX_VARS variables, each NAME=VALUE with no NUL; a name must be
OpenVPN's own kind (lower case first, or X509_...) or one of the config's setenv names, so a
compromised process cannot hand the root command LD_PRELOAD, PATH, BASH_ENV or the like, nor a
`dev` that names no device (`../../etc/x`, `-f`: root scripts make paths of it) (a refused
message ends the helper). The helper runs its commands at each message, one run at a time, and
answers, as OpenVPN's runs them at each DOWN call (a client without persist-tun calls it at every
reconnect: gateway/client.py); it runs nothing on its own. It exits
when the main process goes (end of file on its socket: a SIGKILL included), runs nothing then, and
ignores the signals a terminal or service manager sends to the whole group (it must outlive the
main process's SIGTERM to run the command at its exit). A command past TIME_LIMIT is killed with
its process group (OpenVPN waits for ever). Its standard output and error are the main process's
(OpenVPN's helper keeps them too), stdin /dev/null.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from typing import NoReturn

from . import root_helper

log = logging.getLogger("vpn-appliance")

MAX_MESSAGE = 128 * 1024        # the environment, encoded (OpenVPN's env set has no bound; a chain's
MAX_VARS = 4096                 # variables and 100 routes stay far below)
TIME_LIMIT = 30.0               # per command
OK, FAILED, REFUSED = b"0", b"1", b"2"
_NAME = re.compile(r"(?:[a-z][A-Za-z0-9_]*|X509_[0-9]+_[^=\0]{1,128})")
# `dev`'s value: a name the kernel could give a device (dev_valid_name: at most 15 bytes, no
# '/', ':' or white space, not . or ..), not starting with '-'. Root scripts make paths and
# command lines of it (`resolvconf -a "${dev}.inet"`, `ip link set "$dev"`); ours is always one
# (empty where no device is known).
_DEV_VALUE = re.compile(rb"(?:[^\s/:\-][^\s/:]{0,14})?")
# Lower-case names that change what the root command's own programs do (curl, wget, apt, Python's
# urllib send through the proxy they name): OpenVPN sets none of them (its proxy variables are
# http_proxy_server_N / _port_N), so only a compromised main process would send one. Any name
# ending in _proxy: curl reads SCHEME_proxy for each of its schemes, Python's urllib (requests,
# pip) every *_proxy (socks_proxy, wss_proxy), gRPC clients grpc_proxy.
_PROXY_NAMES = frozenset({"http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy", "rsync_proxy"})


def _a_proxy_name(text: str) -> bool:
    return text in _PROXY_NAMES or text.endswith("_proxy")


RUN = b"R"                      # a message's first byte: an empty environment is no end of file


def encode(env: dict[str, str], label: str = "down-root") -> bytes:
    """RUN, then NAME=VALUE entries separated by NUL (what the helper decodes). A NUL in a value
    (which no C environment holds: tlsverify.clean's `_`) would split it into an entry of the
    sender's choosing -- `x\0dev=eth0` from a server's pushed option -- so it is made `_`; a name
    with `=` or NUL is left out (none of ours has one).

    Always within the helper's bounds (MAX_MESSAGE, MAX_VARS): the largest variables are left
    out (said once) until the rest fits, kept in their order. Why: the environment is partly the
    server's -- 1,024 pushed options of ~250 bytes (foreign_option_N), or a chain of certificates
    with thousands of subject attributes -- and a message past the bounds was refused whole, so
    a server could keep the client's root down command (its firewall's or DNS's undoing) from
    running at all. Largest first, so that what a down script reads (dev, the addresses, routes,
    the settings) stays."""
    items = [(k, f"{k}={v.replace(chr(0), '_')}".encode("utf-8", "surrogateescape"))
             for k, v in env.items() if k and "=" not in k and "\0" not in k]
    size = len(RUN) + sum(len(it) for _k, it in items) + max(len(items) - 1, 0)
    if size > MAX_MESSAGE or len(items) > MAX_VARS:
        drop: set[int] = set()
        n = len(items)
        for i in sorted(range(len(items)), key=lambda i: -len(items[i][1])):
            if size <= MAX_MESSAGE and n <= MAX_VARS:
                break
            drop.add(i)
            size -= len(items[i][1]) + 1
            n -= 1
        log.warning("%s: %d variable(s) left out of the command's environment (over %d bytes or %d "
                    "variables in all), the largest first: %s", label, len(drop), MAX_MESSAGE, MAX_VARS,
                    ", ".join(items[i][0] for i in sorted(drop)[:3]))
        items = [it for i, it in enumerate(items) if i not in drop]
    return RUN + b"\0".join(it for _k, it in items)


def decode(data: bytes, extra_names: frozenset[str]) -> dict[bytes, bytes] | None:
    """The environment a message asks for, or None to refuse it (never raises)."""
    if len(data) > MAX_MESSAGE or not data.startswith(RUN):
        return None
    data = data[len(RUN):]
    items = data.split(b"\0") if data else []
    if len(items) > MAX_VARS:
        return None
    env: dict[bytes, bytes] = {}
    for item in items:
        name, eq, value = item.partition(b"=")
        try:
            text = name.decode("ascii")
        except UnicodeDecodeError:
            return None
        if not eq or not ((_NAME.fullmatch(text) and not _a_proxy_name(text)) or text in extra_names):
            return None
        if name == b"dev" and (not _DEV_VALUE.fullmatch(value) or value in (b".", b"..")):
            return None
        env[name] = value
    return env


class DownRoot:
    """The main process's side. Create it while root and single-threaded; `run(env)` at DOWN."""

    def __init__(self, commands: list[tuple[str, list[str]]], setenv_names: frozenset[str] = frozenset()) -> None:
        """`commands`: (program's path to execute, argv as given) per plugin line."""
        self.pid, self.sock = root_helper.fork(lambda fd: _serve(fd, commands, setenv_names))
        self.count = len(commands)
        # A reconnect's run (the client's script worker) and the end's (its main thread) one at a
        # time on the one socket.
        self._lock = threading.Lock()

    def answer_within(self) -> float:
        """How long the helper may take to answer: each command, one after the other, up to
        TIME_LIMIT, and a margin (waiting for one command's limit only ended a helper that was
        still running a later command, bounded, and the end's DOWN then ran nothing)."""
        return TIME_LIMIT * max(self.count, 1) + 5

    def run(self, env: dict[str, str], within: float | None = None) -> bool:
        """Have the helper run the commands with `env`; True if each exited 0. A helper that did
        not answer in time (`within`, else answer_within()) is ended (a late answer would be read
        as the next run's)."""
        if within is None:
            within = self.answer_within()
        with self._lock:
            sock = self.sock
            if sock is None:
                return False
            try:
                sock.settimeout(within)
                sock.send(encode(env))
                answer = sock.recv(16)
            except OSError as e:
                log.warning("down-root: the helper did not answer: %s", e)
                answer = b""
            if answer not in (OK, FAILED):
                self.sock = None
                sock.close()
        if answer != OK:
            log.warning("down-root: %s", "the helper refused the environment" if answer == REFUSED
                        else "the command failed" if answer == FAILED else "the helper is gone")
        return answer == OK

    def close(self, within: float = 2.0) -> None:
        """End the helper (it runs nothing then) and reap it, bounded."""
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()
        root_helper.reap(self.pid, within)


def _serve(fd: int, commands: list[tuple[str, list[str]]], setenv_names: frozenset[str]) -> NoReturn:
    status = 0
    try:
        sock = root_helper.enter(fd)
        while True:
            data = sock.recv(MAX_MESSAGE + 1)
            if not data:
                return                  # end of file: the main process went (or ended us)
            env = decode(data, setenv_names)
            if env is None:
                sock.send(REFUSED)
                return
            # Every command, whatever an earlier one did: 2.6's plugin_call calls each plugin at
            # DOWN and only counts the errors.
            ok = all([_run_one(path, argv, env) for path, argv in commands])
            sock.send(OK if ok else FAILED)
    except BaseException:  # noqa: BLE001 - the child must end here, whatever happened
        status = 1
    finally:
        os._exit(status)


def _run_one(path: str, argv: list[str], env: dict[bytes, bytes]) -> bool:
    """execve(path, argv, env) in a session of its own, waited for up to TIME_LIMIT."""
    try:
        p = subprocess.Popen(argv, executable=path, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as e:
        os.write(2, f"DOWN-ROOT: cannot run {path}: {e.strerror or e}\n".encode())
        return False
    try:
        status = p.wait(TIME_LIMIT)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        p.wait()
        os.write(2, f"DOWN-ROOT: {argv[0]} ran past its {TIME_LIMIT:g} s limit: killed\n".encode())
        return False
    if status != 0:
        os.write(2, f"DOWN-ROOT: {argv[0]} exited with status {status}\n".encode())
    return status == 0
