"""Attacks on what the thirty-ninth session added to the server (atk44), in memory:

- A client admitted to a full pool with no address (compat42, review44a/d): whatever source it
  writes -- the server's own tunnel address, the pool's broadcast, another client's IPv4 or IPv6
  address, 0.0.0.0 -- nothing passes, and nothing in the pool's network is routed to it.
- A leaver's peer-id, given at once to the next client (as 2.6), while the leaver's address is
  remembered for DEPARTED_QUIET s: a peer without keys forging data from that address, naming the
  leaver's old peer-id or another client's, moves no client, reaches no session's traffic, and
  each packet is counted.
"""
from __future__ import annotations

import ipaddress
import os
import struct
import time

from appliance.openvpn import wrapping
from appliance.openvpn.addresspool import AddressPool, AddressPool6
from appliance.openvpn.server import DEPARTED_DATA
from appliance.openvpn.session import EXIT_HOLD
from tests.engine.test_server_dispatcher import _client, _icmp, _pump, _server, _up, pki  # noqa: F401

A_HOME, B_HOME, C_HOME = ("198.18.0.44", 1194), ("198.18.0.45", 1194), ("198.18.0.46", 1194)
FORGED = 5000


def _ipv6(src: str, dst: str) -> bytes:
    """An IPv6 packet with no payload (next header 59) from `src` to `dst`."""
    return (struct.pack("!IHBB", 6 << 28, 0, 59, 64) + ipaddress.IPv6Address(src).packed
            + ipaddress.IPv6Address(dst).packed)


def _full_with_newcomer(pki):  # noqa: F811
    d = _server(pki, "none", pool6=AddressPool6("2001:db8:44::/64"))
    d.st.pool = AddressPool("198.19.0.0", "255.255.255.0", "subnet", "198.19.0.2", "198.19.0.3")
    a = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    b = _client(pki, pki["clients"][7], wrapping.PlainWrapper)
    _pump(d, [(a, A_HOME), (b, B_HOME)])
    c = _client(pki, pki["clients"][8], wrapping.PlainWrapper)
    _pump(d, [(c, C_HOME)], now=2.0)
    assert _up(a) and _up(b) and _up(c)
    assert c.pushed.ifconfig is None and d.by_addr[C_HOME].vaddr is None
    return d, a, b, c


def test_an_addressless_client_sends_from_no_address_and_is_routed_nothing(pki):  # noqa: F811
    d, a, b, c = _full_with_newcomer(pki)
    ra, rc = d.by_addr[A_HOME], d.by_addr[C_HOME]
    sources = [ra.vaddr, d.by_addr[B_HOME].vaddr, "198.19.0.1", "198.19.0.9", "198.19.0.0", "198.19.0.255",
               "0.0.0.0", "255.255.255.255", "198.18.100.1"]
    before = sum(d.drop_counters().values())
    for src in sources:
        for dst in ("198.19.0.1", ra.vaddr, "198.18.100.1", "255.255.255.255"):
            assert d.receive(c.encrypt(_icmp(src, dst)), C_HOME, 2.1)[1] == [], (src, dst)
    for dst6 in ("2001:db8:44::1", ra.vaddr6):
        assert d.receive(c.encrypt(_ipv6(ra.vaddr6, dst6)), C_HOME, 2.1)[1] == [], dst6
    refused = sum(d.drop_counters().values()) - before
    assert refused == len(sources) * 4 + 2, d.drop_counters()       # each one counted
    # Nothing of the pool's network, nor of the IPv6 pool's first addresses, is routed to it.
    for host in ipaddress.IPv4Network("198.19.0.0/24"):
        assert d.route_packet(_icmp("198.19.0.1", str(host))) is not rc, host
    for i in range(16):
        assert d.route_packet(_ipv6("2001:db8:44::1", f"2001:db8:44::{i:x}")) is not rc
    assert d.route("0.0.0.0") is None and d.route("None") is None
    # Its own traffic to the server still counts as its session's (it is connected, as in 2.6).
    assert rc.alive and rc.session.established


