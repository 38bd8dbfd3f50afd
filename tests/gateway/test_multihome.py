"""`multihome` on the real server pump over in-memory sockets: a server host with two addresses
(SERVER_IP and SECOND) bound to the wildcard. A client that wrote to SECOND must be answered from
SECOND (its connected socket drops anything else, as the kernel's does); the local address a
client is answered from moves only with an authenticated packet of its session, never with a
forged, replayed or unauthenticated one sent to the other address with its source."""
from __future__ import annotations

import pytest

from appliance.openvpn.config import ConfigError, parse_config
from tests.gateway.conftest import SERVER_IP, World, client_conf, ipv4_udp, server_conf
from tests.gateway.test_tunnel import SERVER_TUN, _up, ping_both_ways

SECOND = "198.18.0.100"
PORT = 1194


def _world(pki, multihome: bool = True, clients: tuple[str, ...] = (SECOND,), protection: str = "tls-crypt") -> World:
    w = World()
    w.add_server(server_conf(pki, protection=protection, extra="multihome" if multihome else ""), also=(SECOND,))
    for i, remote in enumerate(clients):
        w.add_client(client_conf(pki, f"client{i}", protection=protection, remotes=[(remote, PORT)]))
    return w


def _server_sock(w: World):
    return w.server_ports.udp_sockets[0]


def _sources_to(w: World, i: int) -> set[str]:
    """The source addresses of the server's datagrams to client i so far."""
    me = w.client_ports[i].udp_sockets[-1].local
    return {src for src, dst in _server_sock(w).sent_from if dst == me}


def _record(w: World, i: int = 0):
    me = w.client_ports[i].udp_sockets[-1].local
    recs = [r for r in w.server.d.clients if tuple(r.addr[:2]) == me]
    assert len(recs) == 1, w.server.d.clients
    return recs[0]


def _tap(w: World) -> list:
    """Every datagram the memory net delivers from now on, as (data, src, dst)."""
    seen: list = []
    orig = w.net.deliver

    def deliver(data, src, dst):  # noqa: ANN001
        seen.append((bytes(data), tuple(src), tuple(dst)))
        orig(data, src, dst)
    w.net.deliver = deliver
    return seen


def _is_data(d: bytes) -> bool:
    return len(d) > 4 and d[0] >> 3 == 9           # P_DATA_V2


def test_each_client_is_answered_from_the_address_it_wrote_to(pki):
    w = _world(pki, clients=(SECOND, SERVER_IP))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30), "tunnels did not come up"
    for i in range(2):
        ping_both_ways(w, i, tag=b"%d" % i)
    assert _sources_to(w, 0) == {SECOND}
    assert _sources_to(w, 1) == {SERVER_IP}
    assert _record(w, 0).addr[-1] == SECOND


def test_without_multihome_a_client_of_the_second_address_never_comes_up(pki):
    """What multihome is for: the answers leave from the first address, and the client's socket,
    connected to the second, drops them."""
    w = _world(pki, multihome=False)
    seen = _tap(w)
    assert not w.run(lambda: _up(w), max_time=15)
    me = w.client_ports[0].udp_sockets[-1].local
    assert any(src == (SERVER_IP, PORT) and dst == me for _d, src, dst in seen), "the server never answered"


@pytest.mark.parametrize("protection", ["tls-crypt", "none"])
def test_forged_replayed_and_unauthenticated_packets_to_the_other_address_change_nothing(pki, protection):
    """Without tls-crypt a forged hard reset gets a (stateless) cookie answer, from the address it
    was sent to: the client's socket drops it, and the client's session is untouched."""
    w = _world(pki, protection=protection)
    seen = _tap(w)
    assert w.run(lambda: _up(w), max_time=30)
    ping_both_ways(w, tag=b"a")
    me = w.client_ports[0].udp_sockets[-1].local
    rec = _record(w)
    data = [d for d, src, dst in seen if src == me and _is_data(d)]
    assert data, "no data packet from the client seen"
    other = (SERVER_IP, PORT)
    forged = bytearray(data[-1])
    forged[-1] ^= 1                                   # its tag no longer checks out
    # A "new session" from the client's address (its session id not zeros: 2.6 drops that unanswered).
    hard_reset = bytes([7 << 3]) + bytes(range(1, 9)) + bytes(5)
    for d in (data[-1], data[0], bytes(forged), hard_reset, b"\x00" * 40):
        w.net.inject(other, d, me)
        w.run_for(0.5)
    assert rec.alive and rec.addr[-1] == SECOND, rec.addr
    if protection == "none":            # the reset's cookie answer, from where the reset went
        assert (SERVER_IP, me) in _server_sock(w).sent_from
    n = len(_server_sock(w).sent_from)
    ping_both_ways(w, tag=b"b")
    assert {src for src, dst in _server_sock(w).sent_from[n:] if dst == me} == {SECOND}


def test_an_authenticated_packet_to_the_other_address_moves_the_answers_there_and_back(pki):
    """As OpenVPN keeps the address of the latest authenticated packet: a client's packets that
    reach the other address (a changed path, a NAT) are answered from there."""
    w = _world(pki)
    assert w.run(lambda: _up(w), max_time=30)
    me = w.client_ports[0].udp_sockets[-1].local
    orig = w.net.deliver
    moved: list = []

    def deliver(data, src, dst):  # noqa: ANN001
        if tuple(src) == me and _is_data(bytes(data)) and not moved:
            moved.append(data)
            dst = (SERVER_IP, PORT)                   # this one packet takes the other way
        orig(data, src, dst)
    w.net.deliver = deliver
    w.client_nets[0].tun.inject(ipv4_udp(w.client_addr(), SERVER_TUN, b"moved"))
    assert w.run(lambda: bool(moved), max_time=5)
    w.run_for(0.2)
    assert _record(w).addr[-1] == SERVER_IP
    n = len(_server_sock(w).sent_from)
    w.server_net.tun.inject(ipv4_udp(SERVER_TUN, w.client_addr(), b"from-first"))
    w.run_for(0.5)
    assert {src for src, dst in _server_sock(w).sent_from[n:] if dst == me} == {SERVER_IP}
    # The client's next packets reach SECOND again: its answers come back from there.
    w.net.deliver = orig
    ping_both_ways(w, tag=b"back", tries=3)
    assert _record(w).addr[-1] == SECOND


@pytest.mark.parametrize("conf, where", [
    ("proto tcp-server", "server"),
    ("client", "client"),
])
def test_noted_as_without_effect_on_tcp_and_in_client_configs(pki, conf, where):
    """OpenVPN 2.6 accepts multihome there and does nothing with it: a config written for it
    keeps working, and `check` says at its line that it does nothing."""
    text = (server_conf(pki, "tcp-server", extra="multihome") if where == "server"
            else client_conf(pki, extra="multihome"))
    line = text.splitlines().index("multihome") + 1
    o = parse_config(text, "/mem/x.conf")
    assert [n for n in o.notes if n.startswith(f"/mem/x.conf:{line}: multihome: no effect")], o.notes
