"""The appliance's NICs: find them (by name or MAC), give them addresses (static or DHCP), a
default route, IPv4 forwarding; and the Undo list that removes all of it again, newest first.

Small separate functions so the VM's PID 1 and `vpn-appliance run appliance.toml` share them.
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Callable

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..boot import dhcp_client
from ..config.schema import Lan, Wan
from .routes import RouteSet

log = logging.getLogger("vpn-appliance")

IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


class Undo:
    """What we changed, as callables run newest-first on exit; one failure does not stop the rest."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, fn: Callable[[], None]) -> None:
        self.steps.append((what, fn))

    def run(self) -> None:
        while self.steps:
            what, fn = self.steps.pop()
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - best effort on the way out, and say so
                log.warning("undo %s: %s", what, e)


def find_link(name: str | None = None, mac: str | None = None) -> tuple[int, str]:
    """(index, ifname) of the NIC with this name or MAC address; RuntimeError if there is none."""
    with IPRoute() as ipr:
        for link in ipr.get_links():
            ifname = link.get_attr("IFLA_IFNAME")
            addr = (link.get_attr("IFLA_ADDRESS") or "").lower()
            if (name is not None and ifname == name) or (mac is not None and addr == mac.lower()):
                return link["index"], ifname
    raise RuntimeError(f"no network interface with {'name ' + name if name else 'MAC ' + str(mac)}")


def configure_static(ifname: str, address: ipaddress.IPv4Interface, undo: Undo) -> None:
    """Bring the link up and add the address (removed again on exit unless it was already there)."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        ipr.link("set", index=idx, state="up")
        try:
            ipr.addr("add", index=idx, address=str(address.ip), prefixlen=address.network.prefixlen)
        except NetlinkError as e:
            if e.code != 17:  # EEXIST: configured already (PID 1 did it, or a restart)
                raise
            log.info("%s already has %s", ifname, address)
            return

    def remove() -> None:
        with IPRoute() as ipr2:
            ipr2.addr("del", index=idx, address=str(address.ip), prefixlen=address.network.prefixlen)
    undo.push(f"address {address} on {ifname}", remove)
    log.info("%s: address %s, up", ifname, address)


def add_default_route(gateway: ipaddress.IPv4Address, undo: Undo) -> None:
    """Default route via the WAN gateway; an existing default route is kept (and reported)."""
    rs = RouteSet()
    rs.add("0.0.0.0", 0, gateway=str(gateway))
    if rs.added:
        undo.push(f"default route via {gateway}", rs.remove_all)
        log.info("default route via %s", gateway)
    else:
        log.warning("a default route exists already; kept it (not via %s)", gateway)


def configure_dhcp(ifname: str, undo: Undo) -> None:
    """DHCP on the WAN (boot/dhcp_client.py); the lease is released again on the way out."""
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], state="up")
    lease = dhcp_client.dhcp_configure(ifname)
    undo.push(f"DHCP on {ifname}", lease.stop)
    log.info("%s: configured by DHCP (%s)", ifname, lease)


def configure_nic(nic: Wan | Lan, undo: Undo) -> str:
    """Find the NIC (by name or MAC), give it its address (static or DHCP); returns its name."""
    _, ifname = find_link(nic.name, nic.mac)
    if nic.mac:
        log.info("%s: the NIC with MAC %s (%s)", ifname, nic.mac, "wan" if isinstance(nic, Wan) else "lan")
    if isinstance(nic, Wan) and nic.dhcp:
        configure_dhcp(ifname, undo)
        return ifname
    assert nic.address is not None
    configure_static(ifname, nic.address, undo)
    if isinstance(nic, Wan) and nic.gateway is not None:
        add_default_route(nic.gateway, undo)
    return ifname


def enable_forwarding(undo: Undo, path: str = IP_FORWARD) -> None:
    """Router mode: the kernel forwards LAN ↔ tunnel (the kill switch decides what may pass)."""
    with open(path) as f:
        old = f.read().strip()
    if old != "1":
        with open(path, "w") as f:
            f.write("1\n")

        def restore() -> None:
            with open(path, "w") as f2:
                f2.write(old + "\n")
        undo.push("ip_forward", restore)
    log.info("IPv4 forwarding on")


def write_resolv_conf(dns: tuple[ipaddress.IPv4Address, ...], path: str = "/etc/resolv.conf") -> None:
    """Only as PID 1: a host's own resolver configuration is not ours to change."""
    with open(path, "w") as f:
        f.writelines(f"nameserver {d}\n" for d in dns)
