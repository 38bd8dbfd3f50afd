"""`mgmt-login`: the management interface as a stranger on the network reaches it -- TCP off
loopback with a password (gateway/management.py's accept, prompt and password lines, the login
throttle of mgmt_throttle.py, the over-long lines of mgmt_line.py), before and after the password.

Why a target of its own: `management` and `management-auth` feed an already authenticated unix
socket client, so no input of theirs ever reached the password prompt, the throttle across
connections or a line past LINE_LIMIT (fuzz48's measure: mgmt_throttle.py and mgmt_line.py 0 %).

One Management per input, on a fake clock, its listening socket replaced by a fake one that hands
out in-memory connections from 6 addresses (two IPv4 hosts, one of them also as ::ffff:, two
addresses of one IPv6 /64, one of another); the password is PASSWORD, set as a password file sets
it, and the throttle is the one an off-loopback listener gets. The commands are answered by the
real Operations of an in-memory server (mgmt_world._world, rebuilt every 2,000 inputs).

The input is a script of steps (first byte of each: what, then its operands):
  0 connect from address N            4 EOF on connection N
  1 N LEN bytes: raw bytes to N        5 time passes (0.5 s steps, timers fire)
  2 N: the password line to N          6 connection N stops (or resumes) reading
  3 N K LEN: an over-long line (~LEN*256 bytes, then a command word K) to N
  7 N: the text up to the next LF in the input, as one line, to N

Checks after every step (nothing may escape either):
- a connection is authenticated only after a line that reads as the password (control bytes
  dropped); before that it was sent nothing but `ENTER PASSWORD:` prompts;
- wrong passwords compared per source (IPv4 address, IPv6 /64) within the throttle's promise:
  SOURCE_BURST + elapsed / SOURCE_REFILL; from sources never trusted together within
  GLOBAL_BURST + elapsed * GLOBAL_RATE;
- at most MAX_CONNS + 1 connections, MAX_UNAUTH_PER_SOURCE without the password per source;
- an over-long line runs no command (Management.answer is not called for it) and is answered at
  most one line; before the password one past LINE_LIMIT closes the connection (a shorter one is
  a wrong password);
- a connection's input buffer within one read and LINE_LIMIT; what waits for a connection that
  does not read within OUT_LIMIT and one reply (it is cut off past it);
- the management's own warnings at most a few per LOG_EVERY seconds (NoteLimit and co.).
"""
from __future__ import annotations

import logging
import os

from appliance.gateway import management as mg
from appliance.gateway import mgmt_throttle as mt
from tests.fuzz.scratch import scratch_dir

PASSWORD = b"s3cret pw"
ADDRS = ("198.18.7.2", "198.18.7.3", "::ffff:198.18.7.2", "2001:db8:1:2::1", "2001:db8:1:2::9", "2001:db8:9::1")
# The source each address counts as: written out here, not computed by mgmt_throttle.source_key.
GROUP = ("A", "B", "A", "C", "C", "D")
COMMANDS = (b"signal SIGTERM", b"kill client0", b"status", b"pid", b"client-kill 0", b"version", b"log all",
            b"yyyy")
PROMPT = b"ENTER PASSWORD:"
STEP = 0.5
# The throttle's promise (mgmt_throttle.py's doc and the README), written out: constants of the
# target, not read from the module, so a weaker throttle fails here.
SOURCE_BURST, SOURCE_REFILL, GLOBAL_BURST, GLOBAL_RATE = 6, 20.0, 30, 1.0


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class _Waiter:
    """The pump's waiter: registrations only (the script drives every read itself)."""

    def register(self, port, data, write: bool = False, read: bool = True) -> None:  # noqa: ANN001
        pass

    def modify(self, port, data, write: bool, read: bool = True) -> None:  # noqa: ANN001
        pass

    def unregister(self, port) -> None:  # noqa: ANN001
        pass

    def wait(self, timeout):  # noqa: ANN001, ANN201
        return []

    def close(self) -> None:
        pass


