"""Multicast through a `dev tun` server, as OpenVPN 2.6's multi.c does it (mroute.c marks a packet
multicast by its destination: IPv4 224.0.0.0/4, IPv6 ff00::/8; a tun has no broadcast):
- a multicast read from the server's TUN (a routing daemon's OSPF hello to 224.0.0.5, an mDNS
  relay's packet, an IPv6 router advertisement to ff02::1) goes to every connected client, with
  or without client-to-client; 255.255.255.255 from the TUN goes to no client;
- with client-to-client a client's multicast goes to the TUN and to every other client, not back
  to the sender; without it, to the TUN only;
- a client's multicast flood gives each other client at most one copy of each packet, at a
  bounded rate (the rest counted), and the TUN every packet.
Ours sent a multicast from the TUN to no client, and a client's to the TUN only
(tests/interop/test_multicast_tun_vs_openvpn.py: Debian's clients, Debian's server and ours)."""
from __future__ import annotations

import ipaddress
import struct

import pytest

from appliance.openvpn.datapath import BCAST_BURST, BCAST_OVER_RATE
from lab.fakes import FakeServerNet, PooledChannelTun
from tests.gateway.conftest import World, client_conf, ipv4_udp, server_conf
from tests.gateway.test_tunnel import SERVER_TUN, _up

SERVER_TUN6 = "fd00:198:19::1"
IPV6 = "server-ipv6 fd00:198:19::/64\n"


def ipv6_udp(src: str, dst: str, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 5353, 5353, 8 + len(payload), 0) + payload
    return (struct.pack("!IHBB", 6 << 28, len(udp), 17, 1) + ipaddress.IPv6Address(src).packed
            + ipaddress.IPv6Address(dst).packed + udp)


@pytest.fixture(autouse=True)
def _pooled_server_tun(monkeypatch):
    """The server's TUN hands out views into reused buffers, as TunDevice does: a multicast's
    copies must be sealed before the next read."""
    monkeypatch.setattr(FakeServerNet, "tun_class", PooledChannelTun)


def _world(pki: dict, c2c: bool = True, extra: str = "", clients: int = 3, client_extra: str = "") -> World:
    w = World()
    conf = server_conf(pki, extra=extra)
    if not c2c:
        conf = conf.replace("client-to-client\n", "")
    w.add_server(conf)
    assert isinstance(w.server_net.tun, PooledChannelTun)
    for i in range(clients):
        w.add_client(client_conf(pki, f"client{i}", extra=client_extra))
    assert w.run(lambda: all(_up(w, i) for i in range(clients)), max_time=60)
    return w


def _got(w: World, i: int, pkt: bytes) -> int:
    return w.client_nets[i].tun.written.count(pkt)


def _from_client(w: World, i: int, pkt: bytes, marker_to: str = SERVER_TUN) -> None:
    """Client i sends pkt, then a marker to the server: once the marker is out of the server's
    TUN, pkt had its chance to go everywhere."""
    marker = ipv4_udp(w.client_addr(i), marker_to, b"marker-" + pkt[-8:])
    w.client_nets[i].tun.inject(pkt)
    w.client_nets[i].tun.inject(marker)
    assert w.run(lambda: marker in w.server_net.tun.written, max_time=5), "the client's own packet was lost"
    w.run_for(0.5)


def _from_server(w: World, pkts: list[bytes]) -> None:
    for p in pkts:
        w.server_net.tun.inject(p)
    w.run_for(1.0)


def test_a_multicast_from_the_tun_reaches_every_client(pki):
    for c2c in (True, False):
        w = _world(pki, c2c=c2c, extra=IPV6)
        ospf = ipv4_udp(SERVER_TUN, "224.0.0.5", b"hello-ospf", sport=89, dport=89)
        mdns = ipv4_udp(SERVER_TUN, "224.0.0.251", b"mdns-answer", sport=5353, dport=5353)
        ra = ipv6_udp(SERVER_TUN6, "ff02::1", b"all-nodes-6")
        site = ipv4_udp(SERVER_TUN, "239.1.2.3", b"site-group")
        _from_server(w, [ospf, mdns, ra, site])
        for i in range(3):
            for p in (ospf, mdns, ra, site):
                assert _got(w, i, p) == 1, f"client{i} (client-to-client {c2c}) did not get {p[-12:]!r} once"