def test_forged_data_from_a_leavers_address_moves_nobody(pki):  # noqa: F811
    """A leaves (EXIT, hold over); C connects and gets A's peer-id 0 at once. A peer without keys
    then sends FORGED datagrams from A's address naming 0 (now C's) and FORGED naming 1 (B's)."""
    d = _server(pki, "none")
    a = _client(pki, pki["clients"][3], wrapping.PlainWrapper)
    b = _client(pki, pki["clients"][4], wrapping.PlainWrapper)
    _pump(d, [(a, A_HOME), (b, B_HOME)])
    assert a.notify_exit(1.0, first=True)
    for p in a.take_outgoing():
        d.receive(p, A_HOME, 1.0)
    t = 1.0 + EXIT_HOLD
    d.handle_timer(t)
    d.take_outgoing()
    c = _client(pki, pki["clients"][5], wrapping.PlainWrapper)
    _pump(d, [(c, C_HOME)], now=t + 0.1)
    rb, rc = d.by_addr[B_HOME], d.by_addr[C_HOME]
    assert c.peer_id == 0 and d.by_peer_id[0] is rc and A_HOME in d.departed
    rng = os.urandom(FORGED * 64)
    start = time.perf_counter()
    slowest = 0.0
    for pid in (0, 1):
        for i in range(FORGED):
            body = rng[i * 64:(i + 1) * 64]
            pkt = bytes([(9 << 3) | (i & 7)]) + pid.to_bytes(3, "big") + body
            t0 = time.perf_counter()
            assert d.receive(pkt, A_HOME, t + 0.2)[1] == []
            slowest = max(slowest, time.perf_counter() - t0)
    took = time.perf_counter() - start
    counts = d.drop_counters()
    print(f"forged from a leaver's address: {2 * FORGED} datagrams in {took:.2f} s, slowest {slowest * 1e3:.2f} ms; "
          f"{counts}")
    assert counts.get(DEPARTED_DATA) == FORGED                   # the leaver's old peer-id: its quiet drop
    assert sum(counts.values()) >= 2 * FORGED                    # B's too: each one counted
    assert rb.addr == B_HOME and rc.addr == C_HOME and A_HOME not in d.by_addr
    assert rb.alive and rc.alive and len(d.clients) == 2
    # Both still pass their own traffic.
    assert len(d.receive(c.encrypt(_icmp(c.pushed.ifconfig[0], "198.19.0.1")), C_HOME, t + 0.3)[1]) == 1
    assert len(d.receive(b.encrypt(_icmp(b.pushed.ifconfig[0], "198.19.0.1")), B_HOME, t + 0.3)[1]) == 1
    # After DEPARTED_QUIET the memory goes by itself.
    d.forget_departed(t + 11)
    assert not d.departed


def _maps(d) -> dict:
    return {"by_addr": len(d.by_addr), "pending": len(d.pending), "by_peer_id": len(d.by_peer_id),
            "heirs": len(d.heirs), "by_vaddr": len(d.by_vaddr), "clients": len(d.clients),
            "shared": dict(d.st.pool.shared), "leased": len(d.st.pool.leased)}


RESTARTS = 25


def test_restarts_in_place_at_a_full_pool_leave_nothing_behind(pki):  # noqa: F811
    """An authenticated client (duplicate-cn, so nothing ends its old session before the push)
    restarting in place RESTARTS times at a full pool: each restart takes the old session's
    address over (review44a), shared until the old one goes. Nothing may be left shared or held
    for the next restart, nor may the other client's address move."""
    d = _server(pki, "none", duplicate_cn=True)
    d.st.pool = AddressPool("198.19.0.0", "255.255.255.0", "subnet", "198.19.0.2", "198.19.0.3")
    a = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
    b = _client(pki, pki["clients"][7], wrapping.PlainWrapper)
    _pump(d, [(a, A_HOME), (b, B_HOME)])
    addr_a, addr_b = a.pushed.ifconfig[0], b.pushed.ifconfig[0]
    first = _maps(d)
    now = 1.0
    slowest = 0.0
    for n in range(RESTARTS):
        now += 0.5
        again = _client(pki, pki["clients"][6], wrapping.PlainWrapper)
        t0 = time.perf_counter()
        _pump(d, [(again, A_HOME)], now=now)
        slowest = max(slowest, time.perf_counter() - t0)
        assert _up(again) and again.pushed.ifconfig is not None and again.pushed.ifconfig[0] == addr_a, n
    assert _maps(d) == first, (first, _maps(d))
    assert d.by_vaddr[addr_b] is d.by_addr[B_HOME] and d.by_vaddr[addr_a] is d.by_addr[A_HOME]
    print(f"{RESTARTS} restarts in place at a full pool: slowest handshake+push {slowest * 1e3:.1f} ms; maps {_maps(d)}")
    assert len(d.receive(again.encrypt(_icmp(addr_a, "198.19.0.1")), A_HOME, now + 0.1)[1]) == 1
