"""Adversarial review of the pump core (gateway/, transport/, tun/device.py): each test is one way
a peer or the local environment could make the gateway misbehave (each failed before its fix).

Attackers, as in the review brief: no keys; the tls-auth/tls-crypt key (shared in every profile);
an authenticated client; a malicious server; a hostile local environment."""
from __future__ import annotations

import errno
import signal
import socket
import threading

import pytest

from appliance.gateway import server as server_mod
from appliance.gateway.auth import AuthChecker
from appliance.gateway.loop import Signals
from appliance.openvpn import server as engine_server
from appliance.openvpn.datachannel import DataKey
from appliance.transport.udp import UdpTransport
from lab.fakes import stream_connect
from tests.gateway.conftest import SERVER_IP, World, client_conf, ipv4_udp, server_conf
from tests.gateway.test_faults import hard_reset, served, two_clients_served
from tests.gateway.test_tunnel import _up


def framed(p: bytes) -> bytes:
    return len(p).to_bytes(2, "big") + p


def _accept(w: World, s) -> int:
    """Step the server until it accepted `s`; -> the connection id."""
    for _ in range(5):
        w.server.pump.step(block=False)
        for cid, link in w.server.conns.items():
            if link.t.sock is s.peer:
                return cid
    raise AssertionError("not accepted")


# ------------------------------------------------------------------ starvation / loop blocking
def test_one_tcp_connection_gets_a_bounded_share_of_a_wake_up(pki):
    """No keys needed: 3-byte frames (a 1-byte packet each) cost one dispatcher call each, 87k per
    recv, all inside one handler call while every other client, timer and signal waits."""
    w = World()
    w.add_server(server_conf(pki, "tcp-server"))
    s = stream_connect(w.net, "198.18.0.77", (SERVER_IP, 1194))
    _accept(w, s)
    calls = []
    real = w.server.d.receive

    def receive(packet, addr, now):
        calls.append(addr)
        return real(packet, addr, now)
    w.server.d.receive = receive
    s.send(framed(b"\x00") * 80_000)
    w.server.pump.step(block=False)
    assert len(calls) <= 4 * server_mod.BATCH, f"{len(calls)} packets of one connection in one wake-up"


def test_hard_resets_on_one_tcp_connection_cannot_stall_the_loop(pki, monkeypatch):
    w = World()
    w.add_server(server_conf(pki, "tcp-server", protection="none"))
    s = stream_connect(w.net, "198.18.0.77", (SERVER_IP, 1194))
    _accept(w, s)
    made = []
    real = engine_server.Session

    def counting(*a, **k):
        made.append(1)
        return real(*a, **k)
    monkeypatch.setattr(engine_server, "Session", counting)
    blob = b"".join(framed(hard_reset(k.to_bytes(8, "big"))) for k in range(1, 16_000))
    s.send(blob[:262_144])
    w.server.pump.step(block=False)
    assert len(made) <= 8, f"{len(made)} sessions built for one connection in one wake-up"


# ------------------------------------------------------------------ identities and stale records
def test_a_second_hard_reset_on_a_tcp_connection_leaves_no_record_without_a_connection(pki):
    w = World()
    w.add_server(server_conf(pki, "tcp-server", protection="none"))
    s = stream_connect(w.net, "198.18.0.77", (SERVER_IP, 1194))
    _accept(w, s)
    s.send(framed(hard_reset(b"\x01" * 8)))
    w.server.pump.step(block=False)
    s.send(framed(hard_reset(b"\x02" * 8)))
    w.server.pump.step(block=False)
    w.server.pump.step(block=False)
    orphans = [a for a in w.server.d.by_addr if isinstance(a, int) and a not in w.server.conns]
    assert not orphans, f"records for closed connections {orphans} (half-open slots held)"