def test_broadcast_from_the_tun_reaches_no_client_as_in_2_6(pki):
    w = _world(pki, clients=2)
    before = w.server.dp.stats["no route"]
    bc = ipv4_udp(SERVER_TUN, "255.255.255.255", b"all-ones")
    subnet = ipv4_udp(SERVER_TUN, "198.19.0.255", b"subnet-bcast")
    _from_server(w, [bc, subnet])
    assert not any(_got(w, i, p) for i in range(2) for p in (bc, subnet))
    assert w.server.dp.stats["no route"] - before == 2


def test_with_client_to_client_a_clients_multicast_reaches_the_others_and_the_tun(pki):
    w = _world(pki)
    hello = ipv4_udp(w.client_addr(0), "224.0.0.9", b"rip-response", sport=520, dport=520)
    _from_client(w, 0, hello)
    assert w.server_net.tun.written.count(hello) == 1, "the server's TUN did not get it (2.6 writes it there)"
    assert _got(w, 1, hello) == 1 and _got(w, 2, hello) == 1, "not copied once to each other client"
    assert _got(w, 0, hello) == 0, "sent back to its sender"


def test_without_client_to_client_a_clients_multicast_reaches_the_tun_only(pki):
    w = _world(pki, c2c=False, clients=2)
    hello = ipv4_udp(w.client_addr(0), "224.0.0.251", b"mdns-query", sport=5353, dport=5353)
    _from_client(w, 0, hello)
    assert w.server_net.tun.written.count(hello) == 1
    assert _got(w, 1, hello) == 0 and _got(w, 0, hello) == 0


def test_a_multicast_with_a_source_the_client_does_not_own_goes_nowhere(pki):
    w = _world(pki, clients=2)
    spoof = ipv4_udp(w.client_addr(1), "224.0.0.5", b"forged-hello", sport=89, dport=89)
    _from_client(w, 0, spoof)
    assert spoof not in w.server_net.tun.written and _got(w, 1, spoof) == 0
    assert w.server.d.stats["inner packet with a source the client does not own"] >= 1


def test_a_clients_multicast_flood_gives_each_other_client_one_copy_at_a_bounded_rate(pki):
    """600 distinct multicast packets at once: the TUN gets every one, the other client one copy of
    each it gets at all -- at most the burst (the fake clock barely moves) -- and every copy not
    made is counted; the flood costs the server at most one seal per packet per other client."""
    w = _world(pki, clients=2)
    n = 600
    pkts = [ipv4_udp(w.client_addr(0), "224.0.0.251", b"flood-%05d" % k, sport=5353, dport=5353) for k in range(n)]
    before = w.server.dp.stats[BCAST_OVER_RATE]
    for p in pkts:
        w.client_nets[0].tun.inject(p)
    assert w.run(lambda: sum(1 for p in w.server_net.tun.written if p[-11:-5] == b"flood-") >= n, max_time=20), \
        "the server's TUN did not get the whole flood"
    w.run_for(1.0)
    got = [p for p in w.client_nets[1].tun.written if p[-11:-5] == b"flood-"]
    assert len(got) == len(set(got)), "a packet was copied more than once to the same client"
    over = w.server.dp.stats[BCAST_OVER_RATE] - before
    assert len(got) + over == n, (len(got), over)
    assert 0 < over and len(got) <= BCAST_BURST + 10, (len(got), over)
    assert not any(p[-11:-5] == b"flood-" for p in w.client_nets[0].tun.written)
    # and the sender's later multicast passes again once its budget refilled
    w.run_for(3.0)
    again = ipv4_udp(w.client_addr(0), "224.0.0.251", b"after-flood", sport=5353, dport=5353)
    _from_client(w, 0, again)
    assert _got(w, 1, again) == 1


def test_the_budgets_of_clients_that_left_are_not_held_once_full_again(pki):
    """soak40: a departed client's bucket is kept by its common name only while it carries
    spending (BCAST_REFILL); with nobody multicasting afterwards, it used to stay for good (only a
    later departure looked, by the time of the last multicast). The server's 5 s timer drops it."""
    w = _world(pki, clients=3, client_extra="explicit-exit-notify 1\n")
    for i in (1, 2):
        _from_client(w, i, ipv4_udp(w.client_addr(i), "224.0.0.251", b"mdns-%d" % i, sport=5353, dport=5353))
    held = w.server.held_counts()
    assert held["broadcast buckets"] == 2 and held["buckets kept by name"] == 0, held
    for i in (1, 2):
        w.clients[i].request_stop()
    assert w.run(lambda: w.server.held_counts()["clients"] == 1, max_time=10)
    assert w.server.held_counts()["broadcast buckets"] == 0
    w.run_for(12)                           # the refill time, and the 5 s timer after it
    held = w.server.held_counts()
    assert held["buckets kept by name"] == 0 and held["clients"] == 1, held
