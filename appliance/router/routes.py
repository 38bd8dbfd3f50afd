"""Routes we add, remembered so we remove exactly those on exit."""
from __future__ import annotations

import ipaddress
import logging
import socket

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger("vpn-appliance")


class RouteSet:
    def __init__(self) -> None:
        self.added: list[dict] = []

    def add(self, network: str, prefixlen: int, dev: str | None = None, gateway: str | None = None,
            metric: int | None = None, oif: int | None = None) -> None:
        """Add a route (out of `dev`, or interface index `oif`); one already there is left alone
        and not remembered, so we never remove a route we did not add."""
        spec: dict = {"dst": f"{network}/{prefixlen}"}
        with IPRoute() as ipr:
            if dev is not None:
                spec["oif"] = ipr.link_lookup(ifname=dev)[0]
            elif oif is not None:
                spec["oif"] = oif
            if gateway:
                spec["gateway"] = gateway
            if metric is not None:
                spec["priority"] = metric
            try:
                ipr.route("add", **spec)
            except NetlinkError as e:
                if e.code != 17:  # EEXIST: already there (e.g. after a reconnect) is fine
                    raise
                return
        self.added.append(spec)

    def add_redirect_gateway_def1(self, tun: str, remote_ip: str) -> None:
        """0/1 + 128/1 via the tunnel, and a host route to the server via the old default path."""
        self.keep_path_to(remote_ip)
        self.add("0.0.0.0", 1, dev=tun)
        self.add("128.0.0.0", 1, dev=tun)

    def add_redirect_gateway_ipv6(self, tun: str, remote_ip: str) -> None:
        """::/1 + 8000::/1 via the tunnel (OpenVPN's `redirect-gateway ipv6`), keeping an IPv6
        server reachable the old way."""
        if ":" in remote_ip:
            self.keep_path_to(remote_ip)
        self.add("::", 1, dev=tun)
        self.add("8000::", 1, dev=tun)

    def keep_path_to(self, remote_ip: str) -> None:
        """A host route to `remote_ip` along the path it takes now (before the tunnel routes)."""
        with IPRoute() as ipr:
            try:
                r = ipr.route("get", dst=remote_ip)[0]
                gw = r.get_attr("RTA_GATEWAY")
                oif = r.get_attr("RTA_OIF")
            except (NetlinkError, IndexError):
                gw = oif = None
        if oif is not None:
            self.add(remote_ip, 128 if ":" in remote_ip else 32, gateway=gw, oif=oif)

    @staticmethod
    def net_gateway(v6: bool = False, not_dev: str | None = None) -> tuple[str | None, int] | None:
        """(gateway, interface index) of the default route in use before the tunnel: what
        OpenVPN calls net_gateway. None when there is no default route."""
        with IPRoute() as ipr:
            skip = ipr.link_lookup(ifname=not_dev) if not_dev else []
            best = None
            for r in ipr.get_default_routes(family=socket.AF_INET6 if v6 else socket.AF_INET):
                oif = r.get_attr("RTA_OIF")
                if r["table"] != 254 or oif is None or oif in skip:
                    continue
                prio = r.get_attr("RTA_PRIORITY") or 0
                if best is None or prio < best[0]:
                    best = (prio, r.get_attr("RTA_GATEWAY"), oif)
        return None if best is None else (best[1], best[2])

    def block_local(self, tun: str, net_gateway: tuple[str | None, int]) -> str | None:
        """OpenVPN's `redirect-gateway block-local`: the local network of the default route's
        interface goes into the tunnel (as two half routes, which beat the connected route), with
        only the gateway itself kept reachable directly. Returns the network, or None if none."""
        gw, oif = net_gateway
        with IPRoute() as ipr:
            addrs = [(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(family=socket.AF_INET, index=oif)]
        if not addrs or addrs[0][1] >= 31:
            return None
        net = ipaddress.IPv4Network(f"{addrs[0][0]}/{addrs[0][1]}", strict=False)
        if gw:
            self.add(gw, 32, oif=oif)
        for half in net.subnets(prefixlen_diff=1):
            self.add(str(half.network_address), half.prefixlen, dev=tun)
        return str(net)

    def add_via(self, network: str, prefixlen: int, via: tuple[str | None, int], metric: int | None = None) -> None:
        """A route along a given (gateway, interface index), e.g. the net_gateway."""
        self.add(network, prefixlen, gateway=via[0], metric=metric, oif=via[1])

    def remove_all(self) -> None:
        with IPRoute() as ipr:
            for spec in reversed(self.added):
                try:
                    ipr.route("del", **spec)
                except NetlinkError as e:
                    log.debug("route %s already gone: %s", spec.get("dst"), e)
        self.added.clear()
