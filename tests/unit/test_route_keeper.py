"""The client's route keeper (gateway/route_keeper.py), its netlink hints (tun/route_watch.py),
RouteSet.restore (router/routes.py) and the static WAN's decisions (router/static_wan.py): what a
link flap's aftermath is decided to be, without a kernel (tests/interop/test_wan_flap_routes.py
has the real one)."""
from __future__ import annotations

import errno
import logging
import ipaddress
import socket
import struct

import pytest

from appliance.gateway.route_keeper import Pacing, RouteKeeper
from appliance.router.routes import RouteSet
from appliance.router.static_wan import missing
from appliance.tun import route_watch
from appliance.tun.rtnl import RTM_DELROUTE, RTM_NEWLINK, NetlinkError


# ---------------------------------------------------------------- pacing
def test_a_hint_arms_one_check_after_the_settle_time_and_a_burst_arms_no_more():
    p = Pacing()
    assert p.hinted(100.0) == pytest.approx(100.0 + Pacing.SETTLE)
    assert p.hinted(100.05) is None                       # the down's and the up's events: one check
    assert p.hinted(100.1) is None


def test_a_flapping_link_costs_at_most_one_check_per_min_gap():
    p = Pacing()
    now, checks = 0.0, []
    for _ in range(200):                                  # a hint every 10 ms for 2 s
        p.hinted(now)
        if p.due is not None and now >= p.due:
            checks.append(now)
            p.checked(now, failed=False)
        now += 0.01
    gaps = [b - a for a, b in zip(checks, checks[1:])]
    assert checks and min(gaps) >= Pacing.MIN_GAP - 1e-9, gaps


def test_a_route_that_cannot_go_back_is_retried_later_and_later_then_reset_by_success():
    p = Pacing()
    waits, now = [], 0.0
    for _ in range(8):
        at = p.checked(now, failed=True)
        waits.append(at - now)
        now = at
    assert waits[0] == Pacing.RETRY_FIRST and waits[1] == 2 * Pacing.RETRY_FIRST
    assert max(waits) == Pacing.RETRY_MAX and waits == sorted(waits)
    assert p.checked(now, failed=False) is None and p.retry == Pacing.RETRY_FIRST
    # a hint brings a far retry forward (the link is back: no need to wait 30 s)
    p.checked(now, failed=True)
    p.retry = Pacing.RETRY_MAX
    far = p.checked(now + 1, failed=True)
    assert p.hinted(now + 2) < far


def test_failures_are_said_at_most_once_per_log_every():
    p = Pacing()
    said = [p.may_log(t * 1.0) for t in range(int(3 * Pacing.LOG_EVERY))]
    assert said.count(True) == 3


# ---------------------------------------------------------------- RouteSet.restore
class FakeNl:
    def __init__(self, answers: dict[str, int], addrs: "list[tuple[int, str, int, int]] | None" = None) -> None:
        self.answers, self.calls = answers, []
        self.addr_list = addrs or []

    def addrs(self, family: int = 0, index: "int | None" = None) -> list:
        return [a for a in self.addr_list if (index is None or a[3] == index) and (not family or a[0] == family)]

    def route_add(self, **spec) -> None:
        self.calls.append(spec["dst"])
        code = self.answers.get(spec["dst"], 0)
        if code:
            raise NetlinkError(code, "refused")


def _spec(dst: str, oif: int = 2, gw: str | None = "198.18.0.1") -> dict:
    return {"dst": dst, "prefixlen": 32, "oif": oif, "gateway": gw, "priority": None, "rtype": 1}


def test_restore_adds_what_the_kernel_lost_and_reports_what_it_cannot_never_raising():
    nl = FakeNl({"198.18.50.1": 0, "0.0.0.0": errno.EEXIST, "198.18.60.1": errno.ENETUNREACH,
                 "198.18.70.1": errno.ENETDOWN})
    rs = RouteSet(nl)
    rs.added = [_spec("198.18.50.1"), _spec("0.0.0.0", oif=9, gw=None), _spec("198.18.60.1"), _spec("198.18.70.1")]
    back, failed = rs.restore(tun_index=9)
    assert [s["dst"] for s in back] == ["198.18.50.1"]
    assert [s["dst"] for s, _ in failed] == ["198.18.60.1", "198.18.70.1"]
    assert len(rs.added) == 4                             # nothing remembered twice, nothing forgotten
    assert nl.calls == ["198.18.50.1", "0.0.0.0", "198.18.60.1", "198.18.70.1"]


