"""Routes we add, remembered so we remove exactly those on exit."""
from __future__ import annotations

import logging

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger("vpn-appliance")


class RouteSet:
    def __init__(self) -> None:
        self.added: list[dict] = []

    def add(self, network: str, prefixlen: int, dev: str | None = None, gateway: str | None = None,
            metric: int | None = None) -> None:
        spec: dict = {"dst": f"{network}/{prefixlen}"}
        with IPRoute() as ipr:
            if dev is not None:
                spec["oif"] = ipr.link_lookup(ifname=dev)[0]
            if gateway is not None:
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
        with IPRoute() as ipr:
            try:
                r = ipr.route("get", dst=remote_ip)[0]
                gw = r.get_attr("RTA_GATEWAY")
                oif = r.get_attr("RTA_OIF")
            except (NetlinkError, IndexError):
                gw = oif = None
        if oif is not None:
            spec = {"dst": f"{remote_ip}/32", "oif": oif}
            if gw:
                spec["gateway"] = gw
            with IPRoute() as ipr:
                try:
                    ipr.route("add", **spec)
                    self.added.append(spec)
                except NetlinkError as e:
                    if e.code != 17:
                        raise
        self.add("0.0.0.0", 1, dev=tun)
        self.add("128.0.0.0", 1, dev=tun)

    def remove_all(self) -> None:
        with IPRoute() as ipr:
            for spec in reversed(self.added):
                try:
                    ipr.route("del", **spec)
                except NetlinkError as e:
                    log.debug("route %s already gone: %s", spec.get("dst"), e)
        self.added.clear()