# ------------------------------------------------------------------ resource exhaustion
def test_one_address_cannot_take_every_tcp_slot(pki):
    w = World()
    w.add_server(server_conf(pki, "tcp-server", extra="max-clients 2"))
    idle = []
    for _ in range(w.server.max_conns):
        idle.append(stream_connect(w.net, "198.18.0.66", (SERVER_IP, 1194)))
        w.server.pump.step(block=False)
    assert len(w.server.conns) <= server_mod.PER_SOURCE_CONNS, "one address holds more than its share"
    w.add_client(client_conf(pki, proto="tcp-client"))
    assert w.run(lambda: _up(w), max_time=30), "a real client could not connect while one address held every slot"


def test_many_addresses_filling_every_tcp_slot_do_not_lock_clients_out(pki):
    """Idle connections from many addresses fill the server: the oldest one without a handshake
    makes room for a newcomer, so a real client still gets in."""
    w = World()
    w.add_server(server_conf(pki, "tcp-server", extra="max-clients 2"))
    idle = []
    for i in range(w.server.max_conns + 5):
        idle.append(stream_connect(w.net, f"198.18.{1 + i // 200}.{1 + i % 200}", (SERVER_IP, 1194)))
        w.server.pump.step(block=False)
    assert len(w.server.conns) == w.server.max_conns
    w.add_client(client_conf(pki, proto="tcp-client"))
    assert w.run(lambda: _up(w), max_time=30), "a real client could not connect while idle connections held every slot"
    assert w.server.faults.counts.get("TCP connection without handshake evicted (server full)", 0) >= 1


def test_a_few_addresses_cannot_fill_the_password_queue_for_everyone():
    gate = threading.Event()
    a = AuthChecker(lambda u, p, cn: gate.wait(10) and False, clock=lambda: 0.0)
    try:
        queued = sum(a.submit((i, k), f"2001:db8::{i + 1:x}", "u", "p", None) is None
                     for i in range(16) for k in range(2))
        assert queued <= 2, f"one /64 queued {queued} checks"
        why = a.submit("victim", "198.51.100.7", "alice", "right", None)
        assert why is None, why
    finally:
        gate.set()
        a.close()


def test_timer_heap_stays_proportional_to_live_timers_under_traffic(pki):
    w = World()
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki))
    served(w)
    c = w.clients[0]
    for i in range(2000):
        c.net.tun.inject(ipv4_udp(w.client_addr(), "198.19.0.1", b"%d" % i))
        w.server_net.tun.inject(ipv4_udp("198.19.0.1", w.client_addr(), b"%d" % i))
        w.server.pump.step(block=False)
        c.pump.step(block=False)
        c.pump.timers.next_deadline()          # as a blocking wait does
        w.clock.advance(0.001)
    t = c.pump.timers
    assert len(t._heap) <= 4 * len(t) + 64, f"{len(t._heap)} heap entries for {len(t)} live timers"


def test_connection_churn_leaves_no_stale_timer_entries(pki):
    w = World()
    w.add_server(server_conf(pki, "tcp-server"))
    for _ in range(3000):
        s = stream_connect(w.net, "198.18.0.66", (SERVER_IP, 1194))
        w.server.pump.step(block=False)
        s.abort()
        w.server.pump.step(block=False)
    t = w.server.pump.timers
    t.next_deadline()
    assert not w.server.conns
    assert len(t._heap) <= 4 * len(t) + 64, f"{len(t._heap)} heap entries for {len(t)} live timers"


# ------------------------------------------------------------------ hostile local environment
class _RefusingSock:
    """A UDP socket whose every receive reports an ICMP error (ECONNREFUSED), as a stream of
    spoofed port-unreachables towards the client's connected socket does."""

    def __init__(self, errors: int) -> None:
        self.errors = errors
        self.calls = 0

    def setsockopt(self, *a):
        if a[0] == 17:
            raise OSError(errno.ENOPROTOOPT, "no GRO")

    def setblocking(self, flag):
        pass

    def recvfrom_into(self, view):
        self.calls += 1
        if self.errors:
            self.errors -= 1
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        raise BlockingIOError(errno.EAGAIN, "EAGAIN")


