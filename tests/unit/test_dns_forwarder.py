"""The forwarder's sockets on loopback (no root: no SO_BINDTODEVICE here; the namespace test in
tests/interop/test_lan_dns.py covers the device binding): UDP and pipelined TCP clients, a fake
upstream server, the tunnel going down, and hostile TCP clients (slowloris, idle, oversized)."""
import socket
import struct
import time

import pytest

from appliance.gateway.loop import Pump, SelectorWaiter
from appliance.gateway.observers import TunnelState
from appliance.lan import dns_forwarder as fwd
from appliance.lan import dns_wire as w
from appliance.openvpn.keymethod import PushedOptions


UPSTREAM = "127.0.0.9"      # the fake upstream: on loopback, so the one own address the tests let through


def _but_upstream(addr: str):
    """The forwarder's own-address check, except for the fake upstream's address (loopback is the
    only place an unprivileged test can put a server; the real check would rightly refuse it)."""
    return lambda a, ours: a != addr and fwd.own_address(a, ours)


class Upstream:
    """A UDP DNS server on loopback that answers what it is told to, when told to."""

    def __init__(self) -> None:
        # A UDP port whose TCP twin is free too (both share the ephemeral range: on a busy host an
        # outgoing connection may hold the TCP one), tried a bounded number of times.
        for attempt in range(20):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((UPSTREAM, 0))
            self.port = self.sock.getsockname()[1]
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                self.tcp.bind((UPSTREAM, self.port))
                break
            except OSError:
                self.sock.close()
                self.tcp.close()
                if attempt == 19:
                    raise
        self.sock.setblocking(False)
        self.got: list[tuple[bytes, tuple]] = []
        self.auto = True
        self.truncate = False           # answer UDP with TC set and nothing else
        self.oversize = 0               # > 0: answer UDP with this many A records, whatever was asked
        self.tcp.listen(4)
        self.tcp.setblocking(False)
        self.tcp_got: list[bytes] = []
        self.tcp_before = b""           # bytes the TCP answer's write starts with (a stray message)
        self.conns: list[list] = []

    def poll(self) -> None:
        try:
            conn, _ = self.tcp.accept()
            conn.setblocking(False)
            self.conns.append([conn, b""])
        except BlockingIOError:
            pass
        for entry in self.conns:
            conn, buf = entry
            try:
                buf += conn.recv(4096)
            except BlockingIOError:
                continue
            entry[1] = buf
            if len(buf) >= 2 and len(buf) >= 2 + struct.unpack_from("!H", buf)[0]:
                q = buf[2:2 + struct.unpack_from("!H", buf)[0]]
                entry[1] = b""
                self.tcp_got.append(q)
                a = self.answer_bytes(q) + b"\xc0\x0c\0\1\0\1\0\0\0\x3c\0\4\xc6\x12\x64\x02"
                a = a[:6] + b"\0\2" + a[8:]
                conn.sendall(self.tcp_before + struct.pack("!H", len(a)) + a)
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except BlockingIOError:
                return
            self.got.append((data, addr))
            if self.auto:
                self.answer(len(self.got) - 1)

    @staticmethod
    def answer_bytes(data: bytes, flags: bytes = b"\x81\x80") -> bytes:
        m = w.parse_untrusted(data)
        return (data[:2] + flags + b"\0\1\0\1\0\0\0\0" + data[12:m.question_end]
                + b"\xc0\x0c\0\1\0\1\0\0\0\x3c\0\4\xc6\x12\x64\x01")

    def answer(self, i: int) -> None:
        data, addr = self.got[i]
        if self.truncate:
            self.sock.sendto(self.answer_bytes(data, b"\x83\x80")[:w.parse_untrusted(data).question_end], addr)
        elif self.oversize:
            a = self.answer_bytes(data)
            a = a[:6] + self.oversize.to_bytes(2, "big") + a[8:] + a[-16:] * (self.oversize - 1)
            self.sock.sendto(a, addr)
        else:
            self.sock.sendto(self.answer_bytes(data), addr)


