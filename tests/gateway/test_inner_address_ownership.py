"""Who owns an inner address on a multi-client server: a client may send only from addresses the
server routes to it (as OpenVPN 2.6 checks the source against its routing table, longest prefix
first), and a pool address goes back to the pool only from the client that took it from there.

An authenticated client must not, by the addresses it claims or the order it comes and goes in,
borrow another client's addresses."""
from __future__ import annotations

import pytest

from appliance.gateway.server_files import ccd_loader
from tests.gateway.conftest import World, client_conf, ipv4_udp, server_conf
from tests.gateway.test_tunnel import SERVER_TUN, _up


def _ccd(w: World, tmp_path, files: dict[str, str]) -> None:
    d = tmp_path / "ccd"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text)
    w.server.st.ccd = ccd_loader(str(d))         # World reads no files; as server_files does at start


def _reaches_server(w: World, i: int, src: str, tag: bytes) -> bool:
    """A packet from client i's TUN with source `src` comes out of the server's TUN (a marker packet
    from the client's own address sent after it proves the first had its chance)."""
    pkt = ipv4_udp(src, SERVER_TUN, b"probe-" + tag)
    marker = ipv4_udp(w.client_addr(i), SERVER_TUN, b"marker-" + tag)
    w.client_nets[i].tun.inject(pkt)
    w.client_nets[i].tun.inject(marker)
    assert w.run(lambda: marker in w.server_net.tun.written, max_time=5), "the client's own packet was lost"
    return pkt in w.server_net.tun.written


# A leaving client tells the server only with explicit-exit-notify (as OpenVPN 2.6's client).
LEAVES = "explicit-exit-notify 1\n"


def _leave(w: World, i: int) -> None:
    gw = w.server
    n = len(gw.d.clients)
    w.clients[i].request_stop()
    assert w.run(lambda: len(gw.d.clients) == n - 1, max_time=10), "the client did not leave"


def test_a_wide_iroute_does_not_let_its_client_send_from_another_clients_narrower_iroute(pki, tmp_path):
    """client0 routes 198.19.128.0/17 (a head office), client1 198.19.200.0/24 inside it (a branch):
    the server routes the branch to client1, so a packet from client0 with a branch source is a
    spoof (OpenVPN 2.6: "bad source address from client", its route lookup of the source must give
    the sending client). It used to pass, since the source was only checked against the sender's
    own iroutes."""
    w = World()
    w.add_server(server_conf(pki))
    _ccd(w, tmp_path, {"client0": "iroute 198.19.128.0 255.255.128.0\n",
                       "client1": "iroute 198.19.200.0 255.255.255.0\n"})
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    assert _reaches_server(w, 0, "198.19.130.5", b"own-iroute"), "client0's own network must pass"
    assert _reaches_server(w, 1, "198.19.200.5", b"branch-by-owner"), "client1's own network must pass"
    assert not _reaches_server(w, 0, "198.19.200.5", b"branch-by-other"), \
        "client0 sent with a source the server routes to client1"
    assert w.server.d.drop_counters().get("inner packet with a source the client does not own") == 1


def test_a_static_address_outside_the_dynamic_range_never_joins_it(pki, tmp_path):
    """client0's ccd gives it 198.19.0.50, outside the dynamic range (.100 and .101, the smallest
    pool 2.6 takes). Once client0 had come and gone, .50 used to be handed to the next client when
    the range ran out -- and client0 coming back then took that client's address over."""
    w = World()
    w.add_server(server_conf(pki, extra="ifconfig-pool 198.19.0.100 198.19.0.101\n", nopool=True))
    _ccd(w, tmp_path, {"client0": "ifconfig-push 198.19.0.50 255.255.255.0\n"})
    w.add_client(client_conf(pki, "client0", extra=LEAVES))
    assert w.run(lambda: _up(w, 0), max_time=30)
    assert w.client_addr(0) == "198.19.0.50"
    _leave(w, 0)
    w.add_client(client_conf(pki, "client1"))
    w.add_client(client_conf(pki, "client2"))
    w.add_client(client_conf(pki, "client3"))
    assert w.run(lambda: _up(w, 1) and _up(w, 2), max_time=30)
    w.run_for(10)
    assert {w.client_addr(1), w.client_addr(2)} == {"198.19.0.100", "198.19.0.101"}
    assert w.client_addr(3) is None, "a static address was handed out from the dynamic pool"


@pytest.mark.parametrize("leaving", [1, 0])
def test_a_pool_address_stays_taken_while_a_client_on_it_is_connected(pki, tmp_path, leaving):
    """client0 has .2 from the pool; client1's ccd pushes .2 too (the operator's mistake, warned
    about), so the server routes .2 to client1, the newer (as OpenVPN 2.6). When client1 left, .2
    went back to the pool although client0 still held it, and the next client got it: two clients
    on one address. Whichever of the two leaves, the other still holds .2."""
    w = World()
    w.add_server(server_conf(pki, extra="ifconfig-pool 198.19.0.2 198.19.0.3\n", nopool=True))
    _ccd(w, tmp_path, {"client1": "ifconfig-push 198.19.0.2 255.255.255.0\n"})
    w.add_client(client_conf(pki, "client0", extra=LEAVES))
    assert w.run(lambda: _up(w, 0), max_time=30)
    w.add_client(client_conf(pki, "client1", extra=LEAVES))
    assert w.run(lambda: _up(w, 1), max_time=30)
    assert w.client_addr(0) == w.client_addr(1) == "198.19.0.2"
    # The server's route to .2 is client1's now: client0 may no longer send from it (OpenVPN: the
    # source's route must be the sender's).
    assert _reaches_server(w, 1, "198.19.0.2", b"route-owner") is True
    why = "inner packet with a source the client does not own"
    older = ipv4_udp("198.19.0.2", SERVER_TUN, b"older")
    w.client_nets[0].tun.inject(older)
    assert w.run(lambda: w.server.d.drop_counters().get(why, 0) == 1, max_time=5), "client0 still sends from .2"
    assert older not in w.server_net.tun.written
    _leave(w, leaving)
    w.add_client(client_conf(pki, "client2"))
    w.add_client(client_conf(pki, "client3"))
    assert w.run(lambda: _up(w, 2), max_time=30)
    w.run_for(10)
    assert w.client_addr(2) == "198.19.0.3"
    assert w.client_addr(3) is None, "an address a connected client still holds was leased again"


def test_an_iroute_over_the_pool_does_not_lend_the_servers_own_address(pki, tmp_path):
    """client0's iroute covers the whole tunnel network (an operator's wide prefix): the server's
    own tunnel address stays nobody's source -- a packet from client0 with it would reach other
    clients (client-to-client) as the server's. It passed, as the IPv6 one did before (the same
    rule there: tests/gateway/test_iroute_ipv6.py)."""
    w = World()
    w.add_server(server_conf(pki))
    _ccd(w, tmp_path, {"client0": "iroute 198.19.0.0 255.255.0.0\n"})
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    assert _reaches_server(w, 0, "198.19.0.200", b"inside"), "client0's own network must pass"
    assert not _reaches_server(w, 0, SERVER_TUN, b"servers"), "a client sent as the server"
