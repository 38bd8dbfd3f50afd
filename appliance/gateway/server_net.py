"""The server's TUN: the pool's server address (subnet, or net30 with its route), the IPv6 pool's,
and `route` / `route-ipv6` lines (networks behind clients with iroutes / iroute-ipv6) into the TUN.

The server opens the TUN itself (it keeps the fd) and configures it by name in its own process
with appliance/tun/rtnl.py (the stdlib's netlink socket, as the client's TUN). A short-lived
`python -m appliance.gateway.server_net` child did this while it needed pyroute2 (~14 MB of
resident memory and asyncio, kept out of the server process): that child re-imported the whole
gateway and took ~0.2-0.25 s of a server's start (helper startup47, lab/startup_time.py); the
server still never imports pyroute2 (tests/unit/test_server_imports.py). Nothing is left to undo
at close: when the server closes the TUN the device goes away, and the kernel removes its
addresses and routes with it.
"""
from __future__ import annotations

import fcntl
import ipaddress
import logging
import socket
import struct

from ..ioerrors import PortGone, dev_name_cut, tun_open_failed
from ..openvpn.config import Options
from ..openvpn.layer2 import tap_address
from ..openvpn.serveraddressing import server_addressing
from ..tun.device import TunDevice

log = logging.getLogger("vpn-appliance")
SIOCGIFHWADDR = 0x8927