class _Conn:
    """One accepted connection's socket: what the script wrote waits to be read; what the
    management sends is kept (unless it stopped reading: then nothing is taken)."""
    _fd = 1000

    def __init__(self) -> None:
        _Conn._fd += 1
        self.fd = _Conn._fd
        self.inq = bytearray()
        self.eof = False
        self.out = bytearray()
        self.reading = True
        self.closed = False
        self.said: list[bytes] = []          # every byte string the script wrote, in order

    def recv_into(self, buf) -> int:  # noqa: ANN001
        if not self.inq:
            if self.eof:
                return 0
            raise BlockingIOError
        n = min(len(buf), len(self.inq))
        buf[:n] = self.inq[:n]
        del self.inq[:n]
        return n

    def send(self, b) -> int:  # noqa: ANN001
        if not self.reading:
            raise BlockingIOError
        self.out += b
        return len(b)

    def setblocking(self, on: bool) -> None:
        pass

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        self.closed = True


class _Listener:
    def __init__(self) -> None:
        self.queue: list[tuple[_Conn, tuple]] = []

    def accept(self):  # noqa: ANN201
        if not self.queue:
            raise BlockingIOError
        return self.queue.pop(0)

    def fileno(self) -> int:
        return 999

    def close(self) -> None:
        pass


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.n = 0

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith(("management", "%s: closed")):
            self.n += 1


def _clean(line: bytes) -> bytes:
    return bytes(b for b in line if b >= 0x20 and b != 0x7F)


def make_mgmt_login():
    from appliance.gateway.loop import Pump
    from tests.fuzz.mgmt_world import _world
    logging.getLogger("vpn-appliance").setLevel(logging.WARNING)
    d = scratch_dir("mgmt-login-fuzz-")
    state: dict = {"n": 0}
    counter = _Count()
    logging.getLogger("vpn-appliance").addHandler(counter)

    def ops():
        if state["n"] % 2000 == 0 or not state["gw"].d.clients:
            state["w"], state["gw"] = _world()
        state["n"] += 1
        return state["gw"].ops

    def one(data: bytes) -> None:
        o = ops()
        clock = _Clock()
        pump = Pump(clock, _Waiter())
        m = mg.Management((os.path.join(d, "m.sock"), "unix", None), pump, o)
        try:
            _script(m, pump, clock, data, counter)
        finally:
            for c in list(m.conns):
                m.drop(c, None)
            m.close()
    return one


