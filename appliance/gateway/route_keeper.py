"""The client's routes kept in the kernel across a link flap (the server's host route first).

Why: the kernel drops a NIC's IPv4 routes when its link goes down -- the address stays, so
nothing else notices -- and says nothing of the routes it dropped. With redirect-gateway the
tunnel's host route to the VPN server goes with them: after `ip link set WAN down; up` (a
cable, a hypervisor's NIC reconnect, a modem's reset) the server's packets followed 0/1 + 128/1
into the tunnel itself until ping-restart (30-120 s), then a reconnect. OpenVPN 2.6 does the
same (tests/interop/test_wan_flap_routes.py measures it). Here a link or route event (the
kernel's rtnetlink multicast: tun/route_watch.py) is a hint: after RouteKeeper.SETTLE for the
rest of the burst, the routes the tunnel added and the kernel no longer has are added again
(router/routes.py RouteSet.restore: the kernel says which are gone). A flapping link costs at
most one check per MIN_GAP -- or per COST_GAP times what the last check took, when that is
longer: a check is one netlink add per route of ours, and a server may push ~1,000 routes
(keymethod.MAX_PUSHED_OPTIONS); a check of those took ~0.2 s of the pump, so a link flapping
for minutes cost a quarter of a core and held the tunnel's packets that long each second (atk40).
A route that cannot go back yet (the link still down, its gateway
not reachable yet) is tried again after RETRY_FIRST, doubling to RETRY_MAX, and said at most
once per LOG_EVERY: as INFO while it is the flap's own aftermath (a route tried while the link is
still coming back is expected at every flap), as one WARNING once PERSIST checks in a row failed
(the route really does not come back: the operator should look).

Which events are hints (KeptRoutes, net41): only those about the routes kept -- the removal of
a route in the main table to one of their destinations (out of its device, when the message
names one), a change of one of their devices' links, or an IPv4 address of one of their devices
removed or added (compat42: the kernel flushes the IPv4 routes through a removed address without
a word, as at a link down; the address's return is when they can go back). Every other route removal or link
change on the host (a container's veth, a routing daemon's churn, another VPN) cost a check
each before (atk40): one netlink add per kept route, up to ~1,000 of them.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
from typing import Callable, Protocol, Sequence

from ..logpace import NoteLimit, times
from ..tun.route_watch import addr_link_of, link_of, route_of
from ..tun.rtnl import RT_TABLE_MAIN, RTM_DELADDR, RTM_DELROUTE, RTM_NEWADDR, RTM_NEWLINK
from .loop import Pump
from .ports import PortGone

log = logging.getLogger("vpn-appliance")

ROUTE_READS = 16              # netlink datagrams read per wake-up (the rest on the next)
SHOWN = 4                     # routes named per log line


class RouteWatchPort(Protocol):
    """Links changing or routes going (tun/route_watch.py): readable when one may have."""
    has_pending: bool
    concerns: Callable[[int, bytes], bool] | None

    def fileno(self) -> int: ...

    def changed(self, limit: int = 16) -> bool: ...

    def close(self) -> None: ...


Restore = Callable[[], "tuple[list[dict], list[tuple[dict, str]]]"]


class KeptRoutes:
    """Whether one rtnetlink message concerns the routes kept (the watch's `concerns`): an
    RTM_DELROUTE of the main table for one of their (family, destination, prefix length), out
    of that route's device (or naming none: a multipath or unreachable route), or an
    RTM_NEWLINK of one of their devices (a link down drops its IPv4 routes without any
    RTM_DELROUTE), or an IPv4 RTM_DELADDR / RTM_NEWADDR on one of them (an address's removal
    drops the IPv4 routes through it just as silently; they can go back once it returns). A
    message too short to tell is a hint. `kept()` is the live list of route
    specs (RouteSet.added): its index is rebuilt when the list holds other specs than last time
    (compared by identity, the old ones held so no id is reused), so a push's routes count from
    the moment they are added; a check costs len(kept) identity comparisons."""

    def __init__(self, kept: Callable[[], Sequence[dict]]) -> None:
        self.kept = kept
        self._specs: list[dict] = []
        self._dsts: dict[tuple[int, int, int], set[int | None]] = {}
        self._oifs: set[int] = set()

    def _current(self) -> None:
        cur = self.kept()
        if len(cur) == len(self._specs) and all(a is b for a, b in zip(cur, self._specs)):
            return
        self._specs = list(cur)
        self._dsts, self._oifs = {}, set()
        for spec in self._specs:
            try:
                net = ipaddress.ip_network((spec["dst"], spec["prefixlen"]), strict=False)
            except (KeyError, ValueError, TypeError):
                continue
            fam = socket.AF_INET6 if net.version == 6 else socket.AF_INET
            oif = spec.get("oif")
            self._dsts.setdefault((fam, int(net.network_address), net.prefixlen), set()).add(oif)
            if oif is not None:
                self._oifs.add(oif)

    def concerns(self, kind: int, msg: bytes) -> bool:
        if kind == RTM_NEWLINK:
            index = link_of(msg)
            if index is None:
                return True
            self._current()
            return index in self._oifs
        if kind == RTM_DELROUTE:
            route = route_of(msg)
            if route is None:
                return True
            family, dst, plen, table, oif = route
            if table != RT_TABLE_MAIN:
                return False
            self._current()
            oifs = self._dsts.get((family, dst, plen))
            return oifs is not None and (oif is None or None in oifs or oif in oifs)
        if kind in (RTM_DELADDR, RTM_NEWADDR):
            addr = addr_link_of(msg)
            if addr is None:
                return True
            self._current()
            return addr[0] == socket.AF_INET and addr[1] in self._oifs
        return True


class Pacing:
    """When to check (pure: the decisions, tested without a kernel)."""
    SETTLE = 0.2        # s after a hint: the rest of the burst (a down, then its up)
    MIN_GAP = 1.0       # s between two checks at least: a flapping link is not a busy loop
    COST_GAP = 10.0     # ...and at least this many times what the last check took (<= ~10% of the pump)
    RETRY_FIRST = 1.0   # s: a route that could not go back is tried again after this...
    RETRY_MAX = 30.0    # ...doubling up to this
    LOG_EVERY = 30.0    # s: a failure said at most this often
    PERSIST = 5         # failed checks in a row (~30 s of retries) before a failure is a WARNING

    def __init__(self) -> None:
        self.last_check = float("-inf")
        self.retry = self.RETRY_FIRST
        self.due: float | None = None           # the next check, when one is armed
        self.next_log = float("-inf")
        self.fails = 0                          # failed checks in a row
        self.gap = self.MIN_GAP                 # between two checks, from what the last one took
        self.warned = False                     # the WARNING of this run of failures is said

    def hinted(self, now: float) -> float | None:
        """A hint at `now`: the time of the check to arm, or None (one armed as early already)."""
        at = max(now + self.SETTLE, self.last_check + self.gap)
        if self.due is not None and self.due <= at:
            return None
        self.due = at
        return at

    def checked(self, now: float, failed: bool, took: float = 0.0) -> float | None:
        """A check ended at `now` after `took` seconds: the time of the retry to arm (None: all is in)."""
        self.last_check = now
        self.gap = max(self.MIN_GAP, self.COST_GAP * max(took, 0.0))
        self.due = None
        if not failed:
            self.retry = self.RETRY_FIRST
            self.fails, self.warned = 0, False
            return None
        self.fails += 1
        self.due = now + max(self.retry, self.gap)
        self.retry = min(self.retry * 2, self.RETRY_MAX)
        return self.due

    def may_log(self, now: float) -> bool:
        if now < self.next_log:
            return False
        self.next_log = now + self.LOG_EVERY
        return True

    def failure_level(self, now: float) -> int | None:
        """How to say the failure of the check that just ran (after checked()): None (said
        recently), INFO (the flap's aftermath: expected), or WARNING -- once per run of failures,
        when the PERSIST-th check in a row failed, whatever the rate limit."""
        if self.fails >= self.PERSIST and not self.warned:
            self.warned = True
            self.next_log = now + self.LOG_EVERY
            return logging.WARNING
        return logging.INFO if self.may_log(now) else None


def describe(spec: dict) -> str:
    dev = ""
    if spec.get("oif") is not None:
        try:
            dev = f" dev {socket.if_indextoname(spec['oif'])}"
        except OSError:
            dev = f" oif {spec['oif']}"
    via = f" via {spec['gateway']}" if spec.get("gateway") else ""
    return f"{spec['dst']}/{spec['prefixlen']}{via}{dev}"


def _some(specs: list[dict]) -> str:
    shown = ", ".join(describe(s) for s in specs[:SHOWN])
    return shown + (f" and {len(specs) - SHOWN} more" if len(specs) > SHOWN else "")


class RouteKeeper:
    """On the client's pump: the watch port read, the checks armed as Pacing says."""
    KEY = "route-keep"
    SAY_KEY = "route-keep-say"

    def __init__(self, pump: Pump, clock: Callable[[], float], watch: RouteWatchPort, restore: Restore,
                 kept: Callable[[], Sequence[dict]] | None = None) -> None:
        """`kept`: the routes kept (their specs, live); given, only events about them are hints."""
        self.pump, self.clock, self.watch, self.restore = pump, clock, watch, restore
        if kept is not None:
            watch.concerns = KeptRoutes(kept).concerns
        self.pacing = Pacing()
        self.restored = 0           # routes added again (tests, the log)
        self.checks = 0             # checks run (tests)
        self.notes = NoteLimit()    # "added again": a link flapping for minutes is not a line a second
        self._held_back: list[dict] = []    # the last routes put back whose line was held
        pump.watch(watch, self._on_hint)

    def _on_hint(self) -> None:
        w = self.watch
        if w is None:
            return
        try:
            hinted = w.changed(ROUTE_READS)
            if w.has_pending:
                self.pump.again(w, self._on_hint)
        except OSError as e:
            # A shortcut, never a reason to stop: ping-restart still ends a dead connection.
            log.warning("no longer watching links and routes: %s", e)
            self.close()
            return
        if hinted:
            at = self.pacing.hinted(self.clock())
            if at is not None:
                self.pump.timers.arm(self.KEY, at, self._check)

    def read_now(self) -> None:
        """Read (and judge, as a wake-up would) what the watch holds now, in the caller's wake-up.

        Why: the tunnel's address, set at the push, is an IPv4 address of a device of ours, so
        its RTM_NEWADDR is a hint (compat42); read at a wake-up of its own it cost the client a
        loop turn (60-110 us of CPU) 0.1-0.3 ms after its first data packet, just when the echo
        comes back -- or ahead of the first TUN read when both were ready at once (firstpkt50).
        The client calls this at the end of the push's wake-up, where the kernel has queued that
        message already (rtnetlink notifies before it answers the request). Nothing is judged
        differently: the same reads, the same hints, the same check armed.

        A bug of ours in that reading is contained here, as the loop contains it in a wake-up of
        the watch's own (Faults.internal: counted, logged): called from the push's wake-up, it
        went up to the client's guard of that wake-up and ended the session just brought up --
        at every reconnect, when the bug is in judging a note the kernel sends each time (review50d)."""
        try:
            self._on_hint()
        except PortGone:
            raise
        except Exception:  # noqa: BLE001 - our bug: the watch's reading, never the tunnel's session
            self.pump.faults.internal("reading the route watch")

    def _check(self) -> None:
        start = self.clock()
        self.checks += 1
        try:
            back, failed = self.restore()
        except OSError as e:
            back, failed = [], [({"dst": "?", "prefixlen": 0}, str(e))]
        now = self.clock()
        if back:
            self.restored += len(back)
            held = self.notes.due(now)
            if held is not None:
                log.warning("route(s) of the tunnel gone from the kernel (a link down/up, a flush): %s added again%s",
                            _some(back), times(held))
            else:
                self._held_back = back
                say_at = self.notes.next_summary()
                if say_at is not None:
                    self.pump.timers.arm(self.SAY_KEY, say_at, self._say_held)
        at = self.pacing.checked(now, bool(failed), now - start)
        level = self.pacing.failure_level(now) if failed else None
        if level is not None:
            log.log(level, "route(s) of the tunnel gone and not added again yet%s: %s (%s); trying again",
                    f" after {self.pacing.fails} tries" if level == logging.WARNING else "",
                    _some([s for s, _ in failed]), failed[0][1])
        if at is not None and self.watch is not None:
            self.pump.timers.arm(self.KEY, at, self._check)

    def _say_held(self) -> None:
        """The count of the repairs held back, said once one may be (the storm may be over:
        nothing else would say it)."""
        held = self.notes.summary(self.clock())
        if held:
            log.warning("route(s) of the tunnel gone from the kernel and added again %d more time%s since the last "
                        "such line (the last: %s): the link or its routes keep changing", held,
                        "s" if held != 1 else "", _some(self._held_back))
        self._held_back = []

    def close(self) -> None:
        self.pump.timers.cancel(self.KEY)
        self.pump.timers.cancel(self.SAY_KEY)
        w, self.watch = self.watch, None
        if w is not None:
            self.pump.unwatch(w)
            w.close()