# The 33 contiguous netmasks, looked up before ipaddress parses anything (a client's push is on
# its way to the first packet); the same answers, ipaddress still decides everything else.
_MASKS = {str(ipaddress.IPv4Address((0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF)): n for n in range(33)}


def mask_to_prefix(mask: str) -> int:
    """255.255.255.0 or 24 -> 24; ValueError for anything else (a non-contiguous mask too)."""
    n = _MASKS.get(mask)
    if n is not None:
        return n
    return ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen


class ServerTunnelNetwork:
    def __init__(self, opts: Options, pool, pool6) -> None:
        self.opts = opts
        self.pool = pool
        self.pool6 = pool6
        self.tun: TunDevice | None = None

    def spec(self, name: str) -> dict:
        """What the child sets up, as plain data."""
        o, pool, pool6 = self.opts, self.pool, self.pool6
        s: dict = {"dev": name, "mtu": o.tun_mtu, "addr": None, "routes": [], "addr6": None, "routes6": []}
        if o.dev_type == "tap":
            # Layer 2 (openvpn/layer2.py): `server`'s NET+1/MASK, or no address (a bridge port,
            # brought up; the up script puts it in the bridge).
            a = tap_address(o)
            s["addr"] = [a[0], a[1], None] if a is not None else None
            s["link_up"] = True
            s["lladdr"] = o.lladdr          # its MAC address, as 2.6's do_open_tun sets it (set_lladdr)
        elif (a := server_addressing(o)) is not None:
            # `ifconfig` (`server`'s NET+1): with its netmask (subnet) or its peer (net30, p2p);
            # none written: the TUN comes up without one, as 2.6's. `server`'s own route (net30,
            # p2p: its network) first.
            if a.local is not None:
                s["addr"] = ([a.local, mask_to_prefix(a.second), None] if a.topology == "subnet"
                             else [a.local, 32, a.second])
            else:
                s["link_up"] = True     # (its routes, and clients' ccd addresses, need it up)
            s["routes"] += [[net, plen, None] for net, plen in a.routes]
        if o.ifconfig_ipv6 is not None:
            s["addr6"] = [o.ifconfig_ipv6[0], o.ifconfig_ipv6[1]]       # the manual form (no server-ipv6)
        elif pool6 is not None:
            s["addr6"] = [pool6.server_ip, pool6.net.prefixlen]
        for net, mask, _gw, metric in ([] if o.route_noexec else o.route):     # route-noexec: the user routes
            s["routes"].append([net, mask_to_prefix(mask), metric])
        for net6, _gw6, metric in ([] if o.route_noexec else o.route_ipv6):
            # The gateway is the TUN's business (a point-to-point device): as `route`, dev only.
            # net_gateway_ipv6 is refused in a server config (parser.finish).
            addr6, _, plen = net6.partition("/")
            s["routes6"].append([addr6, int(plen), metric])
        return s

    def open(self) -> TunDevice:
        o = self.opts
        tap = o.dev_type == "tap"
        name = o.dev if o.dev not in ("tun", "tap", None) else f"{o.dev_type}%d"
        try:
            # A TAP device carries Ethernet frames: no virtio header (its offloads segment IP packets).
            self.tun = tun = TunDevice(name, vnet_hdr=not tap, mtu=o.tun_mtu, tap=tap)
        except OSError as e:
            raise tun_open_failed(o, "tap" if tap else "tun", name, e) from e
        if (cut := dev_name_cut(o, name, tun.name)) is not None:
            log.warning("%s", cut)
        spec = self.spec(tun.name)
        why = configure_checked(spec)
        if why is not None:
            self.close()
            raise PortGone(f"cannot configure the TUN device {name}: {why}")
        if spec["addr6"]:
            log.info("TUN %s: IPv6 %s/%d", tun.name, *spec["addr6"])
        a = server_addressing(o)
        for net, plen, _metric in spec["routes"][len(a.routes) if a is not None else 0:]:     # (`server`'s own first)
            log.info("route %s/%d dev %s", net, plen, tun.name)
        for net, plen, _metric in spec["routes6"]:
            log.info("route-ipv6 %s/%d dev %s", net, plen, tun.name)
        if tap:
            log.info("TAP %s up (layer 2), address %s%s", tun.name,
                     "%s/%d" % tuple(spec["addr"][:2]) if spec["addr"] else "none (a bridge port)",
                     f", MAC address {o.lladdr} (lladdr)" if o.lladdr else "")
        else:
            log.info("TUN %s up, server address %s", tun.name, spec["addr"][0] if spec["addr"] else "none")
        return tun

    def hw_address(self) -> bytes | None:
        """The TAP device's MAC address (lladdr's, or the kernel's), read once it is set up: the
        switch keeps it from every client (l2switch.py). None on a TUN device or if unreadable."""
        if self.tun is None or not self.tun.tap:
            return None
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sk:
                r = fcntl.ioctl(sk, SIOCGIFHWADDR, struct.pack("256s", self.tun.name.encode()))
        except OSError as e:
            log.warning("TAP %s: its MAC address not read (%s): clients are not kept from it", self.tun.name, e)
            return None
        return bytes(r[18:24])

    def close(self) -> None:
        if self.tun is not None:
            self.tun.close()
            self.tun = None


def configure_checked(spec: dict) -> str | None:
    """`configure`; None, or why it failed (the server stops with it: PortGone)."""
    try:
        configure(spec)
    except Exception as e:  # noqa: BLE001 - a netlink refusal, or an address it cannot take
        return f"{type(e).__name__}: {e}"
    return None


def configure(spec: dict) -> None:
    """Addresses, MTU, link up and routes of the server's TUN (rtnetlink, appliance/tun/rtnl.py)."""
    from ..router.links import add_address6, configure_tun, link_up, set_lladdr
    from ..router.routes import RouteSet

    dev = spec["dev"]
    if spec.get("lladdr"):
        set_lladdr(dev, spec["lladdr"])             # before the link comes up
    if spec["addr"]:
        addr, plen, peer = spec["addr"]
        configure_tun(dev, addr, plen, spec["mtu"], peer=peer)
    elif spec.get("link_up"):
        link_up(dev, spec["mtu"])
    if spec["addr6"]:
        add_address6(dev, spec["addr6"][0], spec["addr6"][1])
    routes = RouteSet()
    for net, plen, metric in spec["routes"] + spec.get("routes6", []):
        routes.add(net, plen, dev=dev, metric=metric)

