"""The LAN DNS forwarder's socket layer (appliance/lan/dns_forwarder.py, fuzz48): the TCP framing
of LAN clients' queries and answers, and the upstream attempts' reading (UDP datagrams and the
length-prefixed TCP stream of a truncated answer's retry), around the real `ForwarderCore`.

Why a target of its own: the `dns` target drives the sans-I/O core (dns_core.py) with whole
messages; the bytes a LAN host writes on a TCP connection -- split anywhere, length prefixes of 0
or past MAX_QUERY, pipelined batches past TCP_BATCH, a host that stops reading its answers -- and
the bytes an upstream server sends back on its socket reach only `DnsForwarder`, which no target
imported (coverage.py over every target's seeds and 2,000 mutations each: 0 of its branches).

`dns-tcp`: steps split at SEP, each an op byte and its bytes; the sockets are fakes (the module's
`socket` name is swapped for the call, then put back), the pump a fake that runs what the
forwarder asks for (`again`, writability) until it asks no more. Ops (op % 10): 0 a LAN host
(first byte: one of four addresses) connects; 1 raw bytes from a connection; 2 the bytes framed as
one query (its length prefix right); 3 a connection closes; 4 a connection stops or resumes
reading its answers; 5 the oldest upstream attempt is answered with its own query turned into a
response (ID and question as sent, first byte: TC, rcode, whether a TCP answer comes in pieces)
and the step's bytes appended (or, on TCP, sent ahead of it in the same read); 6 raw bytes from the oldest upstream (a datagram from the server,
or from elsewhere; stream bytes on TCP); 7 time passes (first byte * 0.1 s); 8 the tunnel goes down
or up; 9 the oldest upstream fails (a reset, or the stream ends).

Oracles after every step: nothing escapes; per connection, the queries the core got are, in
order, a prefix of the length-prefixed split of every byte the host sent, and while the
connection is open they are all of its whole messages -- and it is closed once a length of 0 or
past MAX_QUERY comes up; the bytes written to the host are whole length-prefixed answers, each
with the ID of a query it sent (no more answers of an ID than queries of it); a closed
connection's socket is closed and not watched; buffers within their bounds (a connection's input
at most one message and one read, its queued answers at most TCP_MAX_OUT (prefixes counted),
an upstream stream's input at most one answer and one read); every open upstream socket belongs
to a query in flight, none after the tunnel went down; a TCP upstream's answer the core got is
the next length-prefixed message of its stream (the first, then the second ...: a message the
core does not take keeps the framing), and while the attempt is open every whole message of its
stream reached the core.
"""
from __future__ import annotations

import errno
import os
import socket as _socket
import struct
from collections import Counter

SEP = b"\xfe\xfd"
SOURCES = ("198.18.50.10", "198.18.50.11", "198.18.51.7", "fd18:50::9")
SERVERS = [("198.19.0.1", 53), ("198.19.0.2", 5353)]


class _Sock:
    """A non-blocking socket of the forwarder's, fed by the target."""

    def __init__(self, world: "_World", family: int = _socket.AF_INET, kind: int = _socket.SOCK_STREAM) -> None:
        self.world, self.family, self.kind = world, family, kind
        self.rx: list = []              # bytes (a read / a datagram), (bytes, addr) for recvfrom, or an errno
        self.sent = bytearray()         # what the forwarder wrote (stream) ...
        self.datagrams: list[bytes] = []    # ... or sent (UDP)
        self.blocked = False            # the peer does not read: send raises EAGAIN
        self.closed = False
        self.peer: tuple | None = None
        world.socks.append(self)

    # what dns_forwarder calls
    def setblocking(self, _flag: bool) -> None:
        pass

    def setsockopt(self, *_a) -> None:
        pass

    def bind(self, _addr) -> None:
        pass

    def connect(self, addr) -> None:
        self.peer = tuple(addr)
        if self.kind == _socket.SOCK_STREAM:
            raise BlockingIOError(errno.EINPROGRESS, "in progress")

    def fileno(self) -> int:
        return -1 if self.closed else 1000 + self.world.socks.index(self)

    def _take(self):
        assert not self.closed, "read from a closed socket"
        if not self.rx:
            raise BlockingIOError(errno.EAGAIN, "empty")
        item = self.rx.pop(0)
        if isinstance(item, int):
            raise OSError(item, os.strerror(item))
        return item

    def recv(self, n: int) -> bytes:
        item = self._take()
        data = item[0] if isinstance(item, tuple) else item
        if len(data) > n:                  # the rest stays for the next read
            self.rx.insert(0, data[n:])
            data = data[:n]
        return data

    def recvfrom(self, n: int):
        item = self._take()
        data, addr = item if isinstance(item, tuple) else (item, self.peer)
        return data[:n], addr

    def send(self, data) -> int:
        assert not self.closed, "write to a closed socket"
        if self.blocked:
            raise BlockingIOError(errno.EAGAIN, "full")
        if self.kind == _socket.SOCK_DGRAM:
            self.datagrams.append(bytes(data))
        else:
            self.sent += data
        return len(data)

    def sendto(self, data, _addr) -> int:
        return self.send(data)

    def close(self) -> None:
        self.closed = True


