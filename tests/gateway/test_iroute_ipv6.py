"""IPv6 networks behind clients (ccd `iroute-ipv6`), a client's own IPv6 address (ccd
`ifconfig-ipv6-push`) and the per-client route bound (`max-routes-per-client`) on a multi-client
server, as OpenVPN 2.6 routes them (multi.c multi_add_iroutes, multi_learn_in6_addr).

What a user checks: traffic to a network behind a client reaches that client, traffic from it
reaches the server's TUN, and a client may not send from another client's network or address
(OpenVPN: its route lookup of the source must give the sender; a spoof is dropped and counted)."""
from __future__ import annotations

import ipaddress

from appliance.gateway import ops as ops_mod
from appliance.gateway.scripts import ScriptRunner
from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_inner_address_ownership import LEAVES, _ccd, _leave
from tests.gateway.test_learn_address import _calls, _logger
from tests.gateway.test_tunnel import _up

SERVER6 = "fd00:77::1"
V6 = "server-ipv6 fd00:77::/64\nroute-ipv6 fd00:99::/48\n"
SPOOF = "inner packet with a source the client does not own"


def ipv6_udp(src: str, dst: str, payload: bytes) -> bytes:
    """An IPv6/UDP packet (checksum left 0: nothing on the way checks it)."""
    udp = (5000).to_bytes(2, "big") + (6000).to_bytes(2, "big") + (8 + len(payload)).to_bytes(2, "big") \
        + bytes(2) + payload
    return (bytes([0x60, 0, 0, 0]) + len(udp).to_bytes(2, "big") + bytes([17, 64])
            + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + udp)


def _reaches_server6(w: World, i: int, src: str, tag: bytes) -> bool:
    """A packet from client i's TUN with IPv6 source `src` comes out of the server's TUN (a marker
    from the client's own IPv6 address, sent after it, proves the first had its chance)."""
    own = w.client_nets[i].pushed.ifconfig_ipv6[0].partition("/")[0]
    pkt = ipv6_udp(src, SERVER6, b"probe-" + tag)
    marker = ipv6_udp(own, SERVER6, b"marker-" + tag)
    w.client_nets[i].tun.inject(pkt)
    w.client_nets[i].tun.inject(marker)
    assert w.run(lambda: marker in w.server_net.tun.written, max_time=5), "the client's own packet was lost"
    return pkt in w.server_net.tun.written


def _reaches_client6(w: World, i: int, dst: str, tag: bytes) -> bool:
    pkt = ipv6_udp(SERVER6, dst, b"down-" + tag)
    w.server_net.tun.inject(pkt)
    return w.run(lambda: pkt in w.client_nets[i].tun.written, max_time=3)


def test_a_client_sends_from_its_iroute_ipv6_network_and_not_from_another_clients(pki, tmp_path):
    """client0 has fd00:99:1::/64 behind it, client1 fd00:99:2::/64: each network's traffic goes
    to its client and comes from it; client0 sending with a source in client1's network is a spoof,
    dropped and counted. Before, every IPv6 source but the client's own pool address was refused,
    and `iroute-ipv6` failed the ccd file (an unknown directive), refusing the client."""
    w = World()
    w.add_server(server_conf(pki, extra=V6))
    _ccd(w, tmp_path, {"client0": "iroute-ipv6 fd00:99:1::/64\n", "client1": "iroute-ipv6 fd00:99:2::/64\n"})
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    assert _reaches_server6(w, 0, "fd00:99:1::5", b"own-net0")
    assert _reaches_server6(w, 1, "fd00:99:2::7", b"own-net1")
    assert _reaches_client6(w, 0, "fd00:99:1::5", b"to-net0")
    assert _reaches_client6(w, 1, "fd00:99:2::7", b"to-net1")
    assert not _reaches_server6(w, 0, "fd00:99:2::7", b"spoof"), "client0 sent from client1's network"
    assert not _reaches_server6(w, 0, "fd00:99:3::1", b"nobodys"), "client0 sent from a network nobody has"
    assert w.server.d.drop_counters().get(SPOOF) == 2


