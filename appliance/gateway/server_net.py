"""The server's TUN: the pool's server address (subnet, or net30 with its route), the IPv6 pool's,
and `route` / `route-ipv6` lines (networks behind clients with iroutes / iroute-ipv6) into the TUN.

The server opens the TUN itself (it keeps the fd) and configures it by name in its own process
with appliance/tun/rtnl.py (the stdlib's netlink socket, as the client's TUN). A short-lived
`python -m appliance.gateway.server_net` child did this while it needed pyroute2 (~14 MB of
resident memory and asyncio, kept out of the server process): that child re-imported the whole
gateway and took ~0.2-0.25 s of a server's start (helper startup47, lab/startup_time.py); the
server still never imports pyroute2 (tests/unit/test_server_imports.py).

At close the server removes exactly the addresses and routes it added (an AddressSet and a
RouteSet, filled as configure() goes), then closes the device -- the one path for the final exit
and for a set-up the kernel refused half-way. A device the server made goes away with them
anyway; one made beforehand (`ip tuntap add`, `openvpn --mktun`, persistent) stays, and kept
them after the exit where 2.6 removes its own (close_tun: undo_ifconfig, delete_routes; helper
review47a found it, helper tunclose47 fixed it). Nothing the device had before the start (a
user's own address or route) is touched: the addresses are added beside it, never flushed (2.6
adds its own beside one too), and only what we added is remembered. A SIGUSR1 keeps the device
and all of it (as 2.6 with persist-tun; ours keeps the TUN at any restart: ops.on_signal).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import logging
import socket
import struct

from ..ioerrors import PortGone, dev_name_cut, tun_open_failed
from ..openvpn.config import Options
from ..openvpn.layer2 import tap_address
from ..openvpn.serveraddressing import server_addressing
from ..router.links import AddressSet
from ..router.routes import RouteSet
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
        # What configure() added to the device, removed at close (the module's docstring).
        self.routes = RouteSet()
        self.addrs = AddressSet()

    def spec(self, name: str) -> dict:
        """What configure() sets up, as plain data."""
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
        not_added, why = configure_checked(spec, self.routes, self.addrs)
        if why is not None:
            self.close()
            # The device's own name (tun0), not the `dev` template (tun%d) it was made from.
            raise PortGone(f"cannot configure the TUN device {tun.name}: {why}")
        if spec["addr6"]:
            log.info("TUN %s: IPv6 %s/%d", tun.name, *spec["addr6"])
        a = server_addressing(o)
        own = len(a.routes) if a is not None else 0             # `server`'s own network first (net30, p2p)
        for net, plen, _metric in spec["routes"][:own]:
            if (net, plen) not in not_added:
                continue
            if (why := not_added[(net, plen)]) is not None:
                # Not a `route` line the server can run without (as 2.6 does with either): the
                # clients' own network, none of them reachable without it (review48b: net48's
                # change let the start go on without it, and said nothing).
                name = tun.name
                self.close()
                raise PortGone(f"cannot configure the TUN device {name}: the route to the `server` network "
                               f"{net}/{plen} dev {name}: the kernel refused it ({why})")
            log.warning("route %s/%d dev %s (the `server` network's) not added: the kernel routes that network "
                        "at that metric already (`ip route show %s/%d`); its clients are reached that way",
                        net, plen, tun.name, net, plen)
        for net, plen, _metric in spec["routes"][own:]:
            _route_line("route", net, plen, tun.name, not_added)
        for net, plen, _metric in spec["routes6"]:
            _route_line("route-ipv6", net, plen, tun.name, not_added)
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
        """Our routes, then our addresses (the module's docstring), then the device; a failure
        to remove one is logged, and the device is closed all the same."""
        try:
            for what in (self.routes, self.addrs):
                try:
                    what.remove_all()
                except Exception as e:  # noqa: BLE001 - best effort on the way out, and say so
                    log.warning("TUN %s: not all of our %s removed: %s", self.tun.name if self.tun else "-",
                                "routes" if what is self.routes else "addresses", e)
        finally:
            if self.tun is not None:
                self.tun.close()
                self.tun = None


def _route_line(directive: str, net: str, plen: int, dev: str, not_added: dict[tuple[str, int], str | None]) -> None:
    """The log line of one `route`/`route-ipv6` of the config: added; left to the route the kernel
    had already (`not_added` None: EEXIST, the same network at the same metric -- another NIC's
    connected network, a route someone added; OpenVPN 2.6 adds its own beside that one and takes
    its traffic, ours leaves it and says so); or refused by the kernel (`not_added` the reason:
    the server runs on without it, as 2.6 -- "ERROR: Linux route add command failed")."""
    if (net, plen) not in not_added:
        log.info("%s %s/%d dev %s", directive, net, plen, dev)
    elif not_added[(net, plen)] is None:
        log.warning("%s %s/%d dev %s not added: the kernel routes that network at that metric already "
                    "(`ip route show %s/%d`); that route is left as it is", directive, net, plen, dev, net, plen)
    else:
        log.error("%s %s/%d dev %s not added: the kernel refused it (%s); running without it, as OpenVPN 2.6",
                  directive, net, plen, dev, not_added[(net, plen)])


class SetupRefused(Exception):
    """The kernel refused one step of the TUN's set-up; the message names the step and why."""


@contextlib.contextmanager
def _step(what: str, v6: bool = False):
    """One set-up step: the kernel's refusal (NetlinkError, an OSError) as SetupRefused naming it.
    Why: the server stops its start with this line, and "[Errno 22] Invalid argument" alone did not
    say which of the addresses and routes (a config may have dozens of `route` lines) was refused."""
    try:
        yield
    except OSError as e:
        why = e.strerror or str(e)
        if e.errno == errno.EACCES and v6:        # the kernel's answer where IPv6 is switched off
            why += " (IPv6 disabled on this host? sysctl net.ipv6.conf.all.disable_ipv6)"
        raise SetupRefused(f"{what}: {why}") from e


def configure_checked(spec: dict, routes: RouteSet | None = None,
                      addrs: AddressSet | None = None) -> tuple[dict[tuple[str, int], str | None], str | None]:
    """`configure`: (the routes not added, None), or ({}, why it failed) -- the server stops its
    start with that reason (PortGone), and what was added up to then is in `routes` and `addrs`
    for close to remove."""
    try:
        return configure(spec, routes, addrs), None
    except SetupRefused as e:
        return {}, str(e)
    except Exception as e:  # noqa: BLE001 - the device gone (RuntimeError), an address it cannot take
        return {}, f"{type(e).__name__}: {e}"


def configure(spec: dict, routes: RouteSet | None = None,
              addrs: AddressSet | None = None) -> dict[tuple[str, int], str | None]:
    """Addresses, MTU, link up and routes of the server's TUN (rtnetlink, appliance/tun/rtnl.py),
    each one added remembered in `routes` / `addrs` (for close). SetupRefused naming the step when
    the kernel refuses the device, an address or the link: the start stops (2.6 exits there too).
    A route the kernel does not take does not stop it: as OpenVPN 2.6 ("ERROR: Linux route add
    command failed", and on), a `route` with host bits outside its mask (EINVAL) or a duplicate
    leaves the server running without that route (a config written for 2.6 that started there
    starts here; the `server` network's own route is no `route` line: open() stops the start).
    Returns those routes, (network, prefix length) -> None for one the kernel had already at that
    metric (RouteSet.add: EEXIST is not ours to replace), else the kernel's reason.
    The device's own addresses stay (no flush): on a device made beforehand they are a user's."""
    from ..router.links import add_address6, configure_tun, link_up, set_lladdr

    dev = spec["dev"]
    if spec.get("lladdr"):
        with _step(f"MAC address {spec['lladdr']} (lladdr)"):
            set_lladdr(dev, spec["lladdr"])             # before the link comes up
    if spec["addr"]:
        addr, plen, peer = spec["addr"]
        with _step(f"address {addr}" + (f" peer {peer}" if peer else f"/{plen}") + f" mtu {spec['mtu']}"):
            configure_tun(dev, addr, plen, spec["mtu"], peer=peer, flush=False, added=addrs)
    elif spec.get("link_up"):
        with _step(f"link up, mtu {spec['mtu']}"):
            link_up(dev, spec["mtu"])
    if spec["addr6"]:
        with _step(f"IPv6 address {spec['addr6'][0]}/{spec['addr6'][1]}", v6=True):
            add_address6(dev, spec["addr6"][0], spec["addr6"][1], added=addrs)
    if routes is None:
        routes = RouteSet()
    not_added: dict[tuple[str, int], str | None] = {}
    for net, plen, metric in spec["routes"] + spec.get("routes6", []):
        try:
            if not routes.add(net, plen, dev=dev, metric=metric):
                not_added[(net, plen)] = None
        except OSError as e:            # NetlinkError: the kernel's refusal of this route alone
            not_added[(net, plen)] = route_refusal(net, plen, e)
    return not_added


def route_refusal(net: str, plen: int, e: OSError) -> str:
    """Why the kernel refused a route, in words: for EINVAL on an IPv4 network with host bits
    outside its mask (`route 198.18.5.1 255.255.255.0`; 2.6 hands it over unmasked and the kernel
    refuses it the same way), the network meant. One place for the server's and the client's lines."""
    why = e.strerror or str(e)
    if e.errno == errno.EINVAL and ":" not in net:
        with contextlib.suppress(ValueError):
            n = ipaddress.IPv4Network(f"{net}/{plen}", strict=False)
            if str(n.network_address) != net:
                why += f": host bits set outside the /{plen} mask (the network is {n})"
    return why
