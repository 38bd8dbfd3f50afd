"""Faults injected where the kernel or a hostile peer would cause them; each ends at most the
session or connection of the peer that caused it, and the gateways keep serving.

What a user checks after each: the server still carries a client's packets both ways, the
client still has (or got back) its tunnel, and neither gateway has finished."""
from __future__ import annotations

import errno
import os
import random

import pytest

from appliance.ioerrors import PortGone
from appliance.openvpn.opcodes import Op, op_byte
from appliance.openvpn.packet import encode_body
from lab.fakes import ChannelTun, FakeServerNet, stream_connect
from tests.gateway.conftest import SERVER_IP, World, client_conf, ipv4_udp, server_conf
from tests.gateway.test_tunnel import _up, ping_both_ways


def hard_reset(sid: bytes = b"\x11" * 8) -> bytes:
    """A plain P_CONTROL_HARD_RESET_CLIENT_V2 (no tls-auth), as a client's first packet."""
    return bytes([op_byte(Op.CONTROL_HARD_RESET_CLIENT_V2, 0)]) + sid + encode_body([], None, 0, b"")


def served(w: World, i: int = 0, tries: int = 1, tag: bytes = b"x") -> None:
    assert w.server.result is None and all(c.result is None for c in w.clients)
    assert w.run(lambda: _up(w, i), max_time=60), "the client has no tunnel"
    ping_both_ways(w, i, tag, tries)


def two_clients_served(pki) -> World:
    """A server with client0 and client1 both up and answering pings: where one client's fault
    must end that client only and the other must still be served."""
    w = World()
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    served(w, 0)
    served(w, 1)
    return w


def record_of(w: World, i: int = 0):
    """The server's record of client i (found by its tunnel address)."""
    return next(r for r in w.server.d.clients if r.vaddr == w.client_addr(i))


def test_datagram_from_source_port_0_ends_nothing(pki):
    w = World()
    w.add_server(server_conf(pki, protection="none"))
    for k in range(5):
        w.net.inject((SERVER_IP, 1194), hard_reset(bytes([k]) * 8), ("198.18.0.66", 0))
        w.run_for(0.1)
    errors = w.server.udp.errors
    assert errors.get("send EINVAL", 0) >= 1, errors        # the answer was refused, and counted
    w.add_client(client_conf(pki, protection="none"))
    served(w)


@pytest.mark.parametrize("code", [errno.EPERM, errno.ENOBUFS, errno.EINVAL, errno.ECONNREFUSED])
def test_a_share_of_sends_refused_on_both_roles(pki, code):
    """As an nftables rule dropping 5% of outgoing tunnel packets does (sendmsg gets EPERM)."""
    w = World()
    rng = random.Random(5)
    w.net.send_fault = lambda src, dst: code if rng.random() < 0.05 else None
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki))
    for i in range(40):
        served(w, tries=4, tag=b"%d" % i)
    refused = sum(v for k, v in w.server.udp.errors.items() if k.startswith("send"))
    refused += sum(v for k, v in w.clients[0].conn.link.errors.items() if k.startswith("send"))
    assert refused > 0


def test_garbage_datagrams_to_both_roles(pki):
    w = World()
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki))
    served(w)
    rng = random.Random(3)
    client_addr = w.clients[0].conn.link.t.sock.local
    for _ in range(300):
        junk = rng.randbytes(rng.randrange(0, 1600))
        w.net.inject((SERVER_IP, 1194), junk, ("198.18.0.99", rng.randrange(1, 65535)))
        w.net.inject(client_addr, junk, (SERVER_IP, 1194))
        # And junk that claims to be an established client's data packet (its peer-id 0).
        w.net.inject((SERVER_IP, 1194), bytes([op_byte(Op.DATA_V2, 0), 0, 0, 0]) + junk, client_addr)
    w.run_for(1)
    served(w)


def test_loss_and_reordering(pki):
    w = World(seed=11)
    w.net.loss, w.net.reorder = 0.10, 0.25
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki))
    assert w.run(lambda: _up(w), max_time=120)
    got = 0
    for i in range(50):
        n = len(w.server_net.tun.written)
        w.client_nets[0].tun.inject(ipv4_udp(
            w.client_addr(), "198.19.0.1", b"%d" % i))
        w.run_for(0.2)
        got += len(w.server_net.tun.written) - n
    assert 30 <= got <= 50, got        # ~10% lost, none invented


