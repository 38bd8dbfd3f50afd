"""Local set-up comes before the first packet, not between the server's packets (gateway/client.py
start): the TUN device is open and the data ciphers are set up before the hard reset goes out, the
ClientHello is made before it too, start-up's heap is frozen out of the garbage collector, and the
push only configures the device. In memory, real pumps."""
from __future__ import annotations

from appliance.gateway import client as client_mod
from appliance.gateway.client import ClientGateway
from appliance.openvpn import ciphers
from appliance.openvpn.config import parse_config
from lab.fakes import FakeTunnelNetwork, MemoryPorts, MemoryWaiter
from tests.gateway.conftest import World, client_conf, server_conf


def test_the_tun_and_the_client_hello_are_ready_before_the_first_packet_and_made_once(pki, monkeypatch):
    warmed: list[list] = []
    monkeypatch.setattr(ciphers, "warm_up", lambda names: warmed.append(list(names)))
    frozen: list[bool] = []                     # start-up's heap frozen out of the GC, before connecting
    monkeypatch.setattr(client_mod, "freeze_startup_heap", lambda: frozen.append(c.conn is None))
    w = World()
    w.add_server(server_conf(pki))
    net, port = FakeTunnelNetwork(w.net), MemoryPorts(w.net, "198.18.0.2")
    c = ClientGateway(parse_config(client_conf(pki), "/mem/client.ovpn"), port, net, w.clock, MemoryWaiter(w.net))
    w.clients.append(c)
    calls: list[str] = []
    prepare, apply = net.prepare, net.apply
    net.prepare = lambda: (calls.append("prepare"), prepare())[1]
    net.apply = lambda pushed, ip: (calls.append("apply"), apply(pushed, ip))[1]
    sent_before: list[tuple] = []
    udp = port.udp

    def watch_udp(*a, **k):                    # what existed when the first datagram left
        t = udp(*a, **k)
        send = t.send

        def first(datagram, addr=None):
            if not sent_before:
                s = c.conn.session
                sent_before.append((list(calls), net.tun is not None, s.keys[0].primed is not None))
            return send(datagram, addr)
        t.send = first                         # the hard reset goes out alone, through send()
        return t
    port.udp = watch_udp
    c.start()
    assert sent_before == [(["prepare"], True, True)], sent_before
    assert warmed and "AES-256-GCM" in warmed[0]
    assert frozen == [True], frozen
    tun = net.tun
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30), "tunnel did not come up"
    assert calls == ["prepare", "apply"] and net.tun is tun
    # a renegotiation (a new TLS handshake on the same connection) opens nothing more
    c.conn.session.renegotiate(w.clock.t)
    c._after_engine(c.conn)
    assert w.run(lambda: c.counters.renegotiations >= 1, max_time=30), "no renegotiation"
    assert net.tun is tun and calls.count("prepare") == 1


def test_packets_waiting_in_the_tun_go_out_first_once_the_push_is_read(pki):
    w = World()
    w.add_server(server_conf(pki))
    net, port = FakeTunnelNetwork(w.net), MemoryPorts(w.net, "198.18.0.2")
    c = ClientGateway(parse_config(client_conf(pki), "/mem/client.ovpn"), port, net, w.clock, MemoryWaiter(w.net))
    w.clients.append(c)
    ops: list[int] = []
    udp = port.udp

    def watch_udp(*a, **k):
        t = udp(*a, **k)
        send = t.send

        def record(datagram, addr=None):
            ops.append(datagram[0] >> 3)
            return send(datagram, addr)
        t.send = record
        t.send_batch = lambda ds, addr=None: [record(d, addr) for d in ds] and None
        return t
    port.udp = watch_udp
    c.start()
    # a LAN packet that arrived while the tunnel was being set up (IPv4/UDP, 28 bytes; to the server's
    # tunnel address: one to its WAN address is dropped as recursive routing, as OpenVPN 2.6 does)
    net.tun.inject(bytes.fromhex("4500001c000040004011") + bytes(2) + bytes([198, 19, 0, 2, 198, 19, 0, 1])
                   + bytes.fromhex("d431d4310008") + bytes(2))
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30), "tunnel did not come up"
    data = [i for i, op in enumerate(ops) if op == 9]
    assert data, ops
    # Our server sends its key-method message and the push together: that batch is acked before
    # it is read (Session.end_batch), and the first thing sent after reading it, before any other
    # control packet, is the packet that waited in the TUN.
    assert ops[data[0] - 1] == 5, ops
    assert all(op == 9 for op in ops[data[0]:]), ops


def _client_with_waiting_packet(pki, fail_data: bool = False):
    """A client whose TUN holds a LAN packet while it connects; its sends recorded in order
    (opcodes, and "up" when the connection's up reaches the scripts and listeners)."""
    w = World()
    w.add_server(server_conf(pki))
    net, port = FakeTunnelNetwork(w.net), MemoryPorts(w.net, "198.18.0.2")
    c = ClientGateway(parse_config(client_conf(pki), "/mem/client.ovpn"), port, net, w.clock, MemoryWaiter(w.net))
    w.clients.append(c)
    seen: list = []
    udp = port.udp

    def watch_udp(*a, **k):
        t = udp(*a, **k)
        send = t.send

        def record(datagram, addr=None):
            seen.append(datagram[0] >> 3)
            if fail_data and datagram[0] >> 3 == 9 and seen.count(9) == 1:
                raise OSError(101, "Network is unreachable")
            return send(datagram, addr)
        t.send = record
        t.send_batch = lambda ds, addr=None: [record(d, addr) for d in ds] and None
        return t
    port.udp = watch_udp
    up = c.updown.up
    c.updown.up = lambda *a, **k: (seen.append("up"), up(*a, **k))[1]
    c.start()
    net.tun.inject(bytes.fromhex("4500001c000040004011") + bytes(2) + bytes([198, 19, 0, 2, 198, 19, 0, 1])
                   + bytes.fromhex("d431d4310008") + bytes(2))
    return w, c, seen


def test_the_waiting_packet_leaves_before_the_connections_up_bookkeeping(pki):
    """Once the device is set, the packet that waited goes out before the scripts' and listeners'
    up and the rest of the push's bookkeeping: none of it changes how a packet is sealed."""
    w, c, seen = _client_with_waiting_packet(pki)
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30), "tunnel did not come up"
    assert 9 in seen and "up" in seen, seen
    assert seen.index(9) < seen.index("up"), seen


def test_a_failed_first_send_still_completes_the_up_then_reconnects(pki):
    """The link lost at that send (a TCP server gone, a route withdrawn) is handled once the
    connection's up is complete, as when the packet went out after it: the scripts and listeners
    saw the up they will see the down of, and the client connects again."""
    w, c, seen = _client_with_waiting_packet(pki, fail_data=True)
    assert w.run(lambda: c.counters.connections >= 2 and c.conn is not None and c.conn.was_up, max_time=60), seen
    assert seen.count("up") >= 2 and seen.index(9) < seen.index("up"), seen
