"""`[lan] routes` after a LAN link flap (router/lan_routes.py): the kernel drops the NIC's IPv4
routes at link down and nothing added them again -- the networks behind the LAN's routers were
unreachable until a restart. The decision: add them again when the link came back, and again
after a failed try; never while the link just stays up (a route the operator deleted stays
deleted); nothing once stopped."""
from __future__ import annotations

from appliance.router.lan_routes import LanRouteKeeper, restore_due

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