def test_udp_receive_errors_do_not_extend_a_batch_without_bound():
    sock = _RefusingSock(100_000)
    t = UdpTransport(None, None, sock=sock)
    t.recv_batch(64)
    assert sock.calls <= 2 * 64, f"{sock.calls} receive calls for one batch of 64"


def test_tun_empty_reads_do_not_extend_a_batch_without_bound():
    from appliance.tun.device import TunDevice
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        a.setblocking(False)           # a short queue (net.unix.max_dgram_qlen) must not block the test
        b.setblocking(False)
        n = 0
        try:
            for _ in range(150):
                a.send(b"")
                n += 1
        except BlockingIOError:
            pass
        dev = TunDevice.__new__(TunDevice)
        dev.fd, dev.hlen, dev.name, dev.tap, dev._mtu = b.fileno(), 0, "fake", False, 1500
        dev._init_pool()
        dev.stats = {"read": 0, "super_packets": 0, "segments": 0}
        dev.read_batch(4)
        left = 0
        try:
            while True:
                b.recv(16)
                left += 1
        except BlockingIOError:
            pass
        assert n > 2 * 4, "could not queue enough empty reads to tell"
        assert n - left <= 2 * 4, f"one read_batch(4) consumed {n - left} reads"
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------------ signals and shutdown
class _SignalPort:
    """Stands in for Signals on a MemoryNet: readable once `fire()` was called."""

    def __init__(self, net) -> None:
        self.fd = 99_999
        net.by_fd[self.fd] = self
        self.stop = False
        self.stops = 0
        self.hit = False

    def fileno(self):
        return self.fd

    def fire(self):
        self.stop = self.hit = True
        self.stops += 1

    def readable(self):
        return self.hit

    def writable(self):
        return False

    def drain(self):
        self.hit = False

    def take(self):
        return []


def test_sigterm_stops_the_server_even_if_one_exit_notification_raises(pki, monkeypatch):
    w = World()
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki))
    served(w)
    sig = _SignalPort(w.net)
    w.server.signals = sig
    w.server.pump.watch(sig, w.server._on_signal)

    def boom(self, payload):
        raise OverflowError("packet id space exhausted")
    monkeypatch.setattr(DataKey, "seal", boom)
    for _ in range(3):          # SIGTERM three times
        sig.fire()
        w.server.pump.step(block=False)
    assert w.server.result == 0, f"server still running after SIGTERM: {w.server.faults.counts}"


def test_sigterm_stops_the_client_even_if_its_exit_notification_raises(pki, monkeypatch):
    w = World()
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki, extra="explicit-exit-notify 1"))
    served(w)
    c = w.clients[0]
    sig = _SignalPort(w.net)
    c.signals = sig
    c.pump.watch(sig, c._on_signal)

    def boom(self, payload):
        raise OverflowError("packet id space exhausted")
    monkeypatch.setattr(DataKey, "seal", boom)
    monkeypatch.setattr(c.conn.session, "cc_exit", False)      # a server without cc-exit: OCC exit packets
    for _ in range(3):
        sig.fire()
        c.pump.step(block=False)
    assert c.result == 0, f"client still running after SIGTERM: {c.faults.counts}"


def test_sighup_and_sigusr2_do_not_kill_the_process():
    s = Signals()
    before = {n: signal.getsignal(n) for n in (signal.SIGHUP, signal.SIGUSR2)}
    s.install()
    try:
        for n in (signal.SIGHUP, signal.SIGUSR2):
            assert signal.getsignal(n) not in (signal.SIG_DFL, None), f"{signal.Signals(n).name} keeps its default: terminate"
    finally:
        s.uninstall()
        for n, h in before.items():
            signal.signal(n, h)


