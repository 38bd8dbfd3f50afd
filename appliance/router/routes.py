"""Routes we add, remembered so we remove exactly those on exit (netlink through
appliance/tun/rtnl.py, which the client reaches without importing pyroute2)."""
from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from contextlib import nullcontext

from ..tun.rtnl import RTN_UNICAST, RTN_UNREACHABLE, NetlinkError, Rtnl, link_index

log = logging.getLogger("vpn-appliance")

Path = tuple[str | None, int]          # (gateway or None for on-link, output interface index)


# The metric of hold_halves' unreachable routes: above any a redirect or a user's route uses.
HOLD_METRIC = 0x7FFFFFF0


class RouteSet:
    def __init__(self, nl: Rtnl | None = None) -> None:
        self.added: list[dict] = []
        # block_local's network halves and its gateway's direct route (take_holds carries them
        # over a re-applied push: held, the gateway's route kept).
        self.local_block: list[tuple[str, int]] = []
        self.local_gateway: dict | None = None
        self.local_oif: int | None = None
        # A netlink socket `add` uses, kept open by the owner (the client's tunnel: making one
        # is ~40 us of kernel work, per route on the way to the first packet); None: one per call.
        self.nl = nl

    def add(self, network: str, prefixlen: int, dev: str | None = None, gateway: str | None = None,
            metric: int | None = None, oif: int | None = None, unreachable: bool = False) -> bool:
        """Add a route (out of `dev`, or interface index `oif`; or, `unreachable`, one the kernel
        refuses with "no route"); one already there is left alone and not remembered, so we never
        remove a route we did not add: False then."""
        spec: dict = {"dst": network, "prefixlen": prefixlen, "oif": link_index(dev) if dev is not None else oif,
                      "gateway": gateway or None, "priority": metric,
                      "rtype": RTN_UNREACHABLE if unreachable else RTN_UNICAST}
        try:
            if self.nl is not None:
                self.nl.route_add(**spec)
            else:
                with Rtnl() as nl:
                    nl.route_add(**spec)
        except NetlinkError as e:
            if e.code != 17:  # EEXIST: already there (e.g. after a reconnect) is fine
                raise
            return False
        self.added.append(spec)
        return True

    def add_redirect_gateway_def1(self, tun: str, remote_ip: str, path: "Path | None" = None,
                                  gateway: str | None = None) -> None:
        """0/1 + 128/1 via the tunnel, and a host route to the server via the old default path
        (`path`, from path_to before the tunnel had an address or routes; looked up now if None).
        `gateway`: a tap device's route-gateway, the halves go via it."""
        self.keep_path_to(remote_ip, path)
        self._redirect_half("0.0.0.0", 1, tun, gateway)
        self._redirect_half("128.0.0.0", 1, tun, gateway)

    def add_redirect_gateway_ipv6(self, tun: str, remote_ip: str, path: "Path | None" = None,
                                  gateway: str | None = None) -> None:
        """::/1 + 8000::/1 via the tunnel (OpenVPN's `redirect-gateway ipv6`), keeping an IPv6
        server reachable the old way (`gateway`: a tap device's IPv6 gateway)."""
        if ":" in remote_ip:
            self.keep_path_to(remote_ip, path)
        self._redirect_half("::", 1, tun, gateway)
        self._redirect_half("8000::", 1, tun, gateway)

    def _redirect_half(self, network: str, prefixlen: int, tun: str, gateway: str | None) -> None:
        """One half of a redirect into `tun`. EEXIST is fine when the route there already goes out
        `tun` (a device made beforehand keeps its routes); one out of another device (another
        VPN's halves, a user's) would take the traffic the redirect promised to the tunnel while
        the log said redirected (OpenVPN 2.6: "route exists", and on): NetlinkError, so the push
        fails (tunnel.py _redirect_refused, review48b)."""
        if self.add(network, prefixlen, dev=tun, gateway=gateway):
            return
        mine = link_index(tun)
        with Rtnl() as nl:
            there = nl.routes_to(socket.AF_INET6 if ":" in network else socket.AF_INET, network, prefixlen)
        other = [oif for table, oif, _gw, prio in there if table == 254 and prio == 0 and oif != mine]
        if other:
            raise NetlinkError(errno.EEXIST, f"{network}/{prefixlen} is routed out another interface (index "
                                             f"{other[0]}) at that metric already, not {tun}")

    def add_unreachable_ipv6(self) -> None:
        """::/1 + 8000::/1 refused by the kernel itself: block-ipv6 where the TUN device cannot
        carry IPv6 (disable_ipv6 on it), so IPv6 cannot take the host's own IPv6 route either."""
        self.add("::", 1, unreachable=True)
        self.add("8000::", 1, unreachable=True)

    def refuses(self, v6: bool) -> bool:
        """Whether routes of ours refuse that family's traffic (add_unreachable_ipv6's, or
        hold_halves'), so that a server's address cannot be reached by the host's own default."""
        return any(spec["rtype"] == RTN_UNREACHABLE and (":" in spec["dst"]) == v6 for spec in self.added)

    def hold_halves(self, v6: bool = False) -> None:
        """A redirect's two halves refused by the kernel ("Network is unreachable") while its
        routes wait (route-gateway dhcp's router: gateway/route_delay.py): traffic the user asked
        into the tunnel fails at once instead of leaving outside it. At HOLD_METRIC, so the real
        halves (metric 0) take over as soon as they are added, before release_holds removes
        these: no moment without one or the other."""
        for net in (("::", "8000::") if v6 else ("0.0.0.0", "128.0.0.0")):
            self.add(net, 1, metric=HOLD_METRIC, unreachable=True)

    def held_local_path(self, address: str) -> "Path | None":
        """The way to `address` when block_local's held network holds it (the kernel's lookup
        fails there): on-link out of that network's interface, as before the holds. None else."""
        if self.local_oif is None or ":" in address:
            return None
        ip = ipaddress.ip_address(address)
        held = {(s["dst"], s["prefixlen"]) for s in self.added if s["rtype"] == RTN_UNREACHABLE}
        if any((d, p) in held and ip in ipaddress.ip_network(f"{d}/{p}") for d, p in self.local_block):
            return (None, self.local_oif)
        return None

    def on_link(self, dst: str, oif: int) -> bool:
        """Whether an address of interface `oif` has `dst` on its network (a route via `dst`
        out of it is then one the kernel takes): not as that network's IPv4 broadcast address
        (a /30 or wider), which the kernel refuses as a gateway ("Nexthop has invalid gateway")
        and a DHCP ACK from the server side's LAN may name as the router (atk50); off those
        networks when an on-link route out of it covers `dst` (the kernel takes that too)."""
        with Rtnl() if self.nl is None else nullcontext(self.nl) as nl:
            return _on_link(nl, dst, oif, as_gateway=True)

    def redirects(self, v6: bool) -> bool:
        """Whether routes of ours cover that family's two halves (a redirect's, or hold_halves')."""
        halves = ("::", "8000::") if v6 else ("0.0.0.0", "128.0.0.0")
        return all(any(s["dst"] == h and s["prefixlen"] == 1 for s in self.added) for h in halves)

    def take_holds(self, other: "RouteSet") -> None:
        """hold_halves' routes of `other` become ours, left in the kernel: `other.remove_all`
        then leaves them (a re-applied push keeps refusing the redirect's traffic); block_local's
        network is held likewise (redirect50)."""
        held = [s for s in other.added if s["priority"] == HOLD_METRIC and s["rtype"] == RTN_UNREACHABLE]
        for spec in held:
            other.added.remove(spec)
        self.added.extend(held)
        # block-local's network: held too (its real halves go with `other`), and its gateway's
        # direct route kept -- the server's host route via that gateway is refused beside the
        # held halves without it (the kernel finds no way to the gateway).
        gw = other.local_gateway
        if gw is not None and gw in other.added:
            other.added.remove(gw)
            self.added.append(gw)
            self.local_gateway = gw
        for dst, plen in other.local_block:
            self.add(dst, plen, metric=HOLD_METRIC, unreachable=True)      # EEXIST: taken above
        self.local_block, self.local_oif = list(other.local_block), other.local_oif

    def release_holds(self, v6: bool | None = None, replaced_only: bool = False, local_only: bool = False) -> None:
        """Removes hold_halves' routes, and block_local's held ones (the redirect is in, or the
        push is given up); `v6`: only
        that family's; `replaced_only`: only those whose half a route of ours into the tunnel
        now takes (the others keep refusing: a push failing before its halves went in);
        `local_only`: only block_local's (a next push without block-local: review50c)."""
        real = {(s["dst"], s["prefixlen"]) for s in self.added if s["rtype"] == RTN_UNICAST}
        held = [s for s in self.added if s["priority"] == HOLD_METRIC and s["rtype"] == RTN_UNREACHABLE
                and (v6 is None or (":" in s["dst"]) == v6)
                and (not replaced_only or (s["dst"], s["prefixlen"]) in real)
                and (not local_only or (s["dst"], s["prefixlen"]) in self.local_block)]
        if held:
            self._delete(held)
        gw = self.local_gateway
        if (gw is not None and v6 is not True and not replaced_only
                and not any((s["dst"], s["prefixlen"]) in self.local_block for s in self.added)):
            # block-local's network neither held nor routed any more (a push without it replaced
            # one with it): the gateway's direct route take_holds carried over goes too.
            if gw in self.added:
                self._delete([gw])
            self.local_gateway, self.local_block, self.local_oif = None, [], None

    @staticmethod
    def goes_via(remote_ip: str, dev: str) -> bool:
        """Whether the kernel sends packets for `remote_ip` out of `dev` now."""
        with Rtnl() as nl:
            _gw, oif = nl.route_get(remote_ip)
        return oif is not None and oif == link_index(dev)

    @staticmethod
    def path_to(remote_ip: str, not_dev: str | None = None) -> "Path | None":
        """(gateway, interface index) the kernel takes to `remote_ip` now, never through `not_dev`
        (our TUN device, which still has the last push's address while a reconnect applies the
        next one): then the pre-tunnel default route's, as OpenVPN's net_gateway. None if none."""
        with Rtnl() as nl:
            try:
                gw, oif = nl.route_get(remote_ip)
            except NetlinkError:
                gw = oif = None
        try:
            tun = link_index(not_dev) if not_dev else None
        except RuntimeError:
            tun = None
        if oif is not None and oif == tun:
            return RouteSet.net_gateway(":" in remote_ip, not_dev=not_dev)
        return None if oif is None else (gw, oif)

    def keep_path_to(self, remote_ip: str, path: "Path | None" = None) -> None:
        """A host route to `remote_ip` along `path`, or the path it takes now if None."""
        if path is None:
            path = self.path_to(remote_ip)
        if path is not None:
            self.add(remote_ip, 128 if ":" in remote_ip else 32, gateway=path[0], oif=path[1])

    @staticmethod
    def net_gateway(v6: bool = False, not_dev: str | None = None) -> tuple[str | None, int] | None:
        """(gateway, interface index) of the default route in use before the tunnel: what
        OpenVPN calls net_gateway. None when there is no default route."""
        try:
            skip = [link_index(not_dev)] if not_dev else []
        except RuntimeError:
            skip = []
        best = None
        with Rtnl() as nl:
            for table, oif, gateway, prio in nl.default_routes(socket.AF_INET6 if v6 else socket.AF_INET):
                if table != 254 or oif is None or oif in skip:
                    continue
                if best is None or prio < best[0]:
                    best = (prio, gateway, oif)
        return None if best is None else (best[1], best[2])

    def block_local(self, tun: str, net_gateway: tuple[str | None, int], hold: bool = False) -> str | None:
        """OpenVPN's `redirect-gateway block-local`: the local network of the default route's
        interface goes into the tunnel (as two half routes, which beat the connected route), with
        only the gateway itself kept reachable directly. Returns the network, or None if none.
        `hold`: the two halves refused as hold_halves' are (unreachable, HOLD_METRIC) while the
        routes wait, so the local network is not reached directly meanwhile either; the real
        halves beat them later, and release_holds removes them."""
        gw, oif = net_gateway
        with Rtnl() as nl:
            addrs = [(a, plen) for _f, a, plen, _i in nl.addrs(socket.AF_INET, index=oif)]
        if not addrs or addrs[0][1] >= 31:
            return None
        net = ipaddress.IPv4Network(f"{addrs[0][0]}/{addrs[0][1]}", strict=False)
        if gw and self.add(gw, 32, oif=oif):
            self.local_gateway = self.added[-1]
        self.local_oif = oif
        self.local_block = [(str(h.network_address), h.prefixlen) for h in net.subnets(prefixlen_diff=1)]
        for half in net.subnets(prefixlen_diff=1):
            if hold:
                self.add(str(half.network_address), half.prefixlen, metric=HOLD_METRIC, unreachable=True)
            else:
                self.add(str(half.network_address), half.prefixlen, dev=tun)
        return str(net)

    def holds_via(self, network: str, prefixlen: int, via: tuple[str | None, int], metric: int | None = None) -> bool:
        """Whether a route of ours already goes to network/prefixlen along `via` at `metric`: the
        kernel's EEXIST for add_via then means our own route, not someone else's (a redirect's
        host route to the server, which Sophos UTM's `route remote_host ... net_gateway` asks
        for again)."""
        return any(s["dst"] == network and s["prefixlen"] == prefixlen and s["gateway"] == via[0]
                   and s["oif"] == via[1] and s["priority"] == metric and s["rtype"] == RTN_UNICAST
                   for s in self.added)

    def add_via(self, network: str, prefixlen: int, via: tuple[str | None, int], metric: int | None = None) -> bool:
        """A route along a given (gateway, interface index), e.g. the net_gateway."""
        return self.add(network, prefixlen, gateway=via[0], metric=metric, oif=via[1])

    def restore(self, tun_index: int | None = None) -> tuple[list[dict], list[tuple[dict, str]]]:
        """Add again each route of ours the kernel no longer has: (the ones added again, the
        ones that could not be, with why). Why: the kernel drops a NIC's IPv4 routes when its
        link goes down (the address stays) and says nothing of it, the server's host route
        among them (gateway/route_keeper.py calls this after a link or route event). What is
        there is asked of the kernel itself: an add that says EEXIST (this route, or one of
        someone else's for the same destination and metric, which we leave alone) is done.
        A failure (the link still down: ENETDOWN; its gateway not reachable yet: ENETUNREACH;
        the NIC gone) is reported, never raised: the keeper tries again later.

        A route with no gateway out of a NIC other than the tunnel (`tun_index`) -- the server's
        host route when the server was on the NIC's own network -- is added again only while
        a network of that NIC still holds its destination: after a renumbering (the WAN's
        address moved to another network: the kernel flushed the NIC's routes) it would send the
        server's packets to a neighbour that is not there, and the client's reconnect would take
        it for the path (tests/interop/test_wan_renumber_tunnel.py). Such a route is forgotten;
        the reconnect adds the new one. (One with a gateway the kernel refuses by itself then.)"""
        back: list[dict] = []
        failed: list[tuple[dict, str]] = []
        own = None
        try:
            nl = self.nl
            if nl is None:
                nl = own = Rtnl()
            for spec in list(self.added):
                if (spec.get("gateway") is None and spec.get("oif") is not None and spec["oif"] != tun_index
                        and spec.get("rtype", RTN_UNICAST) == RTN_UNICAST
                        and not _on_link(nl, spec["dst"], spec["oif"])):
                    self.added.remove(spec)
                    continue
                try:
                    nl.route_add(**spec)
                except NetlinkError as e:
                    if e.code != 17:
                        failed.append((spec, str(e)))
                    continue
                back.append(spec)
        finally:
            if own is not None:
                own.close()
        return back, failed

    def drop(self, address: str, oif: int) -> bool:
        """Remove our host routes to `address` (/32, /128) out of interface `oif`; whether any
        was ours. Why: a server's pushed `route` to another server's address stays in while the
        client reconnects (persist-tun), and the kernel refuses the host route to that server
        beside it (EEXIST: same destination and metric) -- its packets went into the TUN."""
        ip = ipaddress.ip_address(address)
        mine = [s for s in self.added if s["oif"] == oif and s["prefixlen"] == ip.max_prefixlen
                and ipaddress.ip_address(s["dst"]) == ip]
        if mine:
            self._delete(mine)
        return bool(mine)

    def _delete(self, specs: list[dict]) -> None:
        """Delete these routes of ours and forget them; one the kernel no longer has is gone already."""
        with Rtnl() if self.nl is None else nullcontext(self.nl) as nl:
            for spec in specs:
                try:
                    nl.route_del(**spec)
                except NetlinkError as e:
                    log.debug("route %s/%s already gone: %s", spec["dst"], spec["prefixlen"], e)
                self.added.remove(spec)

    def remove_all(self) -> None:
        with Rtnl() as nl:
            for spec in reversed(self.added):
                try:
                    nl.route_del(**spec)
                except NetlinkError as e:
                    log.debug("route %s/%s already gone: %s", spec["dst"], spec["prefixlen"], e)
        self.added.clear()


def _on_link(nl, dst: str, oif: int, as_gateway: bool = False) -> bool:
    """Whether a network of interface `oif` (its addresses' prefixes) holds address `dst`
    (`as_gateway`: other than as its IPv4 broadcast address, or else an on-link route out of
    `oif` covers it, RouteSet.on_link)."""
    ip = ipaddress.ip_address(dst)
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    held = False
    for _fam, addr, plen, _idx in nl.addrs(family, index=oif):
        net = ipaddress.ip_network(f"{addr}/{plen}", strict=False)
        if as_gateway and ip.version == 4 and plen <= 30 and ip == net.broadcast_address:
            return False                # (the kernel's local broadcast route wins over any route)
        held = held or ip in net
    if held or not as_gateway:
        return held
    # A router off the addresses' networks that the kernel still takes: reached by an on-link
    # route out of `oif` (a /32 lease's router by a DHCP classless 'router/32 via 0.0.0.0', or
    # the user's own route), as 2.6's routes via it go in (review50b).
    return any(ip in ipaddress.ip_network(f"{d}/{p}", strict=False) for d, p in nl.link_routes(family, oif))