@pytest.fixture
def setup():
    pump = Pump(time.monotonic, SelectorWaiter())
    up = Upstream()
    f = fwd.DnsForwarder(["127.0.0.1"], None, port=0, bind_device=False, is_own=_but_upstream(UPSTREAM))
    f.attach(pump, lambda: None)
    pushed = PushedOptions(ifconfig=("127.0.0.1", "255.0.0.0"), dns_endpoints=[(UPSTREAM, up.port)])
    f.tunnel_changed(TunnelState(True, "x", "lo", pushed))

    def run(until, timeout=3.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pump.step(block=False)
            up.poll()
            if until():
                return True
            time.sleep(0.002)
        return False
    yield f, up, run
    f.close()
    up.sock.close()
    up.tcp.close()
    for conn, _ in up.conns:
        conn.close()


def udp_client(f):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    s.connect(("127.0.0.1", f.port))
    return s


def recv_udp(s, run):
    got = []

    def take():
        try:
            got.append(s.recv(4096))
        except BlockingIOError:
            pass
        return bool(got)
    assert run(take)
    return got[0]


def tcp_client(f):
    s = socket.create_connection(("127.0.0.1", f.port))
    s.setblocking(False)
    return s


def recv_tcp(s, run, n=1):
    buf = bytearray()
    msgs = []

    def take():
        try:
            d = s.recv(4096)
            if not d:
                msgs.append(None)
            buf.extend(d)
        except BlockingIOError:
            pass
        while len(buf) >= 2 and len(buf) >= 2 + struct.unpack_from("!H", buf)[0]:
            ln = struct.unpack_from("!H", buf)[0]
            msgs.append(bytes(buf[2:2 + ln]))
            del buf[:2 + ln]
        return len(msgs) >= n
    run(take)
    return msgs


def test_udp_query_forwarded_and_answered(setup):
    f, up, run = setup
    c = udp_client(f)
    c.send(w.encode_query(0x4242, "secret.vpn.test"))
    r = recv_udp(c, run)
    assert r[:2] == b"\x42\x42" and w.rcode(r) == 0 and r.endswith(b"\xc6\x12\x64\x01")
    assert len(up.got) == 1 and w.parse_untrusted(up.got[0][0]).question.name == b"\x06secret\x03vpn\x04test\x00"
    assert f.stats()["answered"] == 1 and not f.upstream      # the upstream socket is closed


def test_tcp_pipelined_answers_in_the_order_they_come(setup):
    f, up, run = setup
    up.auto = False
    c = tcp_client(f)
    q1, q2 = w.encode_query(1, "one.test"), w.encode_query(2, "two.test")
    c.sendall(struct.pack("!H", len(q1)) + q1 + struct.pack("!H", len(q2)) + q2)
    assert run(lambda: len(up.got) == 2)
    up.answer(1)
    up.answer(0)
    msgs = recv_tcp(c, run, 2)
    assert [m[:2] for m in msgs] == [b"\0\2", b"\0\1"]
    assert len({a[1][1] for a in up.got}) == 2          # a fresh source port per query


def test_tunnel_down_servfail_for_new_and_outstanding_queries(setup):
    f, up, run = setup
    up.auto = False
    c = udp_client(f)
    c.send(w.encode_query(5, "slow.test"))
    assert run(lambda: len(up.got) == 1)
    f.tunnel_changed(TunnelState(False))
    assert w.rcode(recv_udp(c, run)) == w.SERVFAIL
    t0 = time.monotonic()
    c.send(w.encode_query(6, "any.test"))
    r = recv_udp(c, run)
    assert w.rcode(r) == w.SERVFAIL and time.monotonic() - t0 < 0.5 and len(up.got) == 1


def test_slowloris_and_idle_connections_do_not_lock_others_out(setup, monkeypatch):
    f, up, run = setup
    monkeypatch.setattr(fwd, "TCP_MAX_CLIENTS", 3)
    monkeypatch.setattr(fwd, "TCP_IDLE", 0.4)
    slow = [tcp_client(f) for _ in range(3)]
    for s in slow:
        s.send(b"\0")                                   # half a length prefix, then nothing
    run(lambda: len(f.clients) == 3, 1)
    c = tcp_client(f)
    q = w.encode_query(9, "ok.test")
    c.sendall(struct.pack("!H", len(q)) + q)
    assert recv_tcp(c, run)[0][:2] == b"\0\x09"
    assert f.stats()["TCP connection closed to make room"] >= 1 and len(f.clients) <= 3
    # a trickle of bytes does not keep a connection: the idle clock runs from the last whole query
    t = tcp_client(f)
    end = time.monotonic() + 2
    closed = False
    while time.monotonic() < end and not closed:
        try:
            t.send(b"\x01")
        except OSError:
            closed = True
        run(lambda: False, 0.1)
    assert closed and f.stats()["TCP connection idle"] >= 1


def _tcp_query_waiting_upstream(f, up, run):
    """A LAN client's TCP connection whose query went upstream and waits there (no answer yet)."""
    up.auto = False
    c = tcp_client(f)
    q = w.encode_query(7, "slow.test")
    c.sendall(struct.pack("!H", len(q)) + q)
    assert run(lambda: len(up.got) == 1)
    return c


def _flood_made_room_and_the_waiting_query_got_its_answer(f, up, run, c, flood) -> None:
    assert f.stats()["TCP connection closed to make room"] >= 3 and len(f.clients) <= 3
    up.answer(0)
    msgs = recv_tcp(c, run)
    assert msgs and msgs[0] is not None and msgs[0][:2] == b"\0\x07", msgs
    for s in flood:
        s.close()
    c.close()


def test_a_connection_flood_does_not_close_a_connection_waiting_for_its_answer(setup, monkeypatch):
    """A LAN host opening connections as fast as it can (and sending nothing) evicts its own idle
    connections, not one whose query is still upstream: that one gets its answer."""
    f, up, run = setup
    monkeypatch.setattr(fwd, "TCP_MAX_CLIENTS", 3)
    c = _tcp_query_waiting_upstream(f, up, run)
    flood = []
    for _ in range(6):
        flood.append(tcp_client(f))
        run(lambda: False, 0.05)
    _flood_made_room_and_the_waiting_query_got_its_answer(f, up, run, c, flood)


def test_oversized_tcp_length_closes_only_that_connection(setup):
    f, up, run = setup
    bad = tcp_client(f)
    bad.sendall(b"\xff\xff" + b"x" * 100)
    assert recv_tcp(bad, run) == [None]
    assert f.stats()["TCP query too large or empty"] == 1
    c = udp_client(f)
    c.send(w.encode_query(3, "still.test"))
    assert w.rcode(recv_udp(c, run)) == 0


def test_a_bad_length_after_a_whole_batch_closes_the_connection_without_more_input(setup):
    """fuzz48 (tests/fuzz `dns-tcp`): a length past MAX_QUERY right after TCP_BATCH whole queries,
    all in one write, stayed in the buffer -- the connection open, holding one of the 64 slots --
    until the host wrote again or went idle for 10 s. Now it is closed at the next wake-up, as
    the same length without the batch before it, and the batch is answered first."""
    f, up, run = setup
    frames = b"".join(struct.pack("!H", len(q)) + q for q in (w.encode_query(i, "batch.test") for i in range(8)))
    bad = tcp_client(f)
    bad.sendall(frames + b"\x10\x01" + b"x" * 8)
    got = recv_tcp(bad, run, n=9)
    assert got[-1] is None and len(got) == 9, got[-1:]          # 8 answers, then the close
    assert sorted(struct.unpack_from("!H", a)[0] for a in got[:-1]) == list(range(8))
    assert f.stats()["TCP query too large or empty"] == 1
    bad.close()


def test_a_tcp_upstreams_stray_message_before_the_answer_keeps_the_answer(setup):
    """fuzz48's upstream framing fix on real sockets (review48d): a TCP upstream writes a message
    of another ID, then the real answer, in one write. The stray one was dropped with the whole
    read, and the answer with it; now it is counted and the answer reaches the LAN host whole."""
    f, up, run = setup
    up.truncate = True                  # the TCP client's query is retried over TCP
    stray = Upstream.answer_bytes(w.encode_query(0x0BAD, "big.test"))
    up.tcp_before = struct.pack("!H", len(stray)) + stray + b"\0\0"       # and an empty message
    t = tcp_client(f)
    q = w.encode_query(2, "big.test")
    t.sendall(struct.pack("!H", len(q)) + q)
    (a,) = recv_tcp(t, run)
    assert a[:2] == b"\0\2" and not w.parse_untrusted(a).truncated and a[6:8] == b"\0\2"
    assert f.stats()["mismatched answer"] == 1 and f.stats()["malformed answer"] == 1
    assert run(lambda: not f.upstream)          # the attempt's socket closed with its answer


def test_the_same_query_id_from_three_lan_clients_each_gets_its_own_answer(setup):
    """Query IDs are the LAN host's, and hosts pick the same ones: two TCP connections and a UDP
    client all asking with ID 7, answered upstream in the reverse order, each get the answer to
    their own question with their ID (review48d: no mixing across connections or transports)."""
    f, up, run = setup
    up.auto = False
    names = ["one.test", "two.test", "three.test"]
    t1, t2, u = tcp_client(f), tcp_client(f), udp_client(f)
    for s, name in ((t1, names[0]), (t2, names[1])):
        q = w.encode_query(7, name)
        s.sendall(struct.pack("!H", len(q)) + q)
    u.send(w.encode_query(7, names[2]))
    assert run(lambda: len(up.got) == 3)
    for i in (2, 1, 0):
        up.answer(i)
    got = [recv_tcp(t1, run)[0], recv_tcp(t2, run)[0], recv_udp(u, run)]
    for a, name in zip(got, names):
        m = w.parse_untrusted(a)
        assert m.id == 7 and m.question == w.parse_untrusted(w.encode_query(7, name)).question
    assert f.stats()["answered"] == 3


@pytest.mark.parametrize("room, closed", [(2, False), (1, True)])
def test_queued_answers_are_bounded_with_their_length_prefixes(setup, monkeypatch, room, closed):
    """TCP_MAX_OUT bounds a connection's queued answers as queued, each with its 2-byte length
    (review48d: the check left the new frame's prefix out). An answer whose frame just fits is
    sent; one byte less of room and the connection is closed, counted, as a host not reading."""
    f, up, run = setup
    q = w.encode_query(9, "fits.test")
    monkeypatch.setattr(fwd, "TCP_MAX_OUT", len(Upstream.answer_bytes(q)) + room)
    t = tcp_client(f)
    t.sendall(struct.pack("!H", len(q)) + q)
    got = recv_tcp(t, run)
    if closed:
        assert got == [None] and f.stats()["TCP client not reading its answers"] == 1
    else:
        assert got[0][:2] == b"\0\x09" and "TCP client not reading its answers" not in f.stats()


def test_malformed_udp_queries_formerr_or_dropped_never_raise(setup):
    f, up, run = setup
    c = udp_client(f)
    c.send(b"\x07\x07\1\0\0\1\0\0\0\0\0\0\xc0\x0c\0\1\0\1")
    r = recv_udp(c, run)
    assert r[:2] == b"\x07\x07" and w.rcode(r) == w.FORMERR
    c.send(b"\1")
    run(lambda: f.stats().get("malformed query") == 2, 1)
    assert f.stats()["malformed query"] == 2 and "internal error" not in f.pump.faults.counts


def test_truncated_answer_passed_to_udp_clients_retried_over_tcp_for_tcp_clients(setup):
    f, up, run = setup
    up.truncate = True
    c = udp_client(f)
    c.send(w.encode_query(1, "big.test"))
    r = recv_udp(c, run)
    assert w.parse_untrusted(r).truncated and up.tcp_got == []
    t = tcp_client(f)
    q = w.encode_query(2, "big.test")
    t.sendall(struct.pack("!H", len(q)) + q)
    (a,) = recv_tcp(t, run)
    assert a[:2] == b"\0\2" and not w.parse_untrusted(a).truncated and a[6:8] == b"\0\2"   # both records
    assert len(up.tcp_got) == 1 and up.tcp_got[0][2:] == q[2:]
    assert f.stats()["truncated answer retried over TCP"] == 1


def test_oversize_udp_answer_reaches_the_udp_client_truncated_and_tcp_gets_it_whole(setup):
    """An upstream that ignores the client's size (100 A records, 1.6 KB, to a query without
    EDNS): the UDP client gets header + question with TC (it would retry over TCP). A client that
    advertised EDNS 4096 gets TC too: over UDP we answer at most 1232 bytes (a forged LAN source
    must not draw ~60x its query); 60 records (~1 KB) reach it as they came; over TCP everything
    passes."""
    f, up, run = setup
    up.oversize = 100
    c = udp_client(f)
    q = w.encode_query(0x5151, "big.test")
    c.send(q)
    r = recv_udp(c, run)
    m = w.parse_untrusted(r)
    assert m.id == 0x5151 and m.truncated and r == r[:4] + b"\0\1\0\0\0\0\0\0" + q[12:m.question_end]
    assert len(up.got[0][0]) == len(q)                    # the query went upstream as it came
    e = w.encode_query(0x5252, "big.test")
    e = e[:10] + b"\0\1" + e[12:] + b"\0\0\x29\x10\0\0\0\0\0\0\0"       # EDNS, UDP size 4096
    c.send(e)
    r = recv_udp(c, run)
    assert r[:2] == b"\x52\x52" and w.parse_untrusted(r).truncated and len(r) < 100
    up.oversize = 60
    e = b"\x53\x53" + e[2:]
    c.send(e)
    r = recv_udp(c, run)
    assert r[:2] == b"\x53\x53" and not w.parse_untrusted(r).truncated and struct.unpack_from("!H", r, 6)[0] == 60
    assert 900 < len(r) <= 1232
    assert f.stats()["answer over the UDP client's size sent truncated"] == 2 and f.stats()["answered"] == 1


def test_ipv6_listener_and_ipv6_upstream():
    """The same over IPv6 (a LAN `address6`, a pushed DNS6 server), on ::1."""
    pump = Pump(time.monotonic, SelectorWaiter())
    srv = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    srv.bind(("::1", 0))
    srv.setblocking(False)
    f = fwd.DnsForwarder(["::1"], None, port=0, bind_device=False, is_own=_but_upstream("::1"))
    f.attach(pump, lambda: None)
    pushed = PushedOptions(ifconfig=("127.0.0.1", "255.0.0.0"), ifconfig_ipv6=("::1/128", ""),
                           dns_endpoints=[("::1", srv.getsockname()[1])])
    f.tunnel_changed(TunnelState(True, "x", "lo", pushed))
    c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    c.setblocking(False)
    try:
        c.sendto(w.encode_query(0x66, "six.test", 28), ("::1", f.port))
        got = []
        end = time.monotonic() + 3
        while time.monotonic() < end and not got:
            pump.step(block=False)
            try:
                data, addr = srv.recvfrom(4096)
                srv.sendto(Upstream.answer_bytes(data), addr)
            except BlockingIOError:
                pass
            try:
                got.append(c.recv(4096))
            except BlockingIOError:
                time.sleep(0.002)
        assert got and got[0][:2] == b"\0\x66" and w.rcode(got[0]) == 0
    finally:
        f.close()
        srv.close()
        c.close()


def test_a_flood_of_connections_with_queries_from_one_host_does_not_close_another_hosts(setup, monkeypatch):
    """The flood's connections each send a query for a name whose servers do not answer, so none
    of them is idle either: the host holding the most connections gives one of its own up, and
    the other host's connection, waiting longest, still gets its answer (it was closed: the
    longest idle of all, once every connection had a query in flight)."""
    f, up, run = setup
    monkeypatch.setattr(fwd, "TCP_MAX_CLIENTS", 3)
    c = _tcp_query_waiting_upstream(f, up, run)
    flood = []
    for i in range(6):
        s = socket.create_connection(("127.0.0.1", f.port), source_address=("127.0.0.2", 0))
        s.setblocking(False)
        fq = w.encode_query(100 + i, f"slow{i}.attacker.test")
        s.sendall(struct.pack("!H", len(fq)) + fq)
        flood.append(s)
        n = len(up.got)
        run(lambda n=n: len(up.got) > n, 0.5)
    _flood_made_room_and_the_waiting_query_got_its_answer(f, up, run, c, flood)


def test_pushed_dns_at_an_address_of_this_host_is_not_used():
    """A hostile server pushing our own tunnel (or LAN, loopback...) address as DNS: the kernel
    delivers locally even from a socket bound to the TUN, so the LAN's queries went to whatever
    listened on this host at that port. They are answered SERVFAIL, nothing reaches the local
    listener, and the server pushed is named in the log."""
    pump = Pump(time.monotonic, SelectorWaiter())
    local = Upstream()              # what listens on this host (127.0.0.9 is ours: loopback)
    f = fwd.DnsForwarder(["127.0.0.1"], None, port=0, bind_device=False)
    f.attach(pump, lambda: None)
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.setblocking(False)
    try:
        pushed = PushedOptions(ifconfig=(UPSTREAM, "255.0.0.0"), dns_endpoints=[(UPSTREAM, local.port)])
        f.tunnel_changed(TunnelState(True, "x", "lo", pushed))
        c.sendto(w.encode_query(0x77, "own.test", 1), ("127.0.0.1", f.port))
        got = []
        end = time.monotonic() + 3
        while time.monotonic() < end and not got:
            pump.step(block=False)
            local.poll()
            try:
                got.append(c.recv(4096))
            except BlockingIOError:
                time.sleep(0.002)
        assert got and got[0][:2] == b"\0\x77" and w.rcode(got[0]) == 2       # SERVFAIL
        assert local.got == []
    finally:
        f.close()
        local.sock.close()
        local.tcp.close()
        c.close()


@pytest.mark.parametrize("addr, own", [
    ("198.18.7.1", True), ("198.18.9.1", True),           # tunnel, LAN
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("0.0.0.0", True), ("::", True),
    ("::ffff:127.0.0.1", True), ("::ffff:198.18.7.1", True),
    ("198.18.8.1", False), ("2001:db8::53", False)])
def test_own_address(addr, own):
    assert fwd.own_address(addr, ["198.18.7.1", "198.18.9.1"]) is own


@pytest.mark.root
@pytest.mark.netns
def test_own_address_knows_the_wan_address_from_the_kernel():
    """An address the forwarder is not told about (the WAN's, another NIC's) is found by the
    kernel's route to it, in a namespace holding it (IPv4 and IPv6)."""
    import sys
    import uuid
    from lab.netns import Netns, wait_local_addresses
    ns = Netns(f"uo{uuid.uuid4().hex[:10]}")
    try:
        ns.run("ip link add wan0 type veth peer name wan1 && ip link set wan0 up && ip link set wan1 up && ip addr add 198.18.20.2/24 dev wan0"
               " && ip addr add 2001:db8:20::2/64 dev wan0 nodad")
        wait_local_addresses(ns.name, ("198.18.20.2", "2001:db8:20::2"))   # the route own_address asks for
        code = ("from appliance.lan.dns_forwarder import own_address as o; "
                "print([o(a, []) for a in ('198.18.20.2', '2001:db8:20::2', '198.18.20.3', '2001:db8:20::3')])")
        r = ns.run(f"{sys.executable} -c \"{code}\"")
        assert r.stdout.strip() == "[True, True, False, False]"
        # Where any address binds (ip_nonlocal_bind, as on keepalived hosts), the answers stay.
        ns.run("sysctl -qw net.ipv4.ip_nonlocal_bind=1 net.ipv6.ip_nonlocal_bind=1")
        r = ns.run(f"{sys.executable} -c \"{code}\"")
        assert r.stdout.strip() == "[True, True, False, False]"
    finally:
        ns.delete()


@pytest.mark.parametrize("addr, why", [
    ("198.18.7.1", "an address of this host"), ("0.0.0.0", "an address of this host"),
    ("224.0.0.251", "a multicast address"), ("ff02::fb", "a multicast address"),
    ("::ffff:239.1.2.3", "a multicast address"), ("255.255.255.255", "a broadcast address"),
    ("198.18.9.255", "a broadcast address"), ("198.18.8.53", None), ("2001:db8::53", None)])
def test_what_is_not_a_dns_server_through_the_tunnel(addr, why):
    """One rule for the forwarder and DHCP (appliance/lan/pushed_dns.py)."""
    from appliance.lan.pushed_dns import not_through_the_tunnel
    assert not_through_the_tunnel(addr, ["198.18.7.1", "198.18.9.1"], ["198.18.9.255"]) == why


def test_a_push_of_a_thousand_dns_servers_writes_a_few_short_lines(caplog):
    """A hostile server pushing ~1000 DNS servers (multicast ones, IPv6 ones with no IPv6 tunnel
    address, usable ones): each refused one was a warning and the others were named in one line,
    ~1000 lines and ~40 KB at every push. Now the first few of each and their count."""
    pump = Pump(time.monotonic, SelectorWaiter())
    f = fwd.DnsForwarder(["127.0.0.1"], None, port=0, bind_device=False, is_own=lambda _a, _o: False)
    f.attach(pump, lambda: None)
    try:
        eps = [(f"239.1.{i // 250}.{i % 250}", 53) for i in range(400)] + \
              [(f"fd00::{i:x}", 53) for i in range(300)] + [(f"198.19.{i // 250}.{i % 250}", 53) for i in range(300)]
        with caplog.at_level("INFO", logger="vpn-appliance"):
            f.tunnel_changed(TunnelState(True, "x", "lo", PushedOptions(ifconfig=("127.0.0.1", "255.0.0.0"),
                                                                       dns_endpoints=eps)))
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) <= 12 and max(map(len, lines)) < 400, (len(lines), max(map(len, lines)))
        assert "392 more pushed DNS servers not used" in caplog.text and "(300 servers in all)" in caplog.text
    finally:
        f.close()