class _Listener:
    def __init__(self) -> None:
        self.pending: list[tuple[_Sock, tuple]] = []

    def accept(self):
        if not self.pending:
            raise BlockingIOError(errno.EAGAIN, "none")
        return self.pending.pop(0)


class _Pump:
    """What DnsForwarder uses of gateway/loop.Pump: watch/unwatch/again/want_write, timers, clock."""

    def __init__(self) -> None:
        from appliance.gateway.loop import TimerHeap
        self.now = 1000.0
        self.timers = TimerHeap()
        self.watched: dict[int, tuple] = {}
        self.writing: set[int] = set()
        self.agains: dict[int, object] = {}

    def clock(self) -> float:
        return self.now

    def watch(self, port, on_read, on_write=None) -> None:
        self.watched[id(port)] = (port, on_read, on_write)

    def unwatch(self, port) -> None:
        self.watched.pop(id(port), None)
        self.writing.discard(id(port))
        self.agains.pop(id(port), None)

    def again(self, port, handler) -> None:
        self.agains[id(port)] = handler

    def want_write(self, port, on: bool, on_read, on_write) -> None:
        if id(port) in self.watched:
            self.watched[id(port)] = (port, on_read, on_write)
        (self.writing.add if on else self.writing.discard)(id(port))

    def settle(self) -> None:
        """Wake-ups until nothing is ready: readable fakes (input queued), writable ones (asked
        for and not blocked), `again` handlers, due timers. Bounded: a forwarder that keeps
        asking is a hang, and a finding."""
        for _ in range(500):
            ran = False
            for fn in self.timers.pop_due(self.now):
                fn()
                ran = True
            agains, self.agains = self.agains, {}
            for fn in agains.values():
                fn()
                ran = True
            for key, (port, on_read, on_write) in list(self.watched.items()):
                if key not in self.watched:
                    continue
                if key in self.writing and isinstance(port, _Sock) and not port.blocked and on_write:
                    on_write()
                    ran = True
                if key in self.watched and (getattr(port, "rx", None) or getattr(port, "pending", None)):
                    self.watched[key][1]()
                    ran = True
            if not ran:
                return
        raise AssertionError("the forwarder's wake-ups did not settle in 500 rounds")


class _SocketModule:
    """dns_forwarder's `socket` for the call: socket() makes fakes, the rest is the real module's."""

    def __init__(self, world: "_World") -> None:
        self._world = world

    def socket(self, family=_socket.AF_INET, kind=_socket.SOCK_STREAM, *_a):
        return _Sock(self._world, family, kind)

    def __getattr__(self, name):
        return getattr(_socket, name)


class _Conn:
    def __init__(self, sock: _Sock, source: str) -> None:
        self.sock, self.source = sock, source
        self.wrote = bytearray()          # every byte the host sent
        self.taken: list[bytes] = []      # the queries the core got from this connection


def _split(stream: bytes, max_query: int, least: int = 1) -> tuple[list[bytes], bool]:
    """The whole messages of a length-prefixed stream, and whether a bad length (under `least`
    or past max_query) comes up after them (the connection must then end). An upstream's stream
    has no bad length (least 0: an empty message is a message the core drops)."""
    out, at = [], 0
    while len(stream) - at >= 2:
        (n,) = struct.unpack_from("!H", stream, at)
        if n < least or n > max_query:
            return out, True
        if len(stream) - at < 2 + n:
            break
        out.append(stream[at + 2:at + 2 + n])
        at += 2 + n
    return out, False