def test_tcp_reset_while_the_server_writes_ends_only_that_connection(pki):
    w = World()
    w.add_server(server_conf(pki, "tcp-server"))
    w.add_client(client_conf(pki, "client0", proto="tcp-client"))
    w.add_client(client_conf(pki, "client1", proto="tcp-client"))
    served(w, 0)
    served(w, 1)
    victim = w.client_ports[0].streams[-1].peer          # the server's end of client0's connection
    victim.send_fault = errno.ECONNRESET
    w.server_net.tun.inject(ipv4_udp(
        "198.19.0.1", w.client_addr(0), b"to-a-reset-peer"))
    w.run_for(0.5)
    assert victim.closed, "the server kept a connection whose writes fail"
    served(w, 1)                                          # the other client never noticed
    assert w.run(lambda: _up(w, 0) and w.clients[0].connections >= 2, max_time=60), "client0 did not reconnect"
    served(w, 0)


def test_tcp_frames_zero_length_oversized_and_cut_off_at_the_server(pki):
    w = World()
    w.add_server(server_conf(pki, "tcp-server"))
    w.add_client(client_conf(pki, proto="tcp-client"))
    served(w)
    attackers = []
    for data, close in [(b"\x00\x00", False), (b"\xff\xff" + os.urandom(65535), False),
                        (b"\x00\x40" + b"cut", True), (hard_reset() * 3, True)]:
        s = stream_connect(w.net, "198.18.0.77", (SERVER_IP, 1194))
        s.send(b"\x00" + bytes([len(hard_reset())]) + hard_reset())
        s.send(data)
        if close:
            s.close()
        attackers.append(s)
    w.run_for(1)
    assert len(w.server.conns) <= 2, "broken streams were kept"
    served(w)


def test_zero_length_frame_from_a_hostile_server_sends_the_client_to_the_next_remote(pki):
    w = World()
    hostile = ("198.18.0.5", 1194)
    w.add_server(server_conf(pki, "tcp-server"))
    from lab.fakes import MemoryListenSocket
    lst = MemoryListenSocket(w.net, hostile)
    lst.bind(hostile)
    w.add_client(client_conf(pki, proto="tcp-client", remotes=[hostile, (SERVER_IP, 1194)]))
    w.run_for(0.1)
    conn = lst.backlog.popleft()                  # the client's connection to the hostile remote
    conn.send(b"\x00\x00")
    served(w)
    assert w.clients[0].conn.addr == (SERVER_IP, 1194)


def test_server_stream_cut_mid_frame_makes_the_client_reconnect(pki):
    w = World()
    w.add_server(server_conf(pki, "tcp-server"))
    w.add_client(client_conf(pki, proto="tcp-client"))
    served(w)
    srv_end = w.client_ports[0].streams[-1].peer
    srv_end.send(b"\x00\x80partial")
    srv_end.abort()
    assert w.run(lambda: w.clients[0].connections >= 2, max_time=60)
    served(w)


def test_out_of_descriptors_at_accept_does_not_spin_and_recovers(pki):
    w = World()
    w.add_server(server_conf(pki, "tcp-server"))
    lst = w.server_ports.listen_socket
    lst.accept_fault = errno.EMFILE
    w.add_client(client_conf(pki, proto="tcp-client"))
    w.run_for(10)
    assert lst.accept_calls <= 12, f"accept() called {lst.accept_calls} times in 10 s: a busy loop"
    assert w.server.faults.counts.get("accept EMFILE", 0) >= 1
    lst.accept_fault = None
    served(w)


def test_idle_tcp_connections_are_closed_after_hand_window(pki):
    w = World()
    w.add_server(server_conf(pki, "tcp-server", extra="hand-window 20"))
    idle = [stream_connect(w.net, f"198.18.0.{80 + i}", (SERVER_IP, 1194)) for i in range(10)]
    w.run_for(5)
    assert len(w.server.conns) == 10
    w.run_for(20)
    assert not w.server.conns, "connections that never handshook are kept"
    assert all(s.eof for s in idle)
    w.add_client(client_conf(pki, proto="tcp-client"))
    served(w)