def test_a_narrower_iroute_ipv6_inside_a_wider_one_is_its_own_clients(pki, tmp_path):
    """Longest prefix first, as IPv4: client0's /48 holds client1's /64, which is client1's alone;
    and client1's own pool address inside nobody's iroute stays client1's."""
    w = World()
    w.add_server(server_conf(pki, extra=V6))
    _ccd(w, tmp_path, {"client0": "iroute-ipv6 fd00:99::/48\n", "client1": "iroute-ipv6 fd00:99:0:5::/64\n"})
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    assert _reaches_server6(w, 0, "fd00:99:0:6::1", b"wide")
    assert not _reaches_server6(w, 0, "fd00:99:0:5::1", b"narrow-by-other")
    assert _reaches_server6(w, 1, "fd00:99:0:5::1", b"narrow-by-owner")
    assert not _reaches_server6(w, 0, "fd00:77::1001", b"other-pool-address")
    assert _reaches_client6(w, 1, "fd00:99:0:5::1", b"down-narrow")
    assert _reaches_client6(w, 0, "fd00:99:0:6::1", b"down-wide")


def test_a_leaving_client_takes_its_iroute_ipv6_with_it(pki, tmp_path):
    w = World()
    w.add_server(server_conf(pki, extra=V6))
    _ccd(w, tmp_path, {"client0": "iroute-ipv6 fd00:99:1::/64\n"})
    w.add_client(client_conf(pki, "client0", extra=LEAVES))
    assert w.run(lambda: _up(w, 0), max_time=30)
    assert w.server.d.route("fd00:99:1::9") is not None
    _leave(w, 0)
    assert w.server.d.route("fd00:99:1::9") is None
    assert not w.server.d.iroutes6


def test_ifconfig_ipv6_push_gives_the_client_its_address_and_the_pool_skips_it(pki, tmp_path):
    """client0's ccd gives it fd00:77::1000, the pool's first address: it gets it (with the
    server's ::1 as the remote, OpenVPN's default), and client1 from the pool gets the next one,
    not a second fd00:77::1000."""
    w = World()
    w.add_server(server_conf(pki, extra=V6))
    _ccd(w, tmp_path, {"client0": "ifconfig-ipv6-push fd00:77::1000/64\n"})
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 1), max_time=30)
    assert w.client_nets[0].pushed.ifconfig_ipv6 == ("fd00:77::1000/64", SERVER6)
    assert w.client_nets[1].pushed.ifconfig_ipv6 == ("fd00:77::1001/64", SERVER6)
    assert _reaches_server6(w, 0, "fd00:77::1000", b"static")
    assert _reaches_client6(w, 0, "fd00:77::1000", b"down-static")
    assert not _reaches_server6(w, 1, "fd00:77::1000", b"spoof-static")


def test_ifconfig_ipv6_push_of_an_address_in_use_warns_and_the_newer_client_holds_it(pki, tmp_path, caplog):
    """As ifconfig-push: two ccd files giving one address (the operator's mistake) are both
    served, with a warning; the route is the newer client's, and the older one can no longer
    send from it. The address outside the pool (fd00:77::50) is never handed out by the pool."""
    w = World()
    w.add_server(server_conf(pki, extra=V6))
    _ccd(w, tmp_path, {"client0": "ifconfig-ipv6-push fd00:77::50/64 fd00:77::1\n",
                       "client1": "ifconfig-ipv6-push fd00:77::50/64\n"})
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 1), max_time=30)
    assert "ifconfig-ipv6-push fd00:77::50 for client1 is already in use" in caplog.text
    assert w.server.d.route("fd00:77::50") is w.server.d.by_vaddr["fd00:77::50"]
    assert w.server.d.route("fd00:77::50").common_name == "client1"
    assert _reaches_client6(w, 1, "fd00:77::50", b"newer")


