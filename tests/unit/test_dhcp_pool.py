"""A full DHCP pool costs a new MAC's DISCOVER a bounded look, not a walk over the pool (a LAN
host's flood of random MACs fills any pool; each DISCOVER of 4,096-address pool's then took 2.4 ms
of the pump), and the run-skipping finds exactly the free addresses a walk would."""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.lan import dhcp_codec as c
from appliance.lan.dhcp_pool import TakenAddresses
from appliance.lan.dhcp_server import DhcpServer

from .test_dhcp_server import mac, msg

LAN = IPv4Interface("10.20.0.1/20")


def test_a_discover_into_a_full_large_pool_looks_at_few_addresses(monkeypatch):
    first = IPv4Address("10.20.0.2")
    s = DhcpServer(LAN, first, first + 4095, 3600)
    now = 100.0
    for i in range(4096):                      # the attacker's offers (option 50 could place them anywhere)
        s._tokens = 400.0
        assert s.handle(msg(c.DISCOVER, mac(i)), now)
    looked = []
    real = DhcpServer._free_for
    monkeypatch.setattr(DhcpServer, "_free_for", lambda self, m, a, t: looked.append(a) or real(self, m, a, t))
    s._tokens = 400.0
    offer = s.handle(msg(c.DISCOVER, mac(10**6)), now + 1)
    assert offer and offer[0].kind == c.OFFER  # the oldest offer nobody requested made room, as before
    assert len(looked) < 50                    # was 4,097: the whole pool, per DISCOVER


def test_a_free_address_behind_a_long_run_is_found():
    first = IPv4Address("10.20.0.2")
    s = DhcpServer(LAN, first, first + 999, 3600, max_leases=4096)
    for i in range(1000):                      # the whole pool, in order, by request
        s._tokens = 400.0
        a = first + i
        s.handle(msg(c.DISCOVER, mac(i), requested=str(a)), 100.0)
        s.handle(msg(c.REQUEST, mac(i), requested=str(a), server=str(LAN.ip)), 100.0)
    free = first + 997
    s._tokens = 400.0
    s.handle(msg(c.RELEASE, mac(997), ciaddr=str(free), server=str(LAN.ip)), 100.0)
    offer = s.handle(msg(c.DISCOVER, mac(10**6)), 101.0)
    assert offer and IPv4Address(offer[0].data[16:20]) == free


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["discover", "bind", "decline", "release"]), st.integers(0, 30),
                          st.integers(0, 24)), max_size=80))
def test_the_taken_set_is_what_the_table_holds_and_a_free_address_is_always_offered(ops):
    first = IPv4Address("10.20.0.2")
    s = DhcpServer(LAN, first, first + 19, 30, static=[("52:54:00:00:00:05", first + 3)], max_leases=16)
    now = 100.0
    for op, m, r in ops:
        now += 1.0
        s._tokens = 400.0
        who = mac(m)
        a = str(first + r)
        if op == "discover":
            s.handle(msg(c.DISCOVER, who, requested=a if r < 20 else None), now)
        elif op == "bind":
            s.handle(msg(c.REQUEST, who, requested=a, server=str(LAN.ip)), now)
        elif op == "decline":
            s.handle(msg(c.DECLINE, who, requested=a, server=str(LAN.ip)), now)
        else:
            s.handle(msg(c.RELEASE, who, ciaddr=a, server=str(LAN.ip)), now)
        held = set(s.by_addr) | set(s.declined) | s.static_addrs | {int(LAN.ip)}
        assert {a for a in range(int(first) - 2, int(first) + 40) if a in s.taken} == held
    newcomer = mac(999)
    free = [a for a in range(int(first), int(first) + 20)
            if a not in s.by_addr and a not in s.declined and s._free_for(newcomer, a, now)]
    s._tokens = 400.0
    got = s.handle(msg(c.DISCOVER, newcomer), now)
    if free:
        assert got and int(IPv4Address(got[0].data[16:20])) in range(int(first), int(first) + 20)


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(0, 40)), st.integers(0, 40), st.integers(0, 40))
def test_first_free_is_the_first_address_a_walk_finds(taken, lo, hi):
    t = TakenAddresses()
    for a in taken:
        t.add(a)
    walk = next((a for a in range(lo, hi + 1) if a not in taken), None)
    assert t.first_free(lo, hi) == walk