class _World:
    def __init__(self) -> None:
        from appliance.lan import dns_forwarder as fwd
        from appliance.gateway.observers import TunnelState
        from appliance.openvpn.keymethod import PushedOptions
        self.fwd = fwd
        self.socks: list[_Sock] = []
        self.pump = _Pump()
        self.f = fwd.DnsForwarder([], None, port=0, bind_device=False, is_own=lambda _a, _o: False,
                                  host_addresses=lambda: ())
        self.f.attach(self.pump, lambda: None)
        self.listener = _Listener()
        self.pump.watch(self.listener, lambda: self.f._on_accept(self.listener))
        self.conns: list[_Conn] = []
        self.by_client: dict[int, _Conn] = {}
        self.answers: list[tuple[object, bytes]] = []      # (upstream, data) the core got
        self.up_streams: dict[int, bytearray] = {}          # id(upstream sock) -> bytes fed to it
        self.up_taken: dict[int, int] = {}                  # id(upstream sock) -> its answers the core got
        self.up_state = True
        self._state = lambda up: TunnelState(up, "198.19.0.1:1194/udp" if up else "", "tun0",
                                             PushedOptions(ifconfig=("10.8.0.2", "255.255.255.0"),
                                                           dns_endpoints=list(SERVERS)) if up else None)
        core = self.f.core
        real_query, real_answer = core.query, core.answer

        def query(client, source, data, now, tcp=False):
            c = self.by_client.get(id(client))
            if tcp:
                assert c is not None, "a TCP query from a connection the target never opened"
                c.taken.append(bytes(data))
            return real_query(client, source, data, now, tcp)

        def answer(token, server, data, now):
            up = self.f.upstream.get(token)
            self.answers.append((up, bytes(data)))
            return real_answer(token, server, data, now)
        core.query, core.answer = query, answer

    # ------------------------------------------------------------ steps
    def open(self, b: bytes) -> None:
        src = SOURCES[b[0] % len(SOURCES)] if b else SOURCES[0]
        fam = _socket.AF_INET6 if ":" in src else _socket.AF_INET
        s = _Sock(self, fam)
        before = set(self.f.clients)
        self.listener.pending.append((s, (src, 40000 + len(self.conns))))
        self.pump.settle()
        for k in set(self.f.clients) - before:
            c = self.f.clients[k]
            if c.sock is s:
                conn = _Conn(s, src)
                self.conns.append(conn)
                self.by_client[id(c)] = conn

    def _conn(self, b: bytes) -> _Conn | None:
        live = [c for c in self.conns if not c.sock.closed]
        return live[b[0] % len(live)] if live and b else (live[0] if live else None)

    def feed(self, b: bytes, framed: bool) -> None:
        c = self._conn(b)
        if c is None:
            return
        data = b[1:]
        if framed:
            data = struct.pack("!H", len(data) & 0xFFFF) + data
        c.wrote += data
        c.sock.rx.append(data)
        self.pump.settle()

    def close(self, b: bytes) -> None:
        c = self._conn(b)
        if c is not None:
            c.sock.rx.append(b"" if len(b) < 2 or b[1] & 1 else errno.ECONNRESET)
            self.pump.settle()

    def toggle_read(self, b: bytes) -> None:
        c = self._conn(b)
        if c is not None:
            c.sock.blocked = not c.sock.blocked
            self.pump.settle()

    def _oldest_up(self):
        return next(iter(self.f.upstream.values()), None)

    def answer(self, b: bytes) -> None:
        up = self._oldest_up()
        if up is None:
            return
        s: _Sock = up.sock
        q = bytes(s.sent[2:]) if up.tcp else (s.datagrams[-1] if s.datagrams else b"")
        if len(q) < 12:
            return
        flags = b[0] if b else 0
        hdr = bytearray(q[:12])
        hdr[2] = 0x80 | (hdr[2] & 0x79) | (0x02 if flags & 1 else 0)       # QR, RD kept, TC
        hdr[3] = 0x80 | ((flags >> 1) & 0x0F if flags & 0x20 else 0)        # RA, an rcode
        before = up.tcp and flags & 0x10         # the step's bytes go ahead of the answer, in its read
        msg = bytes(hdr) + q[12:] + (b"" if before else b[1:])
        if up.tcp:
            framed = (b[1:] if before else b"") + struct.pack("!H", len(msg)) + msg
            self._stream(s, framed, pieces=bool(flags & 0x40), cut=flags & 0x80)
        else:
            s.rx.append((msg, up.server))
        self.pump.settle()

    def _stream(self, s: _Sock, data: bytes, pieces: bool, cut: int = 0) -> None:
        self.up_streams.setdefault(id(s), bytearray()).extend(data)
        if pieces:
            step = max(1, (cut & 0x3F) or 1)
            for i in range(0, len(data), step):
                s.rx.append(data[i:i + step])
        else:
            s.rx.append(data)

    def raw(self, b: bytes) -> None:
        up = self._oldest_up()
        if up is None:
            return
        s: _Sock = up.sock
        if up.tcp:
            self._stream(s, b[1:], pieces=bool(b and b[0] & 1), cut=b[0] if b else 0)
        else:
            addr = up.server if not b or b[0] & 1 == 0 else ("198.19.0.77", up.server[1])
            s.rx.append((b[1:], addr))
        self.pump.settle()

    def fail(self, b: bytes) -> None:
        up = self._oldest_up()
        if up is not None:
            up.sock.rx.append(b"" if up.tcp and b and b[0] & 1 else errno.ECONNREFUSED)
            self.pump.settle()

    def time(self, b: bytes) -> None:
        self.pump.now += (b[0] if b else 1) * 0.1
        self.pump.settle()

    def tunnel(self, _b: bytes) -> None:
        self.up_state = not self.up_state
        self.f.tunnel_changed(self._state(self.up_state))
        self.pump.settle()

    # ------------------------------------------------------------ oracles
    def check(self) -> None:
        fwd, f = self.fwd, self.f
        for c in self.conns:
            whole, bad = _split(bytes(c.wrote), fwd.MAX_QUERY)
            assert c.taken == whole[:len(c.taken)], "the core got queries that are not the host's messages in order"
            if not c.sock.closed:
                assert c.taken == whole, (f"an open connection holds whole queries the core never got "
                                          f"({len(c.taken)} of {len(whole)})")
                assert not bad, "a length of 0 or past MAX_QUERY left the connection open"
            else:
                assert id(c.sock) not in self.pump.watched, "a closed connection's socket still watched"
            answers, bad_out = _split(bytes(c.sock.sent), 0xFFFF)
            rest = len(c.sock.sent) - sum(2 + len(a) for a in answers)
            assert not bad_out and rest == 0, "the bytes written to a LAN host are not whole framed answers"
            ids = Counter(q[:2] for q in c.taken)
            got = Counter(a[:2] for a in answers)
            assert all(got[i] <= ids[i] for i in got), "an answer with no query of its ID from that connection"
        for key, cl in f.clients.items():
            assert not cl.closed and not cl.sock.closed, "a closed connection kept in the table"
            assert len(cl.inbuf) <= 2 + fwd.MAX_QUERY + 4096, f"a connection's input grew to {len(cl.inbuf)}"
            assert len(cl.outbuf) <= fwd.TCP_MAX_OUT, f"a connection's queued answers grew to {len(cl.outbuf)}"
        assert len(f.clients) <= fwd.TCP_MAX_CLIENTS
        for token, up in f.upstream.items():
            assert token in f.core.pending, "an upstream socket open for no query in flight"
            assert not up.sock.closed
            assert len(up.inbuf) <= 2 + 0xFFFF + 16384, f"an upstream stream's input grew to {len(up.inbuf)}"
        if not self.up_state:
            assert not f.upstream, "upstream sockets open with the tunnel down"
        open_socks = sum(1 for s in self.socks if not s.closed)
        assert open_socks <= len(f.clients) + len(f.upstream) + len(self.listener.pending), \
            f"{open_socks} fake sockets open for {len(f.clients)} connections and {len(f.upstream)} attempts"
        for up, data in self.answers:
            if up is not None and up.tcp:
                whole, _ = _split(bytes(self.up_streams.get(id(up.sock), b"")), 0xFFFF, least=0)
                k = self.up_taken[id(up.sock)] = self.up_taken.get(id(up.sock), 0) + 1
                assert len(whole) >= k and whole[k - 1] == data, \
                    f"a TCP upstream's answer {k} is not message {k} of its stream"
        self.answers.clear()
        for up in f.upstream.values():
            if up.tcp:
                whole, _ = _split(bytes(self.up_streams.get(id(up.sock), b"")), 0xFFFF, least=0)
                assert self.up_taken.get(id(up.sock), 0) == len(whole), \
                    "a whole message of a TCP upstream's stream never reached the core"


