"""`[lan] routes` given back after a LAN link flap.

Why: the kernel drops a NIC's IPv4 routes when its link goes down (the address stays) and says
nothing of it; the routes `[lan] routes` added through the LAN's routers stayed gone after
`ip link set LAN down; up` (a switch's reboot, a hypervisor's NIC reconnect), and the networks
behind them were unreachable -- their answers left by the default route, into the tunnel --
until the appliance restarted. The thread the WAN's lease and static address use (boot/
dhcp_client.py keep_on_link: link events, paced) calls reapply() here: when the link came back
(or the last try failed), each route of ours is added again (RouteSet.restore: one already there,
ours or someone else's, is left alone). A route the operator deletes while the link stays up
stays deleted, as with the static WAN.
"""
from __future__ import annotations

import logging
import threading

from ..boot import dhcp_client
from .routes import RouteSet

log = logging.getLogger("vpn-appliance")


def restore_due(link_back: bool, failed_before: bool) -> bool:
    """Whether to add the routes again now (pure): the link came back since the last check (its
    IPv4 routes are gone), or some could not go back last time (the link not fully up yet, its
    gateway not reachable yet: tried again at the next check, at most every RELINK_TICK)."""
    return link_back or failed_before


class LanRouteKeeper:
    """The `[lan] routes` we added (`routes`), reapplied by keep_on_link's thread."""

    def __init__(self, ifname: str, routes: RouteSet) -> None:
        self.ifname = ifname
        self.routes = routes
        self.stop = threading.Event()
        self.failed: list[str] = []         # routes that could not go back at the last try

    def reapply(self, link_back: bool) -> bool:
        """Add our routes again when due (True: some were added). Nothing once stopped (the undo
        removes the routes after stopping this)."""
        if self.stop.is_set() or not restore_due(link_back, bool(self.failed)):
            return False
        back, failed = self.routes.restore()
        names = [f"{s['dst']}/{s['prefixlen']}" for s, _why in failed]
        if failed and names != self.failed:         # said once per change, not at every try
            log.warning("%s: [lan] routes not back yet (tried again): %s", self.ifname,
                        ", ".join(f"{n} ({why})" for n, (_s, why) in zip(names, failed)))
        self.failed = names
        if back:
            log.warning("%s: [lan] routes gone from the NIC (link down/up, flushed): added again: %s",
                        self.ifname, ", ".join(f"{s['dst']}/{s['prefixlen']}" for s in back))
        return bool(back)

    def start(self) -> None:
        threading.Thread(target=dhcp_client.keep_on_link,
                         args=(self.ifname, self.stop, self.reapply, "the LAN's routes"),
                         name="lan-relink", daemon=True).start()
