"""`[lan] routes` and the LAN's IPv6 address after a LAN link flap (router/lan_routes.py): the kernel drops the NIC's IPv4
routes at link down and nothing added them again -- the networks behind the LAN's routers were
unreachable until a restart. The decision: add them again when the link came back, and again
after a failed try; never while the link just stays up (a route the operator deleted stays
deleted); nothing once stopped."""
from __future__ import annotations

import ipaddress
import logging

from appliance.router.lan_routes import PERSIST, LanRouteKeeper, NoteLimit, restore_due

SPEC = {"dst": "198.18.60.0", "prefixlen": 24, "oif": 3, "gateway": "198.18.50.2"}


class FakeRoutes:
    def __init__(self, answers: list) -> None:
        self.answers = list(answers)
        self.calls = 0

    def restore(self):
        self.calls += 1
        return self.answers.pop(0)


def test_the_decision():
    assert restore_due(link_back=True, failed_before=False)
    assert restore_due(link_back=False, failed_before=True)
    assert not restore_due(link_back=False, failed_before=False)


def test_routes_come_back_after_the_link_does_and_a_failed_try_is_repeated(caplog):
    caplog.set_level("INFO")
    rs = FakeRoutes([([], [(SPEC, "ENETUNREACH")]), ([], [(SPEC, "ENETUNREACH")]), ([SPEC], [])])
    k = LanRouteKeeper("lan0", rs)
    assert not k.reapply(False) and rs.calls == 0        # link stayed up: nothing asked of the kernel
    assert not k.reapply(True) and rs.calls == 1         # back, but its gateway not reachable yet
    assert not k.reapply(False) and rs.calls == 2        # tried again at the next check
    assert caplog.text.count("not back yet") == 1        # said once, not at every try
    assert k.reapply(False) and rs.calls == 3
    assert "added again: 198.18.60.0/24" in caplog.text
    assert not k.reapply(False) and rs.calls == 3        # all back: nothing more until the next flap


def test_nothing_once_stopped():
    rs = FakeRoutes([([SPEC], [])])
    k = LanRouteKeeper("lan0", rs)
    k.stop.set()
    assert not k.reapply(True) and rs.calls == 0


A6 = ipaddress.IPv6Interface("fd18:50::1/64")
SPEC6 = {"dst": "fd18:60::", "prefixlen": 64, "oif": 3, "gateway": "fd18:50::10"}


class FakeNic:
    """The NIC's IPv6 addresses: an administrative link down removes them (keep_addr_on_down 0)."""

    def __init__(self) -> None:
        self.have: set[str] = {str(A6)}
        self.order: list[str] = []

    def add_missing(self, ifname: str, addresses) -> list[str]:
        done = [str(a) for a in addresses if str(a) not in self.have]
        self.have |= set(done)
        self.order += ["address"] * len(done)
        return done


def test_the_lan_ipv6_address_comes_back_first_then_the_routes_through_it():
    nic = FakeNic()

    class Routes(FakeRoutes):
        def restore(self):
            nic.order.append("routes")
            # an IPv6 route via fd18:50::10 needs the LAN prefix on the NIC again
            return ([SPEC6], []) if str(A6) in nic.have else ([], [(SPEC6, "ENETUNREACH")])
    k = LanRouteKeeper("lan0", Routes([]), [A6], add_addresses=nic.add_missing)
    assert not k.reapply(False) and nic.order == []           # all there: nothing added
    nic.have.clear()                                          # the flap
    assert k.reapply(True) and nic.order == ["address", "routes"] and k.restored == 2
    nic.have.clear()                                          # gone with no link event seen (a flush)
    assert k.reapply(False) and nic.order[-2:] == ["address", "routes"]


def test_an_address_alone_is_kept_without_routes():
    nic = FakeNic()
    k = LanRouteKeeper("lan0", None, [A6], add_addresses=nic.add_missing)
    nic.have.clear()
    assert k.reapply(True) and nic.have == {str(A6)}
    assert not k.reapply(True)


def test_a_flapping_link_logs_a_bounded_number_of_lines(caplog):
    caplog.set_level(logging.INFO, "vpn-appliance")
    nic, now = FakeNic(), [0.0]

    class Routes(FakeRoutes):
        def __init__(self) -> None:
            super().__init__([])
            self.n = 0

        def restore(self):
            self.n += 1          # the link down again at every other try: alternating failures
            return ([SPEC], []) if self.n % 2 else ([], [(SPEC, "ENETUNREACH")])
    k = LanRouteKeeper("lan0", Routes(), [A6], add_addresses=nic.add_missing, clock=lambda: now[0])
    for _ in range(50):                                       # 10 checks a second for 5 s
        nic.have.clear()
        k.reapply(True)
        now[0] += 0.1
    assert len(caplog.records) <= 2 * NoteLimit.BURST + 1, caplog.text
    now[0] += 60
    nic.have.clear()
    assert k.reapply(True)
    assert "more times since the last such line" in caplog.records[-1].getMessage()


def test_a_route_that_stays_out_is_one_warning_not_one_per_try(caplog):
    caplog.set_level(logging.INFO, "vpn-appliance")
    rs = FakeRoutes([([], [(SPEC, "ENETUNREACH")])] * (3 * PERSIST))
    k = LanRouteKeeper("lan0", rs)
    k.reapply(True)
    for _ in range(3 * PERSIST - 1):
        k.reapply(False)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "still not back" in warned[0].getMessage()
    assert [r.levelno for r in caplog.records if "not back yet" in r.getMessage()] == [logging.INFO]


def test_note_limit_bursts_then_one_per_period():
    n = NoteLimit(every=30.0)
    said = [n.due(t * 0.1) for t in range(100)]               # 10 s of notes every 0.1 s
    assert [s for s in said if s is not None] == [0] * NoteLimit.BURST
    assert n.due(10.0 + 30.0) == 100 - NoteLimit.BURST        # the next one says how many were held


def test_the_not_back_yet_lines_held_are_counted_in_the_next(caplog):
    """The README's promise for the LAN's INFO lines as for the "added again" ones: past the burst,
    the next line says how many were held (the "not back yet" line said nothing of them)."""
    caplog.set_level(logging.INFO, "vpn-appliance")
    now = [0.0]
    other = dict(SPEC, dst="198.18.61.0")

    class Routes(FakeRoutes):
        def __init__(self) -> None:
            super().__init__([])
            self.n = 0

        def restore(self):
            self.n += 1          # a different route missing at each try: each is a change, said
            return [], [((SPEC, other)[self.n % 2], "ENETUNREACH")]
    k = LanRouteKeeper("lan0", Routes(), clock=lambda: now[0])
    for _ in range(10):
        k.reapply(True)
        now[0] += 0.1
    said = [r.getMessage() for r in caplog.records if "not back yet" in r.getMessage()]
    assert len(said) == NoteLimit.BURST
    now[0] += 60
    k.reapply(True)
    said = [r.getMessage() for r in caplog.records if "not back yet" in r.getMessage()]
    assert said[-1].endswith(f"({10 - NoteLimit.BURST} more time(s) since the last such line)"), said[-1]