def _script(m, pump, clock: _Clock, data: bytes, counter: _Count) -> None:  # noqa: C901 - one branch per step
    listener = _Listener()
    m.sock.close()
    m.sock = listener
    m.password = PASSWORD                               # as read from its password file
    m.throttle = mt.LoginThrottle(pump.clock, logging.getLogger("vpn-appliance").warning)
    answered: list[int] = [0]
    real_answer = m.answer

    def answer(c, a):  # noqa: ANN001, ANN202
        answered[0] += 1
        return real_answer(c, a)
    m.answer = answer
    misses: dict[str, int] = {}
    trusted: set[str] = set()
    real_matches = m.password_matches

    def matches(line: bytes) -> bool:
        ok = real_matches(line)
        peer = current[0]
        g = GROUP[ADDRS.index(peer)]
        if ok:
            trusted.add(g)
        else:
            misses[g] = misses.get(g, 0) + 1
        return ok
    m.password_matches = matches
    current = [""]
    conns: list[tuple[_Conn, object | None, str]] = []     # (socket, its MgmtConn, address)
    start = clock.t
    logged0 = counter.n

    def conn_of(sock: _Conn):  # noqa: ANN202
        return next((c for c in m.conns if c.sock is sock), None)

    def pick(i: int):  # noqa: ANN202
        live = [x for x in conns if not x[0].closed]
        return live[i % len(live)] if live else None

    def serve(sock: _Conn, addr: str) -> None:
        c = conn_of(sock)
        current[0] = addr
        for _ in range(64):
            if c is None or c.closed:
                return
            if not (sock.inq or sock.eof or c.pending):
                return
            before = len(sock.inq)
            c.on_read()
            if c.closed or (len(sock.inq) == before and not c.pending and not sock.eof):
                return

    pos = 0
    steps = 0
    while pos < len(data) and steps < 64:
        steps += 1
        op = data[pos] % 8
        arg = data[pos + 1] if pos + 1 < len(data) else 0
        pos += 2
        if op == 0:
            addr = ADDRS[arg % len(ADDRS)]
            s = _Conn()
            listener.queue.append((s, (addr, 40000 + len(conns))))
            current[0] = addr
            m._accept()
            conns.append((s, conn_of(s), addr))
            if conn_of(s) is None:
                assert s.closed, "a refused connection was left open"
        elif op in (1, 2, 3, 4, 6, 7):
            x = pick(arg)
            if x is None:
                continue
            s, _c, addr = x
            if op == 1:
                n = data[pos] if pos < len(data) else 0
                chunk = data[pos + 1:pos + 1 + n].replace(b"@P", PASSWORD)
                pos += 1 + n
                s.inq += chunk
                s.said.append(chunk)
                serve(s, addr)
            elif op == 2:
                s.inq += PASSWORD + b"\n"
                s.said.append(PASSWORD + b"\n")
                serve(s, addr)
            elif op == 7:
                j = data.find(b"\n", pos)
                j = len(data) if j < 0 else j
                line = data[pos:j].replace(b"@P", PASSWORD) + b"\n"
                pos = j + 1
                s.inq += line
                s.said.append(line)
                serve(s, addr)
            elif op == 3:
                k = data[pos] if pos < len(data) else 0
                n = data[pos + 1] if pos + 1 < len(data) else 0
                pos += 2
                serve(s, addr)                       # what it sent before, answered first
                c = conn_of(s)
                if c is None or c.closed or s.inq or c.pending:
                    continue
                was_authed, had_partial = c.authed, bool(c.inbuf) or c.long is not None
                filler = (b"x" * 255 + b" ") * (n + 4)        # from 1 KiB to 65 KiB
                line = filler + COMMANDS[k % len(COMMANDS)] + b"\n"
                out0, calls0 = len(s.out), answered[0]
                s.inq += line
                s.said.append(line)
                serve(s, addr)
                if was_authed and not had_partial:
                    assert answered[0] == calls0, "an over-long line ran a command"
                    got = bytes(s.out[out0:])
                    assert got.count(b"\n") <= 1, f"an over-long line answered {got[:300]!r}"
                if not was_authed and len(line) - 1 > mg.LINE_LIMIT:
                    assert s.closed, "an over-long line before the password left the connection open"
            elif op == 4:
                s.eof = True
                serve(s, addr)
            elif op == 6:
                s.reading = not s.reading
                c = conn_of(s)
                if s.reading and c is not None:
                    c.flush()
        else:
            clock.t += STEP * (1 + arg % 64)
            current[0] = ""
            for fn in pump.timers.pop_due(clock.t):
                fn()
        _check(m, conns, clock.t - start, misses, trusted, counter.n - logged0)


