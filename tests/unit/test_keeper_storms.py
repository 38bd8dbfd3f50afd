"""The keepers of the client's and the router's WAN state under storms (atk40): a link flapping for
minutes, a server that pushed ~1,000 routes. What is decided: how often a check runs when checks
are expensive (gateway/route_keeper.py Pacing), and how many log lines a storm writes (logpace.py,
the route keeper, the WAN's DHCP and static relink). tests/interop/test_keeper_storms.py has the
real storm against Debian's OpenVPN 2.6 server."""
from __future__ import annotations

import logging
import threading
import time

import pytest

from appliance.boot import dhcp_client as dc
from appliance.gateway.route_keeper import Pacing, RouteKeeper
from appliance.logpace import NoteLimit, times

from .test_route_keeper import FakePump, FakeWatch, _spec
from .test_wan_dhcp_release import MAC, FakeNic


def test_a_repeated_line_is_said_a_few_times_then_once_per_interval_with_the_count_held():
    r = NoteLimit(30.0)
    said = [(t / 10, r.due(t / 10)) for t in range(0, 650)]            # a repeat every 0.1 s for 65 s
    lines = [(t, held) for t, held in said if held is not None]
    assert len(lines) == NoteLimit.BURST + 2, lines                     # the burst, then ~one per 30 s
    assert [held for _, held in lines[:NoteLimit.BURST]] == [0] * NoteLimit.BURST
    assert all(held > 250 for _, held in lines[NoteLimit.BURST:]), lines
    assert 29.0 <= lines[NoteLimit.BURST][0] <= 31.0 and 59.0 <= lines[-1][0] <= 61.0
    assert r.summary(lines[-1][0] + 1.0) == 0                           # one may not be said yet
    at = r.next_summary()
    assert at is not None and r.summary(at) > 0 and r.summary(at + 100.0) == 0   # said once, then nothing held
    assert r.next_summary() is None
    assert times(0) == "" and "1 more time since" in times(1) and "2 more times" in times(2)


def test_an_expensive_check_spaces_the_next_ones_by_ten_times_its_cost():
    p = Pacing()
    p.checked(100.0, failed=False, took=0.01)                           # cheap: the usual gap
    assert p.hinted(100.5) == pytest.approx(100.0 + Pacing.MIN_GAP)
    p = Pacing()
    p.checked(100.0, failed=False, took=0.4)                            # ~1,000 routes on a slow host
    assert p.hinted(100.5) == pytest.approx(100.0 + 4.0)
    p = Pacing()
    assert p.checked(100.0, failed=True, took=0.4) == pytest.approx(104.0)   # a retry is no sooner either


def test_a_flapping_link_with_many_routes_costs_the_pump_a_tenth_at_most():
    """Checks that take 0.3 s each (restore's clock moves), a hint every 20 ms for 60 s: the
    time spent checking is at most ~1/COST_GAP of the time."""
    pump, now, spent = FakePump(), [0.0], [0.0]

    def restore():
        now[0] += 0.3
        spent[0] += 0.3
        return [_spec("198.18.50.1")], []
    w = FakeWatch([True] * 100000)
    RouteKeeper(pump, lambda: now[0], w, restore)
    while now[0] < 60.0:
        pump.watched[w]()
        due = pump.timers.armed.get("route-keep")
        if due is not None and now[0] >= due[0]:
            pump.timers.armed.pop("route-keep")[1]()
        now[0] += 0.02
    assert 0 < spent[0] <= 60.0 / Pacing.COST_GAP + 0.3, spent[0]


def test_a_flapping_link_writes_one_line_per_log_every_not_one_per_check(caplog):
    pump, now = FakePump(), [0.0]
    back = [_spec("198.18.50.1")]
    w = FakeWatch([True] * 100000)
    k = RouteKeeper(pump, lambda: now[0], w, lambda: (list(back), []))
    caplog.set_level(logging.WARNING, logger="vpn-appliance")
    while now[0] < 61.0:                                                 # a flap a second for a minute
        pump.watched[w]()
        for key in ("route-keep", "route-keep-say"):
            due = pump.timers.armed.get(key)
            if due is not None and now[0] >= due[0]:
                pump.timers.armed.pop(key)[1]()
        now[0] += 0.05
    lines = [r.getMessage() for r in caplog.records if "added again" in r.getMessage()]
    assert k.checks >= 40 and k.restored == k.checks
    assert NoteLimit.BURST + 1 <= len(lines) <= NoteLimit.BURST + 3, lines   # a few; then ~one per 30 s
    assert "more times since the last such line" in lines[NoteLimit.BURST] and "198.18.50.1/32" in lines[NoteLimit.BURST]
    k.close()
    assert not pump.timers.armed