def test_restore_forgets_an_on_link_host_route_whose_network_left_the_nic():
    """After a WAN renumbering (198.18.0.10/24 -> 198.18.2.10/24) the server 198.18.0.1, once on
    the NIC's own network, is no longer: its gateway-less host route is not put back (it would
    send the server's packets to a neighbour that is not there, and the reconnect would take it
    for the path); while the network is still the NIC's (a plain flap) it is."""
    import socket
    renumbered = FakeNl({}, addrs=[(socket.AF_INET, "198.18.2.10", 24, 2)])
    rs = RouteSet(renumbered)
    rs.added = [_spec("198.18.0.1", gw=None), _spec("0.0.0.0", oif=9, gw=None)]
    back, failed = rs.restore(tun_index=9)
    assert [s["dst"] for s in back] == ["0.0.0.0"] and failed == []
    assert renumbered.calls == ["0.0.0.0"] and [s["dst"] for s in rs.added] == ["0.0.0.0"]
    flapped = FakeNl({}, addrs=[(socket.AF_INET, "198.18.0.10", 24, 2)])
    rs = RouteSet(flapped)
    rs.added = [_spec("198.18.0.1", gw=None)]
    assert [s["dst"] for s in rs.restore(tun_index=9)[0]] == ["198.18.0.1"]


def test_restore_with_no_routes_does_nothing():
    nl = FakeNl({})
    assert RouteSet(nl).restore() == ([], [])
    assert nl.calls == []


# ---------------------------------------------------------------- the keeper on a pump
class FakeTimers:
    def __init__(self) -> None:
        self.armed: dict[str, tuple[float, object]] = {}

    def arm(self, key, when, fn) -> None:
        self.armed[key] = (when, fn)

    def cancel(self, key) -> None:
        self.armed.pop(key, None)


class FakePump:
    def __init__(self) -> None:
        self.timers, self.watched, self.agains = FakeTimers(), {}, 0

    def watch(self, port, on_read) -> None:
        self.watched[port] = on_read

    def unwatch(self, port) -> None:
        self.watched.pop(port, None)

    def again(self, port, handler) -> None:
        self.agains += 1


class FakeWatch:
    def __init__(self, hints: list) -> None:
        self.hints, self.has_pending, self.closed = hints, False, False

    def fileno(self) -> int:
        return 99

    def changed(self, limit: int = 16) -> bool:
        h = self.hints.pop(0)
        if isinstance(h, Exception):
            raise h
        return h

    def close(self) -> None:
        self.closed = True


def test_the_keeper_checks_after_a_hint_retries_a_failure_and_stops_cleanly():
    pump, now = FakePump(), [10.0]
    results = [([], [(_spec("198.18.50.1"), "Network is unreachable")]), ([_spec("198.18.50.1")], [])]
    calls = []

    def restore():
        calls.append(now[0])
        return results.pop(0)
    w = FakeWatch([False, True])
    k = RouteKeeper(pump, lambda: now[0], w, restore)
    pump.watched[w]()                                     # a datagram that was no hint
    assert "route-keep" not in pump.timers.armed
    pump.watched[w]()
    when, fn = pump.timers.armed.pop("route-keep")
    assert when == pytest.approx(10.0 + Pacing.SETTLE)
    now[0] = when
    fn()                                                  # fails: retried later
    when2, fn2 = pump.timers.armed.pop("route-keep")
    assert when2 == pytest.approx(now[0] + Pacing.RETRY_FIRST)
    now[0] = when2
    fn2()                                                 # back in
    assert "route-keep" not in pump.timers.armed and k.restored == 1 and len(calls) == 2
    k.close()
    assert w.closed and w not in pump.watched