def test_ifconfig_ipv6_push_without_a_remote_needs_server_ipv6(pki, tmp_path, caplog):
    """OpenVPN 2.6 refuses the line without a remote when there is no server IPv6 address to
    default to; here the client is refused with the ccd file's reason, others get in."""
    w = World()
    w.add_server(server_conf(pki))
    _ccd(w, tmp_path, {"client0": "ifconfig-ipv6-push fd00:77::50/64\n"})
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 1), max_time=30)
    w.run_for(3)
    assert not _up(w, 0)
    assert "names no remote address and there is no server-ipv6" in caplog.text


def test_max_routes_per_client_bounds_the_routes_a_ccd_file_declares(pki, tmp_path, caplog):
    """max-routes-per-client 4: the client's IPv4 and IPv6 addresses take two, so of its three
    iroute-ipv6 lines two are routed -- the last two, as OpenVPN 2.6 learns them last line first --
    and the first is not: nothing to it reaches the client, nothing from it passes, with a warning.
    Without the bound a ccd file (or a client-connect script) could route any number."""
    w = World()
    w.add_server(server_conf(pki, extra=V6 + "max-routes-per-client 4\n"))
    _ccd(w, tmp_path, {"client0": "iroute-ipv6 fd00:99:1::/64\niroute-ipv6 fd00:99:2::/64\n"
                                  "iroute-ipv6 fd00:99:3::/64\n"})
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    assert _reaches_server6(w, 0, "fd00:99:2::1", b"second")
    assert _reaches_server6(w, 0, "fd00:99:3::1", b"third")
    assert not _reaches_server6(w, 0, "fd00:99:1::1", b"first")
    assert not _reaches_client6(w, 0, "fd00:99:1::1", b"down-first")
    assert "max-routes-per-client (4) reached for client0: 1 iroute(s) not routed (fd00:99:1::/64)" in caplog.text
    assert w.server.d.drop_counters().get("iroute beyond max-routes-per-client") == 1


def test_max_routes_per_client_counts_ipv4_iroutes_too(pki, tmp_path):
    """One bound for both families, IPv4 iroutes learned first (as OpenVPN)."""
    w = World()
    w.add_server(server_conf(pki, extra=V6 + "max-routes-per-client 3\n"))
    _ccd(w, tmp_path, {"client0": "iroute 198.19.50.0 255.255.255.0\niroute-ipv6 fd00:99:1::/64\n"})
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    d = w.server.d
    assert d.route("198.19.50.1") is not None
    assert d.route("fd00:99:1::1") is None


def test_ifconfig_ipv6_pool_beside_ifconfig_ipv6_serves_clients(pki, tmp_path):
    """OpenVPN 2.6's manual form of server-ipv6: the pool from ifconfig-ipv6-pool's base, clients
    pushed ifconfig-ipv6's bits and the server's address; a ccd ifconfig-ipv6-push without a
    remote takes the server's address too. Both clients' IPv6 reaches the server's TUN."""
    w = World()
    w.add_server(server_conf(pki, extra="ifconfig-ipv6 fd00:77::1/64 fd00:77::2\nifconfig-ipv6-pool fd00:77::100/112\n"))
    _ccd(w, tmp_path, {"client1": "ifconfig-ipv6-push fd00:77::50/64\n"})
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    assert w.client_nets[0].pushed.ifconfig_ipv6 == ("fd00:77::100/64", SERVER6)
    assert w.client_nets[1].pushed.ifconfig_ipv6 == ("fd00:77::50/64", SERVER6)
    assert _reaches_server6(w, 0, "fd00:77::100", b"pool")
    assert _reaches_client6(w, 1, "fd00:77::50", b"static")
    assert not _reaches_server6(w, 1, "fd00:77::100", b"spoof")


def test_an_iroute_ipv6_over_the_pool_lends_neither_the_servers_address_nor_other_clients(pki, tmp_path):
    """client0's iroute-ipv6 covers the whole tunnel network (an operator's wide prefix): other
    clients' addresses stay theirs (longest prefix), and the server's own ::1 is nobody's -- a
    packet from client0 with it would reach other clients as the server's."""
    w = World()
    w.add_server(server_conf(pki, extra=V6))
    _ccd(w, tmp_path, {"client0": "iroute-ipv6 fd00:77::/48\n"})
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    mine1 = w.client_nets[1].pushed.ifconfig_ipv6[0].partition("/")[0]
    assert _reaches_server6(w, 0, "fd00:77::9", b"inside")
    assert not _reaches_server6(w, 0, mine1, b"client1s")
    assert not _reaches_server6(w, 0, SERVER6, b"servers")