def test_a_bug_on_one_clients_packets_ends_only_that_client(pki, monkeypatch):
    w = two_clients_served(pki)
    bad_addr = w.clients[0].conn.link.t.sock.local
    real = w.server.d.receive

    def receive(packet, addr, now):
        if addr == bad_addr:
            raise RuntimeError("bug triggered by this client's packet")
        return real(packet, addr, now)
    monkeypatch.setattr(w.server.d, "receive", receive)
    w.clients[0].net.tun.inject(ipv4_udp(
        w.client_addr(0), "198.19.0.1", b"boom"))
    w.run_for(1)
    assert w.server.faults.counts.get("internal error", 0) >= 1
    served(w, 1)
    monkeypatch.setattr(w.server.d, "receive", real)


def test_sealing_that_raises_for_one_client_ends_only_that_client(pki, monkeypatch):
    w = two_clients_served(pki)
    rec = record_of(w, 0)

    def boom(payload):
        raise OverflowError("packet id space exhausted")
    monkeypatch.setattr(rec.session, "encrypt", boom)
    monkeypatch.setattr(rec.session, "encrypt_many", boom)     # the TUN path seals a batch per client
    for dst in (w.client_addr(0), w.client_addr(1)):
        w.server_net.tun.inject(ipv4_udp("198.19.0.1", dst, b"both"))
    w.run_for(0.5)
    assert rec not in w.server.d.clients
    served(w, 1)


def test_our_tun_gone_is_fatal_with_one_line(pki, caplog):
    w = World()

    class GoneTun(ChannelTun):
        def read_batch(self, n=64):
            raise PortGone("TUN tun-server: read failed: [Errno 77] File descriptor in bad state")

    class Net(FakeServerNet):
        def open(self):
            self.tun = GoneTun(self.net)
            self.tun.inject(b"\x45" + b"\x00" * 19)
            return self.tun

    from appliance.gateway.server import ServerGateway
    from appliance.openvpn.config import parse_config
    from appliance.openvpn.settings import server_settings
    from lab.fakes import MemoryPorts, MemoryWaiter
    opts = parse_config(server_conf(pki), "/mem/server.conf")
    gw = ServerGateway(opts, server_settings(opts, None, None), MemoryPorts(w.net, SERVER_IP), Net(w.net), w.clock,
                       MemoryWaiter(w.net))
    with caplog.at_level("ERROR", logger="vpn-appliance"):
        assert gw.run() == 1
    assert any("fatal: TUN tun-server" in r.getMessage() for r in caplog.records)


def test_a_timer_that_raises_for_one_client_ends_only_that_client(pki, monkeypatch):
    """As packet-id exhaustion once did (struct.error out of a timer): one client, not the server."""
    w = two_clients_served(pki)
    rec = record_of(w, 0)

    def boom(now):
        raise __import__("struct").error("'I' format requires 0 <= number <= 4294967295")
    monkeypatch.setattr(rec.session, "handle_timer", boom)
    w.run_for(30)
    assert rec not in w.server.d.clients
    assert w.server.faults.counts.get("internal error", 0) >= 1
    served(w, 1)


def test_a_tcp_client_that_never_reads_costs_bounded_memory(pki):
    from appliance.transport.tcp import MAX_QUEUE
    w = World()
    w.add_server(server_conf(pki, "tcp-server"))
    w.add_client(client_conf(pki, proto="tcp-client"))
    served(w)
    server_end = w.client_ports[0].streams[-1].peer
    server_end.window = 0                      # the client stops reading: every send is EAGAIN
    link = next(iter(w.server.conns.values()))
    for i in range(3000):
        w.server_net.tun.inject(ipv4_udp("198.19.0.1", w.client_addr(), bytes([i % 256]) * 1200))
        if i % 64 == 0:
            w.run_for(0.01)
    w.run_for(0.1)
    assert link.t.queued <= MAX_QUEUE, f"{link.t.queued} bytes queued for a client that does not read"
    assert link.t.stats["dropped"] > 0