# ------------------------------------------------------------------ second batch
def test_per_source_handshake_limit_holds_on_tcp(pki, monkeypatch):
    """The engine's per-source limit counts a TCP client by its IP (not per connection), even
    with the gateway's own per-address connection cap lifted."""
    monkeypatch.setattr(server_mod, "PER_SOURCE_CONNS", 100)
    w = World()
    w.add_server(server_conf(pki, "tcp-server", protection="none"))
    conns = []
    for k in range(20):
        s = stream_connect(w.net, "198.18.0.66", (SERVER_IP, 1194))
        _accept(w, s)
        s.send(framed(hard_reset(bytes([k + 1]) * 8)))
        conns.append(s)
    w.server.pump.step(block=False)
    half_open = w.server.d.admission.n_half_open
    per = w.server.d.st.max_half_open_per_source
    assert half_open <= per, f"{half_open} handshakes in progress from one address (limit {per} per source)"


def test_one_small_mtu_destination_does_not_turn_gso_off_for_everyone(pki):
    w = two_clients_served(pki)
    small = w.clients[1].conn.link.t.sock.local          # client1 sits behind a 1280-byte path
    sock = w.server_ports.udp_sockets[0]
    real = sock.sendmsg

    def sendmsg(buffers, cmsg=(), flags=0, addr=None):
        seg = next((int.from_bytes(v[:2], "little") for lvl, typ, v in cmsg if (lvl, typ) == (17, 103)), 0)
        if addr is not None and tuple(addr) == small and seg + 28 > 1280:
            raise OSError(errno.EINVAL, "Invalid argument")       # what udp_send_skb says
        return real(buffers, cmsg, flags, addr)
    sock.sendmsg = sendmsg
    assert w.server.udp.gso
    for i in range(4):      # a burst of full-size packets to client1, in one wake-up
        w.server_net.tun.inject(ipv4_udp("198.19.0.1", w.client_addr(1), bytes([i]) * 1300))
    w.run_for(0.5)
    assert w.server.udp.gso, "GSO switched off for every client because of one destination's path MTU"


def test_a_spoofed_packet_that_trips_a_bug_does_not_end_the_clients_session(pki, monkeypatch):
    w = World()
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki, "client0"))
    served(w)
    victim = w.clients[0].conn.link.t.sock.local
    rec = w.server.d.by_addr[victim]
    real = w.server.d.receive
    poison = b"\x42" * 9

    def receive(packet, addr, now):
        if bytes(packet) == poison:
            raise RuntimeError("a bug the attacker found")
        return real(packet, addr, now)
    monkeypatch.setattr(w.server.d, "receive", receive)
    w.net.inject((SERVER_IP, 1194), poison, victim)       # forged source: the victim's address
    w.run_for(0.2)
    assert rec.alive, "the victim's session was ended by a packet it did not send"


class _RefusingRoutesNet:
    """The client's TunnelNet as tunnel.py's apply() begins: every pushed route's mask goes through
    mask_to_prefix (and then to the kernel, which refuses host bits with EINVAL)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    @property
    def tun(self):
        return self.inner.tun

    @property
    def block_ipv6(self):
        return self.inner.block_ipv6

    def apply(self, pushed, remote_ip):
        from appliance.gateway.tunnel import mask_to_prefix
        for net, mask, _gw, _metric in pushed.routes:
            mask_to_prefix(mask)
        self.inner.apply(pushed, remote_ip)

    def device_reopened(self):
        self.inner.device_reopened()

    def reach(self, remote_ip):
        self.inner.reach(remote_ip)

    def prepare(self):
        self.inner.prepare()

    def close(self):
        self.inner.close()


def test_a_pushed_route_the_host_refuses_does_not_end_the_client(pki):
    w = World()
    w.add_server(server_conf(pki, extra='push "route 10.0.0.0 not-a-mask"'))
    c = w.add_client(client_conf(pki))
    c.net = _RefusingRoutesNet(c.net)
    w.run_for(20)
    assert c.result is None, "the client gave up for good (the appliance powers off)"


class _RedirectRefusedNet(_RefusingRoutesNet):
    """The client's TunnelNet on a host whose kernel refuses the redirect (tunnel.py
    _redirect_refused: a tap's route-gateway off its network, ...): every apply fails, at `times`."""

    def __init__(self, inner, clock) -> None:
        super().__init__(inner)
        self.clock, self.times = clock, []

    def apply(self, pushed, remote_ip):
        self.times.append(self.clock())
        raise RuntimeError("redirect-gateway def1 via tun0: the kernel refused its routes (Network is unreachable)")