def test_learn_address_is_told_of_iroute_ipv6_and_a_refusal_unroutes_it(pki, tmp_path, monkeypatch):
    """As OpenVPN 2.6 (multi_learn_in6_addr): each iroute-ipv6 goes to learn-address with its
    bits, after the client's addresses and IPv4 iroutes; one the command refuses is not routed,
    and nothing from it passes as the client's source."""
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(time_limit=10.0, inline=True))
    la, log = _logger(tmp_path, refuse='[ "$1" = add ] && [ "$2" = fd00:99:2::/64 ] && exit 1\n')
    w = World()
    w.add_server(server_conf(pki, extra=V6 + f"script-security 2\nlearn-address {la}\n"))
    _ccd(w, tmp_path, {"client0": "iroute 198.19.50.0 255.255.255.0\niroute-ipv6 fd00:99:1::/64\n"
                                  "iroute-ipv6 fd00:99:2::/64\n"})
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    w.run_for(2)
    assert _calls(log) == ["learn-address add 198.19.0.2 client0", "learn-address add fd00:77::1000 client0",
                           "learn-address add 198.19.50.0/24 client0", "learn-address add fd00:99:2::/64 client0",
                           "learn-address add fd00:99:1::/64 client0"]
    assert _reaches_server6(w, 0, "fd00:99:1::1", b"learned")
    assert not _reaches_server6(w, 0, "fd00:99:2::1", b"refused")
    assert w.server.d.route("fd00:99:2::1") is None


def test_a_client_connect_scripts_iroute_ipv6_and_ifconfig_ipv6_push_apply(pki, tmp_path, monkeypatch):
    """client-connect's file is read as a ccd file: its iroute-ipv6 is routed (and its source
    taken) and its ifconfig-ipv6-push replaces the pool's address, which goes back to the pool."""
    monkeypatch.setattr(ops_mod, "ScriptRunner", lambda: ScriptRunner(time_limit=10.0, inline=True))
    cc = tmp_path / "cc.sh"
    cc.write_text('#!/bin/sh\nprintf "iroute-ipv6 fd00:99:7::/64\\nifconfig-ipv6-push fd00:77::70/64\\n" > "$1"\n')
    cc.chmod(0o755)
    w = World()
    w.add_server(server_conf(pki, extra=V6 + f"script-security 2\nclient-connect {cc}\n"))
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    assert w.client_nets[0].pushed.ifconfig_ipv6 == ("fd00:77::70/64", SERVER6)
    assert _reaches_server6(w, 0, "fd00:99:7::1", b"script-net")
    assert _reaches_client6(w, 0, "fd00:99:7::1", b"down-script-net")
    assert w.server.d.st.pool6.lease() == "fd00:77::1000"       # the pool's first, handed back


def test_a_client_with_ifconfig_push_only_keeps_its_pool_ipv6_address_to_itself(pki, tmp_path):
    """A ccd file with ifconfig-push and no ifconfig-ipv6-push: the client gets an IPv6 pool
    address, as from OpenVPN 2.6.14 (multi_select_virtual_addr picks the pool entry before the
    ccd file is read, and keeps pushing its IPv6 address), but held: OpenVPN releases the entry for
    the static IPv4 address, and its next client got the same IPv6 address (seen in the lab:
    both `ifconfig-ipv6 2001:db8:100::1000/64`). Here the next client gets another."""
    w = World()
    w.add_server(server_conf(pki, extra=V6))
    _ccd(w, tmp_path, {"client0": "ifconfig-push 198.19.0.77 255.255.255.0\n"})
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 1), max_time=30)
    a0, a1 = (w.client_nets[i].pushed.ifconfig_ipv6 for i in (0, 1))
    assert a0 is not None and a1 is not None and a0 != a1, (a0, a1)
    assert w.client_nets[0].pushed.ifconfig[0] == "198.19.0.77"