def test_a_failure_right_after_a_flap_is_info_and_one_that_persists_is_one_warning():
    """flap38 said "not added again yet" as a WARNING at every flap (the route tried while the
    link was still coming back: expected); now INFO, and one WARNING once PERSIST checks in a
    row failed -- said again only after a success and a new run of failures."""
    p, levels, now = Pacing(), [], 0.0
    for _ in range(3 * Pacing.PERSIST):
        p.checked(now, failed=True)
        levels.append(p.failure_level(now))
        now += 7.0
    said = [lv for lv in levels if lv is not None]
    assert levels[0] == logging.INFO and said.count(logging.WARNING) == 1
    assert levels[Pacing.PERSIST - 1] == logging.WARNING and levels.index(logging.WARNING) == Pacing.PERSIST - 1
    assert len(said) <= 3 * Pacing.PERSIST * 7.0 / Pacing.LOG_EVERY + 2      # rate-limited
    p.checked(now, failed=False)
    p.checked(now + 100, failed=True)
    assert p.failure_level(now + 100) == logging.INFO                    # a new run starts as INFO


def test_the_keeper_says_a_flap_aftermath_failure_as_info(caplog):
    caplog.set_level(logging.INFO, "vpn-appliance")
    pump, now = FakePump(), [10.0]
    results = [([], [(_spec("198.18.50.1"), "Network is unreachable")]), ([_spec("198.18.50.1")], [])]
    w = FakeWatch([True])
    RouteKeeper(pump, lambda: now[0], w, lambda: results.pop(0))
    pump.watched[w]()
    for _ in range(2):
        when, fn = pump.timers.armed.pop("route-keep")
        now[0] = when
        fn()
    failed = [r for r in caplog.records if "not added again yet" in r.getMessage()]
    assert [r.levelno for r in failed] == [logging.INFO]
    assert any(r.levelno == logging.WARNING and "added again" in r.getMessage() for r in caplog.records)


def test_a_link_flapping_for_minutes_is_not_a_warning_a_second(caplog):
    from appliance.logpace import NoteLimit
    caplog.set_level(logging.INFO, "vpn-appliance")
    pump, now = FakePump(), [0.0]
    w = FakeWatch([True] * 300)
    k = RouteKeeper(pump, lambda: now[0], w, lambda: ([_spec("198.18.50.1")], []))
    for _ in range(300):                                  # 300 flaps a second apart: 300 checks
        pump.watched[w]()
        when, fn = pump.timers.armed.pop("route-keep")
        now[0] = when
        fn()
        now[0] += 1.0
    said = [r for r in caplog.records if "added again" in r.getMessage()]
    assert k.restored == 300 and NoteLimit.BURST <= len(said) <= NoteLimit.BURST + 300 * 1.2 / 30 + 1


def test_a_watch_that_fails_is_dropped_not_raised():
    pump = FakePump()
    w = FakeWatch([OSError(errno.EBADF, "gone")])
    k = RouteKeeper(pump, lambda: 0.0, w, lambda: ([], []))
    pump.watched[w]()
    assert w.closed and k.watch is None and not pump.watched


# ---------------------------------------------------------------- the netlink hints
class FakeSock:
    def __init__(self, items: list) -> None:
        self.items = items

    def recvfrom(self, _n: int):
        if not self.items:
            raise BlockingIOError
        it = self.items.pop(0)
        if isinstance(it, Exception):
            raise it
        return it


def _msg(kind: int, body: bytes = bytes(16)) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def _watch(items: list) -> route_watch.RouteWatch:
    w = route_watch.RouteWatch.__new__(route_watch.RouteWatch)
    w.sock, w.has_pending, w.stats = FakeSock(items), False, {"hints": 0, "overflows": 0}
    return w


def test_hints_come_only_from_the_kernel_and_only_for_links_and_removed_routes():
    assert not _watch([(_msg(RTM_NEWLINK), (4242, 1))]).changed()          # a process, not the kernel
    assert not _watch([(_msg(24), (0, 0x40))]).changed()                    # RTM_NEWROUTE: ours at a push
    assert _watch([(_msg(RTM_NEWLINK), (0, 1))]).changed()
    assert _watch([(_msg(24) + _msg(RTM_DELROUTE), (0, 0x40))]).changed()
    assert _watch([OSError(errno.ENOBUFS, "lost")]).changed()               # lost events: maybe one
    w = _watch([(struct.pack("=IHHII", 0, RTM_NEWLINK, 0, 0, 0), (0, 1))])  # nlmsg_len 0: no loop
    assert not w.changed()
    w = _watch([(_msg(24), (0, 0))] * 20)
    assert not w.changed(limit=16) and w.has_pending                          # bounded per wake-up
    with pytest.raises(OSError):
        _watch([OSError(errno.EBADF, "closed")]).changed()