def test_sigusr2_logs_the_counters_at_once(caplog):
    """log_counters (the client's SIGUSR2): the forwarder's counters now, in the periodic line's
    words (which come at most every LOG_EVERY s), changed or not; the periodic line then waits
    for the next change."""
    pump = Pump(time.monotonic, SelectorWaiter())
    f = fwd.DnsForwarder(["127.0.0.1"], None, port=0, bind_device=False, is_own=lambda _a, _o: False)
    f.attach(pump, lambda: None)
    try:
        with caplog.at_level("INFO", logger="vpn-appliance"):
            f.log_counters()
            f.core.count("dropped: over one LAN address's query rate")
            f.core.count("dropped: over one LAN address's query rate")
            f.log_counters()
            f._log_counts()
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("DNS forwarder:")]
        assert lines == ["DNS forwarder: nothing counted",
                         "DNS forwarder: dropped: over one LAN address's query rate=2"], lines
    finally:
        f.close()


def test_a_host_pipelining_queries_over_its_rate_on_tcp_is_bounded_per_wake_up_and_closed(setup):
    """One LAN host's connections sending queries as fast as they can: each wake-up takes at most
    TCP_BATCH queries from a connection (a 4 KB read held ~200; 16 such connections held the pump
    for up to 0.2 s a wake-up), and a connection whose address goes over its rate is closed
    (answering each pipelined query REFUSED was the flood's cost); another host is still answered."""
    f, up, run = setup
    q = w.encode_query(7, "a.test")
    frame = struct.pack("!H", len(q)) + q
    flood = []
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", f.port), source_address=("127.0.0.2", 0))
        s.sendall(frame * 120)                      # 480 queries: over the address's burst of 200
        flood.append(s)
    per_step, taken = [], []
    real = f.core.query
    f.core.query = lambda *a, **k: taken.append(1) or real(*a, **k)
    step = f.pump.step
    end = time.monotonic() + 3.0
    while time.monotonic() < end and f.core.counts.get("TCP connection closed: over one LAN address's query rate", 0) < 4:
        taken.clear()
        step(block=False)
        up.poll()
        per_step.append(len(taken))
        time.sleep(0.001)
    assert max(per_step) <= 2 * 4 * 8              # TCP_BATCH per connection; its handler may run twice a step
    assert f.core.counts["TCP connection closed: over one LAN address's query rate"] == 4
    for s in flood:
        s.settimeout(2.0)
        while s.recv(65536):                        # the server closed it (EOF or reset)
            pass
        s.close()
    c = tcp_client(f)
    c.sendall(frame)
    (r,) = recv_tcp(c, run)
    assert r is not None and w.rcode(r) == 0
    c.close()


