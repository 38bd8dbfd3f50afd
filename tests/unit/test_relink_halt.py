"""The relink keepers' halt (the undo at the appliance's stop) against a reapply under way on
keep_on_link's thread. The undo only set the `stop` event and went on to remove the address
and routes; a reapply past its stop check (the LAN's keeper: the static IPv6 address since
flap40, and `[lan] routes`; a static WAN's addresses and default routes) then added them back
after the removal, and they stayed on the NIC after the appliance stopped. The DHCP lease has
had the lock for this (boot/dhcp_client.py Lease._lock); halt() is the same for these two:
it returns only once no reapply is under way, and none adds anything after."""
from __future__ import annotations

import ipaddress
import threading

from appliance.router import static_wan
from appliance.router.lan_routes import LanRouteKeeper
from appliance.router.static_wan import StaticWan

A6 = ipaddress.IPv6Interface("fd18:50::1/64")
WAIT = 30.0          # a bound only: each wait ends as soon as the other thread got there


def _halt_waits_for(reapply, entered: threading.Event, release: threading.Event, halt) -> None:
    """A reapply blocked in its adds; halt() on another thread must not return meanwhile."""
    t1 = threading.Thread(target=reapply, daemon=True)
    t1.start()
    assert entered.wait(WAIT)
    t2 = threading.Thread(target=halt, daemon=True)
    t2.start()
    t2.join(0.5)
    waited = t2.is_alive()           # (a wrong halt returns at once; a right one can only wait)
    release.set()
    t1.join(WAIT)
    t2.join(WAIT)
    assert not t1.is_alive() and not t2.is_alive()
    assert waited, "halt() returned while a reapply was still adding"


def test_the_lan_keeper_halt_waits_for_a_reapply_under_way():
    entered, release, adds = threading.Event(), threading.Event(), []

    def add_missing(ifname, addresses):  # noqa: ANN001
        entered.set()
        release.wait(WAIT)
        adds.append(len(addresses))
        return [str(a) for a in addresses]
    k = LanRouteKeeper("lan0", None, [A6], add_addresses=add_missing)
    _halt_waits_for(lambda: k.reapply(True), entered, release, k.halt)
    assert adds == [1]
    assert not k.reapply(True) and adds == [1]             # halted: nothing more


def _blocking_iproute():
    """IPRoute for StaticWan.reapply: the NIC without its address; blocks in the lookup."""
    class BlockingIPRoute:
        entered, release = threading.Event(), threading.Event()
        adds: list = []

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:  # noqa: ANN002
            pass

        def link_lookup(self, ifname):  # noqa: ANN001
            self.entered.set()
            self.release.wait(WAIT)
            return [3]

        def get_addr(self, index):  # noqa: ANN001
            return []

        def get_routes(self, family, table):  # noqa: ANN001
            return [{"dst_len": 0, "header": {"flags": 0x2}}]

        def addr(self, op, **kw) -> None:  # noqa: ANN003
            self.adds.append((op, kw["address"]))
    return BlockingIPRoute


def test_the_static_wan_halt_waits_for_a_reapply_under_way(monkeypatch):
    ipr = _blocking_iproute()
    monkeypatch.setattr(static_wan, "IPRoute", ipr)
    k = StaticWan("wan0", [ipaddress.IPv4Interface("198.18.50.2/24")], [])
    _halt_waits_for(lambda: k.reapply(True), ipr.entered, ipr.release, k.halt)
    assert ipr.adds == [("add", "198.18.50.2")]
    assert not k.reapply(True) and len(ipr.adds) == 1
