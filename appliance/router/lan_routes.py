"""`[lan] routes` and the LAN's IPv6 address given back after a LAN link flap.

Why: the kernel drops a NIC's IPv4 routes when its link goes down (the address stays) and says
nothing of it; the routes `[lan] routes` added through the LAN's routers stayed gone after
`ip link set LAN down; up` (a switch's reboot, a hypervisor's NIC reconnect), and the networks
behind them were unreachable -- their answers left by the default route, into the tunnel --
until the appliance restarted. The LAN's static IPv6 address (`address6`, or the derived ULA)
went too: an administrative link down removes a NIC's IPv6 addresses (unless keep_addr_on_down
is set; carrier loss alone keeps them), and with it the on-link prefix route, the RA's RDNSS
address (the DNS forwarder's) and the route back to every LAN host: the LAN lost IPv6 through the
router until a restart. The thread the WAN's lease and static address use (boot/dhcp_client.py
keep_on_link: link events, paced) calls reapply() here: an address the NIC lost is added again
(without DAD, as at start: the DNS forwarder's socket needs it usable at once), first, then --
when the link came back (or the last try failed) -- each route of ours (RouteSet.restore: one
already there, ours or someone else's, is left alone; an IPv6 route needs the address back first:
its gateway is on the LAN's prefix). A route the operator deletes while the link stays up stays
deleted, as with the static WAN -- unless the address had to go back too (a flush, or a flap
whose events were lost: the routes are put back with it, as the static WAN's default route);
the address itself is the configuration's and goes back whenever it is missing (as a static
WAN's). The undo halts this (halt()) before it removes the address and routes. What was added again is a WARNING, a route not back yet an INFO
(expected right after the link returns; a WARNING once it failed PERSIST tries in a row); both
at most NoteLimit.BURST at once, then one per 30 s (logpace.py), with a count of the ones held (a
flapping link is not a flood of log lines).
"""
from __future__ import annotations

import ipaddress
import logging
import threading
import time
from typing import Callable, Protocol, Sequence

from pyroute2 import IPRoute

from ..boot import dhcp_client
from ..tun.rtnl import whole_dump
from ..logpace import NoteLimit, times

log = logging.getLogger("vpn-appliance")

IFA_F_NODAD = 0x02
PERSIST = 5             # tries in a row a route failed (~50 s of checks) before that is a WARNING


class Restorable(Protocol):
    def restore(self) -> "tuple[list[dict], list[tuple[dict, str]]]": ...


def restore_due(link_back: bool, failed_before: bool) -> bool:
    """Whether to add the routes again now (pure): the link came back since the last check (its
    IPv4 routes are gone), or some could not go back last time (the link not fully up yet, its
    gateway not reachable yet: tried again at the next check, at most every RELINK_TICK)."""
    return link_back or failed_before


def _add_missing_addresses(ifname: str, addresses: Sequence[ipaddress.IPv6Interface]) -> list[str]:
    """Add each of `addresses` the NIC no longer holds (no DAD); the ones added."""
    done: list[str] = []
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return done
        idx = found[0]
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                for a in whole_dump(lambda: ipr.get_addr(index=idx), "address")}
        for a in addresses:
            if (str(a.ip), a.network.prefixlen) not in have:
                ipr.addr("add", index=idx, address=str(a.ip), prefixlen=a.network.prefixlen, flags=IFA_F_NODAD)
                done.append(str(a))
    return done


class LanRouteKeeper:
    """The LAN's static IPv6 `addresses` and the `[lan] routes` we added (`routes`, may be None),
    reapplied by keep_on_link's thread."""

    def __init__(self, ifname: str, routes: Restorable | None,
                 addresses: Sequence[ipaddress.IPv6Interface] = (),
                 add_addresses: Callable[[str, Sequence[ipaddress.IPv6Interface]], list[str]] = _add_missing_addresses,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ifname = ifname
        self.routes = routes
        self.addresses = list(addresses)
        self._add_addresses = add_addresses
        self.clock = clock
        self.stop = threading.Event()
        # halt() against a reapply under way on keep_on_link's thread: nothing is added after
        # the undo removed it (as the DHCP lease's lock: boot/dhcp_client.py Lease._lock)
        self._busy = threading.Lock()
        self.failed: list[str] = []         # routes that could not go back at the last try
        self.fail_tries = 0                 # tries in a row with a route that could not go back
        self.notes = NoteLimit()            # "added again"
        self.fail_notes = NoteLimit()       # "not back yet"
        self.restored = 0                   # addresses and routes added again (tests, the log)

    def halt(self) -> None:
        """Stop reapplying (the undo, before it removes the address and routes): returns once no
        reapply is under way, and none adds anything after. Why not stop.set() alone: the thread
        may be between its stop check and its adds, and the address or a route it then put back
        after the undo's removal stayed on the NIC after the appliance stopped."""
        with self._busy:
            self.stop.set()

    def reapply(self, link_back: bool) -> bool:
        """Add what the NIC lost (True: something was added). Nothing once halted (the undo
        removes the address and routes after halting this)."""
        with self._busy:
            if self.stop.is_set():
                return False
            return self._reapply(link_back)

    def _reapply(self, link_back: bool) -> bool:
        done = self._add_addresses(self.ifname, self.addresses) if self.addresses else []
        if self.routes is not None and restore_due(link_back or bool(done), bool(self.failed)):
            back, failed = self.routes.restore()
            names = [f"{s['dst']}/{s['prefixlen']}" for s, _why in failed]
            self.fail_tries = self.fail_tries + 1 if failed else 0
            why = ", ".join(f"{n} ({why})" for n, (_s, why) in zip(names, failed))
            if failed and names != self.failed:         # said once per change, not at every try
                # expected right after a flap (the gateway not reachable yet): INFO, rate-limited
                held = self.fail_notes.due(self.clock())
                if held is not None:
                    log.info("%s: [lan] routes not back yet (tried again): %s%s", self.ifname, why,
                             f" ({held} more time(s) since the last such line)" if held else "")
            if self.fail_tries == PERSIST:              # ...but not for long: once per run of failures
                log.warning("%s: [lan] routes still not back after %d tries: %s", self.ifname, PERSIST, why)
            self.failed = names
            done += [f"{s['dst']}/{s['prefixlen']}" for s in back]
        if done:
            self.restored += len(done)
            held = self.notes.due(self.clock())
            if held is not None:
                log.warning("%s: the LAN's address or [lan] routes gone from the NIC (link down/up, flushed): "
                            "added again: %s%s", self.ifname, ", ".join(done),
                            times(held))
        return bool(done)

    def start(self) -> None:
        threading.Thread(target=dhcp_client.keep_on_link,
                         args=(self.ifname, self.stop, self.reapply, "the LAN's address and routes"),
                         name="lan-relink", daemon=True).start()