def test_any_port_is_one_free_for_udp_and_tcp_alike(monkeypatch):
    """Port 0 (tests): the kernel picks the UDP port, and its TCP twin may be another socket's
    (they share the ephemeral range). That failed the start with "address already in use" on a
    busy machine; another port is tried now, and both listeners end on the same one."""
    import errno

    real = fwd.socket.socket
    refused = []

    class TakenOnce(real):
        def bind(self, address):
            if self.type == socket.SOCK_STREAM and not refused:
                refused.append(address[1])
                raise OSError(errno.EADDRINUSE, "Address already in use")
            return super().bind(address)

    monkeypatch.setattr(fwd.socket, "socket", TakenOnce)
    pump = Pump(time.monotonic, SelectorWaiter())
    f = fwd.DnsForwarder(["127.0.0.1"], None, port=0, bind_device=False)
    try:
        f.attach(pump, lambda: None)
        assert len(refused) == 1
        assert f.udp[0].getsockname()[1] == f.tcp_listeners[0].getsockname()[1] == f.port != 0
    finally:
        f.close()


def test_route_delay_serves_from_tunnel_up_and_the_routes_keep_queries_in_flight(setup):
    """route-delay (gateway/observers.py routes_wait): the pushed DNS is used from tunnel-up, as
    2.6's up script sets it; the routes going in N s later (CONNECTED, the same push) neither
    drops a query in flight nor asks again."""
    f, up, run = setup
    pushed = PushedOptions(ifconfig=("127.0.0.1", "255.0.0.0"), dns_endpoints=[(UPSTREAM, up.port)])
    f.tunnel_changed(TunnelState(False))
    f.tunnel_changed(TunnelState(False, "x", "lo", pushed, routes_wait=True))
    up.auto = False
    c = udp_client(f)
    c.send(w.encode_query(7, "early.test"))
    assert run(lambda: len(up.got) == 1), "not forwarded while the routes wait"
    f.tunnel_changed(TunnelState(True, "x", "lo", pushed))
    up.answer(0)
    r = recv_udp(c, run)
    assert r[:2] == b"\0\7" and w.rcode(r) == w.NOERROR and len(up.got) == 1
    f.tunnel_changed(TunnelState(False))
    c.send(w.encode_query(8, "late.test"))
    assert w.rcode(recv_udp(c, run)) == w.SERVFAIL and len(up.got) == 1
    c.close()