OPS = ("open", "feed_raw", "feed_framed", "close", "toggle_read", "answer", "raw", "time", "tunnel", "fail")


def make_dns_tcp():
    from appliance.lan import dns_forwarder as fwd

    def one(data: bytes) -> None:
        real = fwd.socket
        w = _World()
        fwd.socket = _SocketModule(w)        # type: ignore[assignment]
        try:
            w.f.tunnel_changed(w._state(True))
            for step in data.split(SEP)[:64]:
                if not step:
                    continue
                op, b = OPS[step[0] % 10], step[1:]
                if op == "feed_raw":
                    w.feed(b, framed=False)
                elif op == "feed_framed":
                    w.feed(b, framed=True)
                else:
                    getattr(w, op)(b)
                w.check()
            w.f.close()
            assert all(s.closed for s in w.socks if s is not None), "a socket left open by close()"
        finally:
            fwd.socket = real
    return one


def _q(qid: int, name: bytes = b"\x07example\x03com\x00", qtype: int = 1) -> bytes:
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + name + struct.pack("!HH", qtype, 1)


def seeds() -> list[bytes]:
    def fr(m: bytes) -> bytes:
        return struct.pack("!H", len(m)) + m
    s = []
    J = SEP.join
    # a connection, one query framed by the target, its answer
    s.append(J([b"\x00\x00", b"\x02\x00" + _q(1), b"\x05\x00\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x08\x08\x08\x08"]))
    # pipelined queries in one read, split across reads, answers in turn
    pipe = b"".join(fr(_q(i)) for i in range(12))
    s.append(J([b"\x00\x01", b"\x01\x00" + pipe] + [b"\x05\x00"] * 12))
    s.append(J([b"\x00\x01", b"\x01\x00" + pipe[:7], b"\x01\x00" + pipe[7:40], b"\x01\x00" + pipe[40:]]))
    # bad lengths: 0, past MAX_QUERY, a slow one
    s.append(J([b"\x00\x00", b"\x01\x00\x00\x00"]))
    s.append(J([b"\x00\x00", b"\x01\x00\x10\x01" + b"A" * 20]))
    s.append(J([b"\x00\x02", b"\x01\x00\x00"] + [b"\x08\x30"] * 5))
    # TC from the UDP attempt: the TCP retry, its answer whole, in pieces, cut, then raw bytes
    s.append(J([b"\x00\x00", b"\x02\x00" + _q(7), b"\x05\x01", b"\x05\x00"]))
    s.append(J([b"\x00\x00", b"\x02\x00" + _q(7), b"\x05\x01", b"\x05\x43"]))
    s.append(J([b"\x00\x00", b"\x02\x00" + _q(7), b"\x05\x01", b"\x06\x01\x00\x40" + _q(7)[:30], b"\x09\x01"]))
    s.append(J([b"\x00\x00", b"\x02\x00" + _q(7), b"\x05\x01", b"\x06\x00\xff\xff" + b"x" * 100, b"\x08\x10"]))
    # a host that stops reading, a tunnel change, a reset, an upstream from the wrong address
    s.append(J([b"\x00\x03", b"\x04\x00", b"\x01\x00" + pipe, b"\x05"] + [b"\x05\x00"] * 4 + [b"\x04\x00", b"\x03\x00"]))
    s.append(J([b"\x00\x00", b"\x02\x00" + _q(9), b"\x08", b"\x08", b"\x02\x00" + _q(10), b"\x06\x01" + _q(10),
                b"\x07\x01", b"\x03\x00\x00"]))
    # many connections from one address, local names, a malformed query (FORMERR), a response
    s.append(J([b"\x00\x00"] * 5 + [b"\x02\x03" + _q(3, b"\x07printer\x00"), b"\x02\x01\x12\x34\x00",
                b"\x02\x02" + b"\x00\x05\x81\x80" + _q(5)[4:], b"\x08\x00\x02", b"\x08\xff"] * 2))
    return s