class FlappingNic(FakeNic):
    """The default route gone at every flap (the kernel drops it at link down)."""

    def flap(self) -> None:
        self.default = False


def test_the_wan_dhcp_relink_says_a_storm_in_a_few_lines(monkeypatch, caplog):
    nic = FlappingNic(addrs=[("198.18.62.10", 24)])
    monkeypatch.setattr(dc, "IPRoute", nic)
    now = [1000.0]
    c = dc._Client("wan0", MAC, [], dc.Policy(), threading.Event(), clock=lambda: now[0])
    lease = dc.Lease("wan0", "198.18.62.10", 24, "198.18.62.1", [], "198.18.62.1", 600, expires=now[0] + 600)
    caplog.set_level(logging.WARNING, logger="vpn-appliance")
    for _ in range(200):                                # ten flaps a second for 20 s: each put right
        nic.flap()
        assert c.reapply(lease, link_back=True) is True
        now[0] += 0.1
    now[0] += 30.0
    assert c.reapply(lease) is False                    # the next quiet check says the count
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == NoteLimit.BURST + 1, lines
    assert "added again" in lines[0] and f"{200 - NoteLimit.BURST} more times" in lines[-1]


def test_the_static_wan_relink_says_a_storm_in_a_few_lines(monkeypatch, caplog):
    import ipaddress

    from appliance.router import static_wan

    class Nic(FlappingNic):
        def get_addr(self, index: int, family: int = 0) -> list:
            return super().get_addr(index, family)

        def route(self, cmd: str, dst: str, gateway: str, oif: int) -> None:
            super().route(cmd, dst, gateway, oif)

    nic = Nic(addrs=[("198.18.0.2", 24)])
    monkeypatch.setattr(static_wan, "IPRoute", nic)
    now = [50.0]
    wan = static_wan.StaticWan("wan0", [ipaddress.ip_interface("198.18.0.2/24")], [ipaddress.ip_address("198.18.0.1")])
    wan.clock = lambda: now[0]
    caplog.set_level(logging.WARNING, logger="vpn-appliance")
    for _ in range(100):
        nic.flap()
        assert wan.reapply(True) is True
        now[0] += 0.1
    assert len(caplog.records) == NoteLimit.BURST
    now[0] += 60
    wan.reapply(False)
    assert len(caplog.records) == NoteLimit.BURST + 1
    assert f"{100 - NoteLimit.BURST} more times" in caplog.records[-1].getMessage()
    assert time.monotonic() > 0


def test_a_lease_s_classless_and_static_routes_never_reach_the_kernel(monkeypatch):
    """A hostile WAN DHCP server (atk40): option 121 (classless static routes -- TunnelVision's
    way to pull a VPN's traffic, here the VPN server's address and two halves of the Internet, via
    an on-link attacker) and option 33 in an ACK. The WAN gets the address and the default route
    via the lease's router, nothing else: the tunnel's routes stay the most specific."""
    import socket

    from appliance.boot.dhcp_client import build_message, check_reply_untrusted, parse_reply_untrusted

    attacker = socket.inet_aton("198.18.62.66")
    opt121 = (bytes([32]) + socket.inet_aton("198.18.50.1") + attacker       # the VPN server's /32
              + bytes([1, 0]) + attacker + bytes([1, 128]) + attacker)         # 0/1 and 128/1
    opt33 = socket.inet_aton("198.18.50.1") + attacker
    body = bytearray(build_message(dc.ACK, 9, MAC)[:240])
    body[0] = 2
    body[16:20] = socket.inet_aton("198.18.62.10")
    opts = (bytes([53, 1, dc.ACK, 1, 4]) + socket.inet_aton("255.255.255.0") + bytes([3, 4])
            + socket.inet_aton("198.18.62.1") + bytes([54, 4]) + socket.inet_aton("198.18.62.1")
            + bytes([121, len(opt121)]) + opt121 + bytes([33, len(opt33)]) + opt33 + b"\xff")
    offer = check_reply_untrusted(parse_reply_untrusted(bytes(body) + opts))
    assert not isinstance(offer, str), offer
    calls: list[tuple] = []

    class Nic(FakeNic):
        def flush_addr(self, index: int, family: int) -> None:
            calls.append(("flush",))

        def link(self, cmd: str, index: int, state: str) -> None:
            pass

        def route(self, cmd: str, **kw) -> None:
            calls.append(("route", kw.get("dst"), kw.get("gateway")))

        def addr(self, cmd: str, index: int, address: str, prefixlen: int) -> None:
            calls.append(("addr", address, prefixlen))

    monkeypatch.setattr(dc, "IPRoute", Nic())
    dc._apply("wan0", offer)
    assert calls == [("flush",), ("addr", "198.18.62.10", 24), ("route", "0.0.0.0/0", "198.18.62.1")], calls