def test_an_answer_giving_one_of_this_hosts_addresses_reaches_the_lan_host_without_records(setup, caplog):
    """DNS rebinding (dns_rebind.py) through the real shell: the host's addresses are read at the
    tunnel change, the fake upstream's answer (198.18.100.1) is one of them, and the LAN client
    gets NOERROR with no records; a warning names the name and the address."""
    f, up, run = setup
    f.host_addresses = lambda: ["198.18.100.1"]
    f._seen = None
    pushed = PushedOptions(ifconfig=("127.0.0.1", "255.0.0.0"), dns_endpoints=[(UPSTREAM, up.port)])
    f.tunnel_changed(TunnelState(True, "x", "lo", pushed))
    s = udp_client(f)
    with caplog.at_level("WARNING", logger="vpn-appliance"):
        s.send(w.encode_query(0x4242, "rebind.example", 1))
        a = recv_udp(s, run)
    assert a[:2] == b"\x42\x42" and w.rcode(a) == w.NOERROR and struct.unpack_from("!HHH", a, 6) == (0, 0, 0)
    assert any("rebind.example" in r.message and "198.18.100.1" in r.message for r in caplog.records)
    s.close()
    # off: the same answer passes
    off = fwd.DnsForwarder(["127.0.0.1"], None, port=0, bind_device=False, rebind_protection=False)
    assert off.core.rebind is None


