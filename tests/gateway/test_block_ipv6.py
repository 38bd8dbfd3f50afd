"""A pushed `block-ipv6` through the real pumps: IPv6 read from the client's TUN is answered there
with ICMPv6 "no route to destination" and never reaches the server; IPv4 still flows."""
from __future__ import annotations

import ipaddress
import struct

from appliance.gateway.block_ipv6 import no_route_reply
from appliance.tun.offload import ones_sum
from tests.gateway.conftest import World, client_conf, ipv4_udp, server_conf

SERVER_TUN = "198.19.0.1"
HOST6, FAR6 = "2001:db8:5::2", "2001:db8:9::1"


def _udp6(src: str, dst: str, payload: bytes) -> bytes:
    body = struct.pack("!HHHH", 5000, 53, 8 + len(payload), 0) + payload
    return (struct.pack("!IHBB", 0x60000000, len(body), 17, 64) + ipaddress.IPv6Address(src).packed
            + ipaddress.IPv6Address(dst).packed + body)


def _checksum_ok(p: bytes) -> bool:
    pseudo = p[8:40] + struct.pack("!I3xB", len(p) - 40, p[6])
    return (ones_sum(pseudo) + ones_sum(p[40:])) % 0xFFFF == 0


def test_pushed_block_ipv6_answers_ipv6_locally_and_sends_none(pki):
    w = World()
    w.add_server(server_conf(pki, extra='push "block-ipv6"'))
    c = w.add_client(client_conf(pki))
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)
    ctun, stun = w.client_nets[0].tun, w.server_net.tun
    v6 = _udp6(HOST6, FAR6, b"q")
    v4 = ipv4_udp(w.client_addr(), SERVER_TUN, b"v4")
    ctun.inject(v6)
    ctun.inject(v4)
    assert w.run(lambda: v4 in stun.written, max_time=5)
    w.run_for(1)
    assert not any(p[0] >> 4 == 6 for p in stun.written), "an IPv6 packet reached the server"
    replies = [p for p in ctun.written if p[0] >> 4 == 6]
    assert len(replies) == 1
    r = replies[0]
    assert r[6] == 58 and r[40:42] == b"\x01\x00"                    # ICMPv6 dest unreachable, no route
    assert r[24:40] == ipaddress.IPv6Address(HOST6).packed and r[48:] == v6
    assert _checksum_ok(r)
    assert c.counters.ipv6_refused == 1


def test_no_reply_to_an_icmpv6_error_or_a_multicast_source():
    """RFC 4443 2.4: no error about an error (no loops), none to a source that is no host."""
    err = no_route_reply(_udp6(HOST6, FAR6, b"x"))
    assert err is not None and no_route_reply(err) is None
    assert no_route_reply(_udp6("ff02::1", FAR6, b"x")) is None
    assert no_route_reply(_udp6("::", FAR6, b"x")) is None
    assert no_route_reply(b"\x60" + bytes(20)) is None
    big = no_route_reply(_udp6(HOST6, FAR6, bytes(3000)))
    assert big is not None and len(big) == 1280


def test_no_reply_to_a_packet_sent_to_a_multicast_group():
    """RFC 4443 2.4 (e.3): no error for a packet to a multicast address. The host's own IPv6
    stack sends such packets into the TUN by itself (MLD reports to ff02::16, mDNS to ff02::fb,
    from the device's link-local address): each one came back as "no route", to every group
    member's sender, which a host never expects for multicast."""
    assert no_route_reply(_udp6("fe80::5", "ff02::fb", b"mdns")) is None
    assert no_route_reply(_udp6(HOST6, "ff0e::1:3", b"x")) is None
    assert no_route_reply(_udp6(HOST6, FAR6, b"x")) is not None          # unicast still answered


def test_without_block_ipv6_ipv6_is_sealed_as_before(pki):
    w = World()
    w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki))
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)
    w.client_nets[0].tun.inject(_udp6(HOST6, FAR6, b"q"))
    w.run_for(1)
    assert c.counters.ipv6_refused == 0 and not w.client_nets[0].tun.written
