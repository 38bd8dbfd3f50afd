"""The real client and server pumps against each other on in-memory ports: the tunnel comes up
and carries packets both ways, over UDP and TCP, and keepalive behaves as on the wire."""
from __future__ import annotations

import pytest

from lab.gateway_world import client_up
from tests.gateway.conftest import World, client_conf, ipv4_udp, server_conf

SERVER_TUN = "198.19.0.1"


_up = client_up          # (the name the gateway tests import)


def ping_both_ways(w: World, i: int = 0, tag: bytes = b"x", tries: int = 1) -> None:
    """A packet from the client's TUN reaches the server's TUN, and one back (each sent up to
    `tries` times, for links that lose packets on purpose)."""
    cli = w.client_addr(i)
    stun, ctun = w.server_net.tun, w.client_nets[i].tun
    out = ipv4_udp(cli, SERVER_TUN, b"up-" + tag)
    back = ipv4_udp(SERVER_TUN, cli, b"down-" + tag)
    for src, dst, pkt, what in ((ctun, stun, out, "client->server"), (stun, ctun, back, "server->client")):
        for _ in range(tries):
            src.inject(pkt)
            if w.run(lambda: pkt in dst.written, max_time=2):
                break
        assert pkt in dst.written, f"{what} packet lost"


@pytest.mark.parametrize("proto", ["udp", "tcp"])
@pytest.mark.parametrize("protection", ["none", "tls-crypt"])
def test_tunnel_up_and_packets_both_ways(pki, proto, protection):
    w = World()
    w.add_server(server_conf(pki, "tcp-server" if proto == "tcp" else "udp", protection))
    w.add_client(client_conf(pki, proto="tcp-client" if proto == "tcp" else "udp", protection=protection))
    assert w.run(lambda: _up(w), max_time=30), "tunnel did not come up"
    assert w.client_addr() == "198.19.0.2"
    for i in range(3):
        ping_both_ways(w, tag=bytes([i]))


def test_two_clients_reach_each_other_through_client_to_client(pki):
    w = World()
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    a, b = w.client_addr(0), w.client_addr(1)
    assert a != b
    pkt = ipv4_udp(a, b, b"c2c")
    w.client_nets[0].tun.inject(pkt)
    assert w.run(lambda: pkt in w.client_nets[1].tun.written, max_time=5)
    assert pkt not in w.server_net.tun.written, "client-to-client must stay inside the server"


def test_server_sends_no_keepalive_pings_while_data_flows(pki):
    """The server used to ping every `keepalive` interval even with data flowing to the client."""
    w = World()
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki))
    assert w.run(lambda: _up(w), max_time=30)
    s = w.clients[0].conn.session
    w.run_for(0.5)
    authenticated_before = s.data_authenticated          # data packets incl. keepalive pings
    written_before = len(w.client_nets[0].tun.written)
    cli = w.client_addr()
    for i in range(30):                        # 30 s of one packet per second towards the client
        w.server_net.tun.inject(ipv4_udp(SERVER_TUN, cli, b"%d" % i))
        w.run_for(1.0)
    tunnel_packets = len(w.client_nets[0].tun.written) - written_before
    assert tunnel_packets == 30
    assert s.data_authenticated - authenticated_before == tunnel_packets, "the server pinged while sending data"


def test_client_leaves_cleanly_and_server_frees_its_address(pki):
    w = World()
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki, extra="explicit-exit-notify 1"))
    assert w.run(lambda: _up(w), max_time=30)
    assert len(w.server.d.clients) == 1
    rec = w.server.d.clients[0]
    w.clients[0].request_stop()
    assert w.run(lambda: w.clients[0].result == 0, max_time=2)
    assert w.run(lambda: not w.server.d.clients, max_time=10), "exit notification did not end the session"
    # A stale timer entry may still hold the record a while: its keys and buffers must be gone.
    assert rec.session.keys == {} and rec.session.send_key is None and not any(rec.session.recv_keys)


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_a_burst_of_packets_arrives_intact_both_ways(pki, proto):
    """Many packets in one wake-up: each plaintext is a view into its session's buffer, so a pump
    that queued them for later would write the last one over and over."""
    w = World()
    w.add_server(server_conf(pki, "tcp-server" if proto == "tcp" else "udp"))
    w.add_client(client_conf(pki, proto="tcp-client" if proto == "tcp" else "udp"))
    assert w.run(lambda: _up(w), max_time=30)
    cli = w.client_addr()
    stun, ctun = w.server_net.tun, w.client_nets[0].tun
    up = [ipv4_udp(cli, SERVER_TUN, b"up-%03d" % i + bytes(i)) for i in range(40)]
    down = [ipv4_udp(SERVER_TUN, cli, b"down-%03d" % i + bytes(i)) for i in range(40)]
    for p in up:
        ctun.inject(p)
    for p in down:
        stun.inject(p)
    assert w.run(lambda: all(p in stun.written for p in up) and all(p in ctun.written for p in down), max_time=5)
    assert len(stun.written) == len(set(stun.written)) and len(ctun.written) == len(set(ctun.written))


def test_a_client_that_comes_back_gets_its_address_back(pki):
    """As OpenVPN's pool: the address a common name had is kept for it while other addresses are
    free, so a restarted client's TCP streams inside the tunnel survive."""
    w = World()
    w.add_server(server_conf(pki))
    w.add_client(client_conf(pki, "client0", extra="explicit-exit-notify 1"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    first = w.client_addr(0)
    w.clients[0].request_stop()
    assert w.run(lambda: len(w.server.d.clients) == 1, max_time=10)
    w.add_client(client_conf(pki, "client2"))           # a newcomer in between takes another one
    assert w.run(lambda: _up(w, 2), max_time=30)
    assert w.client_addr(2) != first
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 3), max_time=30)
    assert w.client_addr(3) == first