def test_this_hosts_addresses_are_read_again_while_the_tunnel_stays_up():
    """The rebinding check knew this host's addresses as of the last tunnel change: a WAN address
    added later (a DHCP lease on a second address, SLAAC after the 10 s wait, an admin's) was
    not one of 'ours', and an answer giving it reached the LAN. They are read again every
    OWN_REREAD seconds now (one netlink dump)."""
    import ipaddress
    now = [1000.0]
    pump = Pump(lambda: now[0], SelectorWaiter())
    addrs = ["198.18.100.1"]
    reads = []
    f = fwd.DnsForwarder(["127.0.0.1"], None, port=0, bind_device=False, is_own=_but_upstream(UPSTREAM),
                         host_addresses=lambda: reads.append(1) or list(addrs))
    f.attach(pump, lambda: None)
    try:
        pushed = PushedOptions(ifconfig=("127.0.0.1", "255.0.0.0"), dns_endpoints=[(UPSTREAM, 53)])
        f.tunnel_changed(TunnelState(True, "x", "lo", pushed))
        new = ipaddress.ip_address("198.18.200.7").packed
        assert f.core.rebind.protected(ipaddress.ip_address("198.18.100.1").packed)
        assert not f.core.rebind.protected(new)
        addrs.append("198.18.200.7")               # the WAN's new address; no tunnel change
        n = len(reads)
        now[0] += fwd.OWN_REREAD + 0.1
        pump.step(block=False)
        assert len(reads) == n + 1 and f.core.rebind.protected(new)
        now[0] += fwd.OWN_REREAD + 0.1            # and on: not once only
        addrs.remove("198.18.100.1")
        pump.step(block=False)
        assert not f.core.rebind.protected(ipaddress.ip_address("198.18.100.1").packed)
    finally:
        f.close()