# ---------------------------------------------------------------- the static WAN
A4, A6 = ipaddress.ip_interface("198.18.0.2/24"), ipaddress.ip_interface("2001:db8::2/64")
G4, G6 = ipaddress.ip_address("198.18.0.1"), ipaddress.ip_address("2001:db8::1")


def test_static_wan_after_a_flap_gets_its_default_routes_and_lost_addresses_back():
    # a link down/up: IPv4 address kept, IPv6 address and both default routes gone
    assert missing([A4, A6], {("198.18.0.2", 24)}, [G4, G6], set(), link_back=True) == ([A6], [G4, G6])
    # an RA's or the operator's default route of a family is left alone
    assert missing([A4], {("198.18.0.2", 24)}, [G4, G6], {4, 6}, link_back=True) == ([], [])
    # all up the whole time, a route the operator removed: theirs
    assert missing([A4], {("198.18.0.2", 24)}, [G4], set(), link_back=False) == ([], [])
    # a flush without a down: the address back, and its route
    assert missing([A4], set(), [G4], set(), link_back=False) == ([A4], [G4])


# ---------------------------------------------------------------- net41: hints only about the routes kept
def _rta(kind: int, value: bytes) -> bytes:
    n = 4 + len(value)
    return struct.pack("=HH", n, kind) + value + bytes((4 - n % 4) % 4)


def _delroute(dst: str, plen: int, oif: int | None = None, table: int = 254) -> bytes:
    ip = ipaddress.ip_address(dst)
    body = struct.pack("=BBBBBBBBI", 10 if ip.version == 6 else 2, plen, 0, 0, min(table, 252) if table > 255
                       else table, 4, 0, 1, 0)
    body += _rta(15, struct.pack("=I", table))
    if plen:
        body += _rta(1, ip.packed)
    if oif is not None:
        body += _rta(4, struct.pack("=I", oif))
    return struct.pack("=IHHII", 16 + len(body), RTM_DELROUTE, 0, 0, 0) + body


def _newlink(index: int) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, 0, 1)
    return struct.pack("=IHHII", 16 + len(body), RTM_NEWLINK, 0, 0, 0) + body


def _kept_specs() -> list[dict]:
    return [{"dst": "198.18.0.1", "prefixlen": 32, "oif": 7, "gateway": "198.18.1.1"},     # the server's host route
            {"dst": "0.0.0.0", "prefixlen": 1, "oif": 9, "gateway": None},               # def1 halves via the TUN
            {"dst": "128.0.0.0", "prefixlen": 1, "oif": 9, "gateway": None},
            {"dst": "2001:db8:100::", "prefixlen": 64, "oif": 9, "gateway": None},
            {"dst": "::", "prefixlen": 1, "oif": None, "gateway": None}]                  # block-ipv6: unreachable


def test_only_removals_of_the_kept_routes_and_their_links_changing_are_hints():
    from appliance.gateway.route_keeper import KeptRoutes
    specs = _kept_specs()
    k = KeptRoutes(lambda: specs)
    assert k.concerns(RTM_DELROUTE, _delroute("198.18.0.1", 32, oif=7))
    assert k.concerns(RTM_DELROUTE, _delroute("128.0.0.0", 1, oif=9))
    assert k.concerns(RTM_DELROUTE, _delroute("2001:db8:100::", 64, oif=9))
    assert k.concerns(RTM_DELROUTE, _delroute("::", 1))                      # unreachable: no device
    assert k.concerns(RTM_DELROUTE, _delroute("::", 1, oif=3))               # ...whatever device
    assert k.concerns(RTM_NEWLINK, _newlink(7)) and k.concerns(RTM_NEWLINK, _newlink(9))
    # the host's other churn
    assert not k.concerns(RTM_DELROUTE, _delroute("198.18.0.2", 32, oif=7))  # another destination
    assert not k.concerns(RTM_DELROUTE, _delroute("198.18.0.1", 31, oif=7))  # another prefix length
    assert not k.concerns(RTM_DELROUTE, _delroute("198.18.0.1", 32, oif=8))  # someone else's, other device
    assert not k.concerns(RTM_DELROUTE, _delroute("198.18.0.1", 32, oif=7, table=100))   # another table
    assert not k.concerns(RTM_DELROUTE, _delroute("198.18.0.1", 32, oif=7, table=1000))  # (RTA_TABLE's)
    assert not k.concerns(RTM_DELROUTE, _delroute("0.0.0.0", 0, oif=7))      # the host's default route
    assert not k.concerns(RTM_NEWLINK, _newlink(8))
    # too short to tell: a hint
    assert k.concerns(RTM_DELROUTE, _delroute("198.18.0.2", 32)[:20]) and k.concerns(RTM_NEWLINK, _newlink(8)[:20])