def _check(m, conns, elapsed: float, misses: dict[str, int], trusted: set[str], logged: int) -> None:
    assert len(m.conns) <= mg.MAX_CONNS + 1, len(m.conns)
    waiting: dict[str, int] = {}
    for s, _c, addr in conns:
        c = next((c for c in m.conns if c.sock is s), None)
        if c is None:
            continue
        assert not s.closed, "a closed socket kept as a connection"
        sent = b"".join(s.said)
        lines = sent.split(b"\n")[:-1]
        if c.authed:
            assert any(_clean(x) == PASSWORD for x in lines), f"authenticated without the password: {sent[:300]!r}"
        else:
            waiting[GROUP[ADDRS.index(addr)]] = waiting.get(GROUP[ADDRS.index(addr)], 0) + 1
            assert bytes(s.out) == PROMPT * (len(s.out) // len(PROMPT)), \
                f"told something before the password: {bytes(s.out[:300])!r}"
        assert len(c.inbuf) <= 65536 + mg.LINE_LIMIT, len(c.inbuf)
        assert len(c.outbuf) <= 2 * mg.OUT_LIMIT + mg.WAKE_OUTPUT + 65536, len(c.outbuf)
    for g, n in waiting.items():
        assert n <= mg.MAX_UNAUTH_PER_SOURCE, f"{n} connections of source {g} without the password"
    for g, n in misses.items():
        assert n <= SOURCE_BURST + elapsed / SOURCE_REFILL + 1e-6, \
            f"source {g}: {n} wrong passwords compared in {elapsed:g} s"
    strangers = sum(n for g, n in misses.items() if g not in trusted)
    assert strangers <= GLOBAL_BURST + elapsed * GLOBAL_RATE + 1e-6, \
        f"{strangers} wrong passwords compared in {elapsed:g} s from all sources"
    assert logged <= 8 * (1 + elapsed / mt.LOG_EVERY), f"{logged} management warnings in {elapsed:g} s"


def seeds() -> dict[str, bytes]:
    """Hand-made scripts: a login, wrong passwords from one source and from many, over-long
    lines before and after the password, an IPv6 /64 rotating, a slow reader, time."""
    pw = bytes([2, 0])
    return {
        "login-status": bytes([0, 0]) + pw + bytes([7, 0]) + b"status\n" + bytes([7, 0]) + b"quit\n",
        "wrong-thrice": bytes([0, 0]) + b"".join(bytes([7, 0]) + b"guess%d\n" % i for i in range(3)),
        "burst-one-source": b"".join(bytes([0, 0, 7, 0]) + b"nope\n" + bytes([7, 0]) + b"nope\n" for _ in range(5)),
        "v6-rotate": b"".join(bytes([0, 3 + i % 2, 7, 0]) + b"x\n" + bytes([7, 0]) + b"y\n" for i in range(5))
        + bytes([5, 40]) + bytes([0, 4, 2, 0]),
        "mapped-same-source": b"".join(bytes([0, i % 3 and 2]) + bytes([7, 0]) + b"no\n" for i in range(9)),
        "overlong-before": bytes([0, 1, 3, 0, 0, 3]),
        "overlong-after": bytes([0, 0, 2, 0, 3, 0, 0, 2, 3, 0, 1, 20, 7, 0]) + b"pid\n",
        "overlong-partial": bytes([0, 0, 2, 0, 1, 0, 5]) + b"echo " + bytes([3, 0, 1, 60]),
        "slow-reader": bytes([0, 0, 2, 0, 6, 0]) + b"".join(bytes([7, 0]) + b"log all\n" for _ in range(6))
        + bytes([6, 0, 5, 3]),
        "deadline": bytes([0, 0, 0, 1, 5, 63, 5, 63, 0, 1, 2, 1]),
        "fill-slots": b"".join(bytes([0, i % 6]) for i in range(20)) + bytes([2, 7, 5, 30, 0, 0, 2, 0]),
        "http": bytes([0, 0, 7, 0]) + b"POST / HTTP/1.1\n",
        "cut-password": bytes([0, 0, 1, 0, 3]) + PASSWORD[:3] + bytes([1, 0, 7]) + PASSWORD[3:] + b"\r\n"
        + bytes([1, 0, 9]) + b"pid\nstate",
        "eof-mid-line": bytes([0, 0, 2, 0, 1, 0, 4]) + b"stat" + bytes([4, 0]),
        # a line of 2,049 bytes: 2.6 reads nothing of it (its LF was the byte lost); 1,029 bytes
        # ending in `pid`: 2.6 would run `pid` (mgmt_line.py)
        "overlong-2049": bytes([0, 0, 2, 0]) + b"".join(bytes([1, 0, 255]) + b"y" * 255 for _ in range(8))
        + bytes([1, 0, 10]) + b"y" * 9 + b"\n",
        "overlong-1029-pid": bytes([0, 0, 2, 0]) + b"".join(bytes([1, 0, 255]) + b"y" * 255 for _ in range(4))
        + bytes([1, 0, 9]) + b"yyyyy pid" + bytes([7, 0]) + b"\n",
        "global": b"".join(bytes([0, i % 6, 7, 0]) + b"a\n" + bytes([7, 0]) + b"b\n" + bytes([5, 0])
                           for i in range(24)),
    }


def dict_entries() -> list[bytes]:
    return [PASSWORD, b"@P", b"\n", b"\r\n", b"status", b"signal SIGTERM", b"kill", b"client-kill",
            b"log all", b"state on", b"quit", b"exit", b"help", b"client-auth", b"END", b"POST / HTTP/1.1",
            b"Host:", b"\x00", b"\x7f"]