def test_an_interrupted_reading_of_this_hosts_addresses_keeps_the_last_one(monkeypatch):
    """review48b: a dump the kernel kept marking NLM_F_DUMP_INTR (DumpInterrupted) read as 'no
    addresses', and until the next reading (OWN_REREAD) an answer giving this host's own WAN
    address reached the LAN. Now such a reading is 'not known now' and the last one stays."""
    import ipaddress

    from appliance.tun import rtnl

    class _Churning:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def addrs(self, family=0, index=None):
            raise rtnl.DumpInterrupted("address")

    monkeypatch.setattr(rtnl, "Rtnl", _Churning)
    assert fwd._host_addresses() is None
    now = [1000.0]
    pump = Pump(lambda: now[0], SelectorWaiter())
    reads = [["198.18.100.1"]]
    f = fwd.DnsForwarder(["127.0.0.1"], None, port=0, bind_device=False, is_own=_but_upstream(UPSTREAM),
                         host_addresses=lambda: reads.pop(0) if reads else fwd._host_addresses())
    f.attach(pump, lambda: None)
    try:
        pushed = PushedOptions(ifconfig=("127.0.0.1", "255.0.0.0"), dns_endpoints=[(UPSTREAM, 53)])
        f.tunnel_changed(TunnelState(True, "x", "lo", pushed))
        wan = ipaddress.ip_address("198.18.100.1").packed
        assert f.core.rebind.protected(wan)
        now[0] += fwd.OWN_REREAD + 0.1
        pump.step(block=False)
        assert not reads and f.core.rebind.protected(wan)
    finally:
        f.close()