def _addr(kind: int, family: int, index: int) -> bytes:
    body = struct.pack("=BBBBI", family, 24 if family == socket.AF_INET else 64, 0, 0, index)
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_an_ipv4_address_removed_or_back_on_a_kept_routes_device_is_a_hint():
    """compat42: the kernel flushes the IPv4 routes through a removed address with no
    RTM_DELROUTE (as at a link down): the removal, and the address's return, are hints; other
    devices' addresses are not, nor IPv6 ones (their routes' removals are notified)."""
    from appliance.gateway.route_keeper import KeptRoutes
    from appliance.tun.rtnl import RTM_DELADDR, RTM_NEWADDR
    specs = _kept_specs()
    k = KeptRoutes(lambda: specs)
    assert k.concerns(RTM_DELADDR, _addr(RTM_DELADDR, socket.AF_INET, 7))
    assert k.concerns(RTM_NEWADDR, _addr(RTM_NEWADDR, socket.AF_INET, 7))
    assert not k.concerns(RTM_DELADDR, _addr(RTM_DELADDR, socket.AF_INET, 8))     # another NIC
    assert not k.concerns(RTM_DELADDR, _addr(RTM_DELADDR, socket.AF_INET6, 7))    # IPv6: DELROUTEs say it
    assert k.concerns(RTM_DELADDR, _addr(RTM_DELADDR, socket.AF_INET, 8)[:20])    # too short to tell
    w = _watch([(_addr(RTM_DELADDR, socket.AF_INET, 7), (0, 0x10))])
    pump = FakePump()
    RouteKeeper(pump, lambda: 10.0, w, lambda: ([], []), lambda: specs)
    pump.watched[w]()
    assert "route-keep" in pump.timers.armed and w.stats["hints"] == 1


def test_routes_added_later_are_kept_from_then_on_and_forgotten_ones_no_longer_hint():
    from appliance.gateway.route_keeper import KeptRoutes
    specs: list[dict] = []
    k = KeptRoutes(lambda: specs)
    assert not k.concerns(RTM_DELROUTE, _delroute("198.18.0.1", 32, oif=7))   # before the push: nothing kept
    specs.extend(_kept_specs())                                                 # the push (same list, grown)
    assert k.concerns(RTM_DELROUTE, _delroute("198.18.0.1", 32, oif=7))
    specs[0] = {"dst": "198.18.0.5", "prefixlen": 32, "oif": 7, "gateway": None}   # same length, another route
    assert not k.concerns(RTM_DELROUTE, _delroute("198.18.0.1", 32, oif=7))
    assert k.concerns(RTM_DELROUTE, _delroute("198.18.0.5", 32, oif=7))


def test_unrelated_churn_arms_no_check_and_a_kept_routes_removal_still_does():
    specs = _kept_specs()
    unrelated = [(_delroute(f"198.18.{i}.0", 24, oif=3), (0, 0x40)) for i in range(40)]
    w = _watch(unrelated + [(_newlink(3), (0, 1))])
    pump, now, calls = FakePump(), [10.0], []
    RouteKeeper(pump, lambda: now[0], w, lambda: (calls.append(1), ([], []))[1], lambda: specs)
    for _ in range(4):
        pump.watched[w]()
    assert "route-keep" not in pump.timers.armed and w.stats["ignored"] == 41 and w.stats["hints"] == 0
    w.sock.items.append((_delroute("198.18.0.1", 32, oif=7), (0, 0x40)))
    pump.watched[w]()
    assert "route-keep" in pump.timers.armed and w.stats["hints"] == 1
    # an overflow is still a hint: a kept route's removal may be among the lost
    w2, pump2 = _watch([OSError(errno.ENOBUFS, "lost")]), FakePump()
    RouteKeeper(pump2, lambda: now[0], w2, lambda: ([], []), lambda: specs)
    pump2.watched[w2]()
    assert "route-keep" in pump2.timers.armed