def test_a_refused_redirect_is_retried_with_a_growing_pause_not_each_second(pki):
    # review48b: a redirect the kernel refuses fails the push (its traffic would leave outside the
    # tunnel otherwise); the client retries as after any failed attempt -- 2.6's restart pause,
    # doubling once the remotes have failed 5 rounds, up to connect-retry-max -- not once a second.
    w = World()
    w.add_server(server_conf(pki, extra='push "redirect-gateway def1"'))
    c = w.add_client(client_conf(pki, extra="connect-retry 1 300"))
    c.net = net = _RedirectRefusedNet(c.net, w.clock)
    w.run_for(300)
    assert c.result is None, "the client gave up for good (the appliance powers off)"
    gaps = [b - a for a, b in zip(net.times, net.times[1:])]
    assert 5 <= len(net.times) < 20, net.times         # it retries, but far from once a second
    assert gaps[-1] >= 30 and gaps == sorted(gaps, key=round), gaps


def test_a_server_cannot_push_an_unbounded_reply():
    from appliance.openvpn.keymethod import parse_push_reply_untrusted
    from appliance.openvpn.keymethod import PushRejected
    p = None
    with pytest.raises(PushRejected, match="more than"):
        for i in range(2000):
            routes = ",".join(f"route 10.{i % 250}.{k}.0 255.255.255.0" for k in range(10))
            p = parse_push_reply_untrusted(f"PUSH_REPLY,{routes},x-junk-{i} {'a' * 200},push-continuation 2", p)
    assert p is not None and len(p.routes) <= 1100 and len(p.ignored) <= 1100


def test_a_hostile_server_gets_a_bounded_share_of_the_clients_wake_up(pki):
    from lab.fakes import MemoryListenSocket
    w = World()
    hostile = ("198.18.0.5", 1194)
    lst = MemoryListenSocket(w.net, hostile)
    lst.bind(hostile)
    c = w.add_client(client_conf(pki, proto="tcp-client", remotes=[hostile]))
    w.run_for(0.1)
    conn = lst.backlog.popleft()
    calls = []
    real = c.conn.dp.open

    def open_(packet, now):
        calls.append(1)
        return real(packet, now)
    c.conn.dp.open = open_
    conn.send(framed(b"\x00") * 80_000)
    c.pump.step(block=False)
    assert len(calls) <= 4 * 64, f"{len(calls)} server packets in one wake-up"


def test_tcp_connections_from_one_ipv6_slash_64_count_as_one_source(pki):
    """Idle TCP connections from many addresses of one /64 are held to one source's share."""
    w = World()
    w.add_server(server_conf(pki, "tcp-server", extra="max-clients 2"))
    idle = []
    for i in range(3 * server_mod.PER_SOURCE_CONNS):
        idle.append(stream_connect(w.net, f"2001:db8:1:2::{i + 1:x}", (SERVER_IP, 1194)))
        w.server.pump.step(block=False)
    assert len(w.server.conns) == server_mod.PER_SOURCE_CONNS, "one /64 holds more than one source's share"
    assert w.server.faults.counts["TCP connection refused: too many without handshake from one address"] \
        == 2 * server_mod.PER_SOURCE_CONNS
    other = stream_connect(w.net, "2001:db8:1:3::1", (SERVER_IP, 1194))
    _accept(w, other)
    for s in idle[:2]:                                      # closing gives the /64 its room back
        s.close()
    for _ in range(5):
        w.server.pump.step(block=False)
    again = stream_connect(w.net, "2001:db8:1:2::ffff", (SERVER_IP, 1194))
    _accept(w, again)
