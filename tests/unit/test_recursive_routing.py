"""Packets from the TUN to the VPN server's own address (gateway/recursive_routing.py): dropped as
OpenVPN 2.6's drop_if_recursive_routing drops them, unless allow-recursive-routing. The loop it
ends (20,000 packets from one ping while the server's host route was gone) is measured in
tests/interop/test_keeper_storms.py against Debian's OpenVPN 2.6 server."""
from __future__ import annotations

import logging
import struct

from appliance.gateway.recursive_routing import RecursiveGuard
from appliance.logpace import NoteLimit

from .test_options import GOOD_CLIENT, _no_files


def _v4(dst: str, src: str = "198.19.0.2", size: int = 60) -> bytes:
    import socket
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 0, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return hdr + bytes(size - 20)


def _v6(dst: str, src: str = "fd00::2") -> bytes:
    import socket
    return (struct.pack("!IHBB", 0x60000000, 8, 17, 64) + socket.inet_pton(socket.AF_INET6, src)
            + socket.inet_pton(socket.AF_INET6, dst) + bytes(8))


def test_packets_to_the_server_are_dropped_the_rest_pass_in_order(caplog):
    g = RecursiveGuard("198.18.50.1", frames=False, clock=lambda: 0.0)
    a, b = _v4("198.18.100.7"), _v4("198.18.60.1")
    batch = [a, _v4("198.18.50.1"), b, _v4("198.18.50.1", size=1400)]
    caplog.set_level(logging.WARNING, logger="vpn-appliance")
    assert g.keep(batch) == [a, b] and g.dropped == 2
    assert g.keep([a, b]) == [a, b]                                    # the usual batch: untouched
    assert g.keep([memoryview(bytearray(_v4("198.18.50.1")))]) == []  # a batch's slices too
    lines = [r.getMessage() for r in caplog.records]
    assert 1 <= len(lines) <= NoteLimit.BURST and "198.18.50.1" in lines[0] and "recursive routing" in lines[0]


def test_an_ipv6_source_or_payload_holding_the_address_is_not_taken_for_the_destination():
    g = RecursiveGuard("198.18.50.1", frames=False, clock=lambda: 0.0)
    tricky = bytearray(_v6("fd00::9"))
    tricky[16:20] = bytes([198, 18, 50, 1])                            # inside the IPv6 source address
    assert g.keep([bytes(tricky)]) == [bytes(tricky)]
    g6 = RecursiveGuard("2001:db8::1", frames=False, clock=lambda: 0.0)
    assert g6.keep([_v6("2001:db8::1"), _v6("2001:db8::2")]) == [_v6("2001:db8::2")]
    mapped = RecursiveGuard("::ffff:198.18.50.1", frames=False, clock=lambda: 0.0)
    assert mapped.keep([_v4("198.18.50.1")]) == []


def test_a_tap_device_frame_to_the_server_is_dropped_other_frames_pass():
    g = RecursiveGuard("198.18.50.1", frames=True, clock=lambda: 0.0)
    eth = bytes(12)
    to_server, other = eth + b"\x08\x00" + _v4("198.18.50.1"), eth + b"\x08\x00" + _v4("198.18.60.1")
    arp_like = eth + b"\x08\x06" + bytes(2) + _v4("198.18.50.1")[2:]    # not IPv4: its bytes mean nothing
    assert g.keep([to_server, other, arp_like]) == [other, arp_like]


def test_a_storm_of_drops_is_said_a_few_times_then_once_per_interval():
    now = [0.0]
    g = RecursiveGuard("198.18.50.1", frames=False, clock=lambda: now[0])
    said = []
    import appliance.gateway.recursive_routing as rr
    old = rr.log.warning
    rr.log.warning = lambda *a: said.append(a)
    try:
        for _ in range(1000):
            g.keep([_v4("198.18.50.1")])
            now[0] += 0.01
    finally:
        rr.log.warning = old
    assert g.dropped == 1000 and len(said) == NoteLimit.BURST     # 10 s of drops: the burst, then held


def test_allow_recursive_routing_is_a_client_directive_that_turns_the_drop_off():
    from appliance.openvpn.config import parse_config
    assert parse_config(GOOD_CLIENT, "/p/c.ovpn", _no_files).allow_recursive_routing is False
    o = parse_config(GOOD_CLIENT + "allow-recursive-routing\n", "/p/c.ovpn", _no_files)
    assert o.allow_recursive_routing is True


def test_after_a_storm_the_drops_held_are_said_in_a_line_of_their_own(caplog):
    """review41: past the burst the drops were counted and said only with a next drop; once the
    loop stopped (the route back) the last 30 s of them were never said."""
    now, timers = [5_000.0], []
    g = RecursiveGuard("198.18.50.1", frames=False, clock=lambda: now[0], arm=lambda at, fn: timers.append((at, fn)))
    caplog.set_level(logging.WARNING, logger="vpn-appliance")
    for _ in range(1000):                                              # 10 s of drops, then calm
        g.keep([_v4("198.18.50.1")])
        now[0] += 0.01
    assert len(timers) == 1                                            # one timer, not one per held drop
    at, fn = timers.pop()
    now[0] = max(now[0], at)
    fn()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == NoteLimit.BURST + 1 and "more packet(s)" in lines[-1] and "1000 in all" in lines[-1]
    said = sum(int(m.split("recursive routing: ")[1].split(" ")[0]) for m in lines)
    assert said == 1000 == g.dropped
