"""The client's TUN device and what the server pushed: addresses, routes, redirect-gateway.

Kept across reconnects (persist-tun), so LAN traffic is dropped while the tunnel is down, never
sent in clear. This is the only client code that changes the host's network; the in-memory
stand-in for tests is lab/fakes.py FakeTunnelNetwork.

Netlink goes through appliance/tun/rtnl.py (the stdlib), not pyroute2: importing pyroute2 took
250-400 ms of CPU, and the client needs the address and routes the moment PUSH_REPLY arrives
(lab/first_packet.py, README "Handshake to first packet"). A client run never imports it
(tests/unit/test_client_imports.py).
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import replace
import logging
import socket

from ..ioerrors import PortGone, dev_name_cut, tun_open_failed
from ..openvpn.config import Options
from ..openvpn.config.model import route_network
from ..openvpn.profile_push import device_mtu, redirect_defaults, redirect_in_effect  # (redirect_in_effect: tunnel's tests' name)
from ..openvpn.route6 import parse_net6 as _net6
from ..router.links import AddressSet, add_address6, configure_tun, link_up
from ..router.route_record import RouteRecord
from ..router.routes import RouteSet
from ..tun.device import TunDevice
from ..tun.rtnl import DumpInterrupted, NetlinkError, Rtnl, link_index
from .eventlog import some_of
from .route_delay import ROUTER_WAIT, delay_in_effect, routes_wait_for_dhcp, waits_for_router_alone
from .server_net import mask_to_prefix, route_refusal

log = logging.getLogger("vpn-appliance")
MAX_ROUTE_LINES = 32     # log lines about single pushed routes per push (_route_line)
# The widest tunnel subnet a push may put on the TUN (_subnet_not_a_redirect): IPv4 10.0.0.0/8,
# the widest private block (OpenVPN's own `server` pools are /16 or narrower); IPv6 a /32, an
# ISP's whole allocation (`server-ipv6` pools are /64 or narrower).
WIDEST_SUBNET4 = 8
WIDEST_SUBNET6 = 32


# A pushed route whose destination the host's table has already (same prefix and metric, e.g. a
# LAN's own connected route): the kernel keeps that one; saying "route ... dev tun" would mislead.
_TAKEN = "pushed %s: the host already has a route for it (left as it is); not through the tunnel"
# The same for a net_gateway route: the one there may be the tunnel's (a redirect's half).
_TAKEN_NG = "pushed %s net_gateway: the host already has a route for it (left as it is); not the pre-tunnel way"


def _refused(net: str, mask: str, e: Exception) -> str:
    """Why a pushed route was left out: the kernel's refusal in words (server_net.route_refusal:
    `route 198.18.5.1 255.255.255.0` names the network meant), else the check's own message."""
    if isinstance(e, OSError) and e.errno is not None:
        try:
            return route_refusal(net, mask_to_prefix(mask), e)
        except ValueError:
            pass
    return str(e)


def _redirect_refused(what: str, tun: str, gateway: str | None, e: NetlinkError) -> RuntimeError:
    """The push's failure when the kernel refuses a redirect's routes (e.g. a tap's route-gateway
    off its network: ENETUNREACH). Why not log it and run on, as OpenVPN 2.6.14 does ("ERROR:
    Linux route add command failed", then a plain "Initialization Sequence Completed"): the
    user asked for all traffic in the tunnel, and a tunnel up without the redirect sends it outside
    while it looks protected -- a security directive is enforced or refused, never ignored. The
    client starts over with its restart pause (restart_pause.py: doubling after 5 rounds of the
    remotes, up to connect-retry-max), as with any push the host cannot set up (review48b)."""
    return RuntimeError(f"{what} via {tun}{f' gateway {gateway}' if gateway else ''}: the kernel refused "
                        f"its routes ({e.strerror or e}); the tunnel is not brought up without it, "
                        "traffic would leave outside it")


def _pushed_network(net: str, remote_ip: str) -> str:
    """A pushed route's network (`remote_host`: the server's address, config/model.py
    route_network); ValueError (the route is skipped, as 2.6) when an IPv6 server gives none."""
    got = route_network(net, remote_ip)
    if got is None:
        raise ValueError(f"remote_host: the server's address {remote_ip} is no IPv4 address")
    return got


def _covers6(net6: str, addr: str) -> bool:
    """Whether the pushed IPv6 route `net6` covers the IPv6 address `addr` (False for anything
    that is not a pair of IPv6 values: a bad route is skipped later, not here)."""
    if ":" not in addr:
        return False
    try:
        n6, plen = _net6(net6)
        return ipaddress.IPv6Address(addr) in ipaddress.IPv6Network(f"{n6}/{plen}", strict=False)
    except ValueError:
        return False


def _is_v4(text: str) -> bool:
    try:
        _v4(text)
        return True
    except ValueError:
        return False


def _v4(text: str) -> int:
    """An IPv4 address as an int, by ipaddress.IPv4Address's rule (four decimal octets, no
    leading zeros; tests/unit/test_pushed_ipv4.py holds the two to the same answers); ValueError
    otherwise. Why not ipaddress: its objects cost ~25 Python calls an address, and each pushed
    route is read two or three times on the way to the first packet."""
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, ValueError):       # ValueError: a NUL in the text, a lone surrogate
        raise ValueError(f"not an IPv4 address: {text!r}") from None


def _ip_value(text: str) -> "int | ipaddress.IPv6Address":
    """What ipaddress.ip_address(text) identifies, compared with ==: an IPv4 address as an int
    (_v4), an IPv6 one as its IPv6Address (a scope id kept); ValueError where ip_address raises
    it. An IPv6 text always holds a ':' and an IPv4 one never does, so the two never compare
    equal, as IPv4Address and IPv6Address do not. Why: the pushed address is checked against the
    server's and the host's on the way to the first packet, where ipaddress's objects cost ~25
    Python calls each (tests/unit/test_pushed_ipv4.py holds both to ipaddress's answers)."""
    return ipaddress.IPv6Address(text) if ":" in text else _v4(text)


def _on_link4(ip: int, addr: int, plen: int) -> bool:
    """Whether IPv4 `ip` lies in `addr`/`plen` (host bits of `addr` ignored), as
    `IPv4Address(ip) in IPv4Network(f"{addr}/{plen}", strict=False)`; ValueError for a
    prefix length beyond 32, as there."""
    if not 0 <= plen <= 32:
        raise ValueError(f"prefix length {plen} out of range")
    return (ip ^ addr) >> (32 - plen) == 0


def _flags(flags: "list[str] | None") -> "tuple[str, ...] | None":
    """redirect-gateway / redirect-private flags as part of the applied push's key: a plain
    `redirect-gateway` (no flags) is not the same push as none."""
    return None if flags is None else tuple(flags)


def did_redirect(opts, pushed) -> bool:
    """init.c do_route's `redirect_gateway` variable: route.c redirected (RG_ENABLE) -- any
    redirect-gateway or redirect-private in effect, unless `!ipv4` took it back (options.c)."""
    if pushed is None:
        return False
    return any(f is not None and "!ipv4" not in f for f in redirect_in_effect(opts, pushed))


def _covers4(net: str, mask: str, addr: str) -> bool:
    """Whether the pushed IPv4 route `net`/`mask` covers the IPv4 address `addr` (False for
    anything that is not a pair of IPv4 values: a bad route is skipped later, not here)."""
    if ":" in addr:
        return False
    try:
        keep = (0xFFFFFFFF << (32 - mask_to_prefix(mask))) & 0xFFFFFFFF    # the network's bits
        return (_v4(addr) ^ _v4(net)) & keep == 0
    except ValueError:
        return False


class _TunAndRoutes:
    """A TUN device with the addresses and routes we added for it; close() removes them, then
    closes the device (best effort). Why the addresses too: a device made beforehand (`ip tuntap
    add`, named by `dev`) outlives our fd and kept the pushed addresses after the exit, where
    OpenVPN 2.6 removes its own (close_tun: undo_ifconfig); a user's own on it are never ours."""
    tun: TunDevice | None
    routes: RouteSet | None
    addrs: AddressSet | None = None
    record: RouteRecord | None = None
    _nl: Rtnl | None = None           # the push's netlink socket, opened with the device (prepare)
    _route_lines = 0                  # lines about pushed routes in this push (_route_line)

    def close(self) -> None:
        try:
            self._close_tun_and_routes()
        finally:
            if self._nl is not None:
                self._nl.close()
                self._nl = None

    def _close_tun_and_routes(self) -> None:
        if self.routes is not None:
            try:
                self.routes.remove_all()
            except Exception as e:  # noqa: BLE001 - best effort on the way out
                log.warning("removing routes: %s", e)
                self._record_routes()           # what could not be removed stays on record
            else:
                if self.record is not None:
                    self.record.close()
            self.routes = None
        elif self.record is not None:
            self.record.close()
        try:
            if self.addrs is not None:
                self.addrs.remove_all()
        except Exception as e:  # noqa: BLE001 - best effort on the way out
            log.warning("removing addresses: %s", e)
        if self.tun is not None:
            self.tun.close()
            self.tun = None

    def _record_routes(self) -> None:
        """Put our routes that outlive the TUN device (all but those through it) on record
        (router/route_record.py), so a run killed before its clean-up has them removed by the next."""
        if self.record is None:
            return
        specs = self.routes.added if self.routes is not None else []
        if not specs:
            self.record.write([])
            return
        try:
            tun = self._tun_index() if self.tun is not None else None
        except RuntimeError:
            tun = None
        self.record.write([dict(s) for s in specs if s["oif"] is None or s["oif"] != tun])

    _index: tuple[object, int] | None = None

    def _tun_index(self) -> int:
        """The TUN device's interface index, looked up once per device (RuntimeError if there
        is none). Why: the push's address, routes and route record each looked it up by name
        (a socket and an ioctl each, ~30 us) on the way to the first packet; the index of an
        open device does not change while we hold it (a rename changes only its name)."""
        tun = self.tun
        if self._index is None or self._index[0] is not tun:
            self._index = (tun, link_index(tun.name))
        return self._index[1]


class TunnelNetwork(_TunAndRoutes):
    """The TUN device and the addresses/routes pushed by the server; kept across reconnects
    (persist-tun), so LAN traffic is dropped while the tunnel is down, never sent in clear."""

    def __init__(self, opts: Options, lan_nets: "tuple | list" = ()) -> None:
        self.opts = opts
        # Router mode: the LAN's networks. A pushed route inside one (more specific than its
        # connected route) sent the appliance's traffic for those LAN hosts into the tunnel:
        # the forwarded answers to them (the tunnel's own, de-NATed) went back into the TUN and
        # were dropped, and the kernel's answers to them (echo replies...) went to the server.
        self.lan_nets = [ipaddress.ip_network(n, strict=False) for n in lan_nets]
        self.tun = None
        self.routes = None
        self.applied: tuple | None = None
        self._reopened = False              # device_reopened: the next same push waits route-delay again
        self._kept_redirect: bool | None = None     # what the last delayed routes' redirect was
        self.addressed = False        # an address went onto the device (ours: self.addrs)
        self.addrs = AddressSet()     # the push's addresses: the next push and close remove exactly those
        self.link_mtu: int | None = None   # the link is up at this MTU
        self.block_ipv6 = False             # the push said block-ipv6: the client answers IPv6 itself
        self.record = RouteRecord(opts.path)

    def prepare(self) -> None:
        """Open the TUN device and bring its link up at the configured MTU, with no address (so no
        route leads into it yet): creating the device and the link are ~0.3-0.5 ms of kernel
        work that would otherwise come after PUSH_REPLY, on the way to the first packet. The
        client calls it before it connects; the device stays as it would after a push
        (persist-tun). First, before any route lookup, the routes a killed run of this profile
        left outside its TUN go (router/route_record.py)."""
        if self.record is not None:
            self.record.take_over()
        if self.tun is None:
            tun = self._open(self.opts.tun_mtu)
            try:
                link_up(tun.name, self.opts.tun_mtu)
                self.link_mtu = self.opts.tun_mtu
                self._tun_index()           # looked up now, not at the push
            except (NetlinkError, OSError, RuntimeError) as e:
                log.warning("tun %s: link not brought up ahead of the push (%s); the push does it", tun.name, e)
        if self._nl is None:
            try:
                # One netlink socket for the push's address and routes, made now: each one made
                # at the push cost ~40 us of kernel work on the way to the first packet.
                self._nl = Rtnl()
            except OSError as e:
                log.warning("netlink socket not opened ahead of the push (%s): one per request", e)

    @property
    def tap(self) -> bool:
        """A layer-2 TAP device (`dev tap`): Ethernet frames, routes via a gateway (see _apply)."""
        return self.opts.dev_type == "tap"

    def _open(self, mtu: int) -> TunDevice:
        kind = self.opts.dev_type
        name = self.opts.dev if self.opts.dev not in (kind, None) else f"{kind}%d"
        try:
            self.tun = tun = TunDevice(name, vnet_hdr=True, mtu=mtu, tap=self.tap)
        except OSError as e:
            raise tun_open_failed(self.opts, kind, name, e) from e
        if (cut := dev_name_cut(self.opts, name, tun.name)) is not None:
            log.warning("%s", cut)
        self.link_mtu = None
        log.info("opened %s device %s (offload %s)", kind.upper(), tun.name, "on" if tun.vnet_hdr else "off")
        if self.opts.lladdr is not None:
            # As OpenVPN 2.6 (init.c do_open_tun: set_lladdr), before the link comes up.
            try:
                with Rtnl() as nl:
                    nl.link_set(self._tun_index(), address=bytes.fromhex(self.opts.lladdr.replace(":", "")))
            except (NetlinkError, OSError, RuntimeError) as e:
                raise PortGone(f"lladdr {self.opts.lladdr} on {tun.name}: {e}") from e
            log.info("tap %s: MAC address %s (lladdr)", tun.name, self.opts.lladdr)
        return tun

    def reach(self, remote_ip: str) -> None:
        """Before connecting to a server: if the routes of the last push (kept while the client
        reconnects, so nothing leaves in clear) would send its packets into our own TUN
        (redirect-gateway, a pushed route or subnet covering it), a host route to it along the
        pre-tunnel default path. Why: failing over to a remote at another address sent its
        handshake into the TUN, and the client never came up again. The route goes with the
        push's routes (the next push, or close). Before the first push: nothing, no netlink work."""
        if self.tun is None or self.routes is None or self.opts.route_noexec:     # route-noexec: the user routes
            return
        try:
            # block-ipv6 on a TUN without IPv6 left ::/1 and 8000::/1 unreachable, or a redirect
            # waiting for its DHCP router holds its halves so (kernel lookups of the server fail
            # outright): such a server goes the pre-tunnel default way.
            # The way past them is _path_past_holds' (a server on the local network: on-link, as
            # before any hold -- the pre-tunnel default's gateway for every address sent a LAN
            # server's packets to a router that may not send them back onto the LAN; review50c).
            refused = self.routes.refuses(":" in remote_ip)
            if refused or RouteSet.goes_via(remote_ip, self.tun.name):
                path = self._path_past_holds(remote_ip)
                if path is None:
                    log.warning("no pre-tunnel route to %s: its packets go into the tunnel", remote_ip)
                    return
                # The last push's own route to this very address (another server pushed `route
                # <this server> 255.255.255.255`) goes first: beside it the kernel refused the host
                # route (EEXIST), and this server's packets went on into the TUN (fuzz48).
                self.routes.drop(remote_ip, self._tun_index())
                # The host's routes are no longer the last push's: the next push is applied in
                # full even if it is the same one (a failback to the server that pushed them).
                # Taken for "already applied", it left its route to this address out and our
                # host route to it in: that address went out in clear all its session (review48d).
                self.applied = None
                self.routes.keep_path_to(remote_ip, path)
                self._record_routes()
                log.info("host route to %s along the pre-tunnel path (past the last push's routes)", remote_ip)
        except (NetlinkError, OSError, RuntimeError, ValueError) as e:
            log.warning("no host route to %s past the tunnel (%s): its packets may go into the tunnel", remote_ip, e)

    def kept_routes(self) -> "list[dict]":
        """The routes restore_routes keeps (live): the route keeper's hints are only about them."""
        return self.routes.added if self.routes is not None and self.tun is not None else []

    def restore_routes(self) -> "tuple[list[dict], list[tuple[dict, str]]]":
        """The routes of the applied push (and the server's host route) the kernel dropped, added
        again (gateway/route_keeper.py: after a link down/up). Nothing before a push or after close."""
        if self.routes is None or self.tun is None:
            return [], []
        try:
            tun = self._tun_index()
        except RuntimeError:
            tun = None
        return self.routes.restore(tun)

    def apply(self, pushed, remote_ip: str) -> None:
        reopened, self._reopened = self._reopened, False
        try:
            self._apply(pushed, remote_ip)
        finally:
            self._record_routes()               # also what a push that failed half-way added
        if reopened and self.routes_waiting is None and self.applied is not None and pushed is not None \
                and self.applied is self._same_as_before and delay_in_effect(self.opts, pushed) is not None:
            # The same push on a device 2.6 would have closed and opened again: its route-delay
            # timer starts anew (init.c do_up, did_open_tun), so >STATE:ADD_ROUTES, >UPDOWN:UP,
            # route-up and CONNECTED wait N seconds again. The routes stay in meanwhile (2.6
            # deletes them at the close: its traffic for them goes out in clear until then).
            self.routes_waiting = (pushed, remote_ip, False, "kept", None)
            log.info("route-delay %d: >UPDOWN:UP and route-up wait again, the routes kept in (as OpenVPN 2.6 "
                     "reopening its device without persist-tun)", delay_in_effect(self.opts, pushed)[0])

    def device_reopened(self) -> None:
        """The client's restart closed the device the 2.6 way (no persist-tun, or a changed push):
        ours keeps it, but the next tunnel-up is a first one for route-delay (apply)."""
        self._reopened = True

    _same_as_before: object = None          # apply: the key _apply found already applied (no change)

    def _apply(self, pushed, remote_ip: str) -> None:
        if pushed is not None and self.tap:
            # As OpenVPN 2.6 on a tap device: `ifconfig IP NETMASK` is always an address with its
            # netmask (no peer: the topology is not asked), and no ifconfig at all is a bridged
            # server's way (`server-bridge`: the address comes from DHCP on the tap, an up script's).
            pushed = replace(pushed, topology="subnet")
            if pushed.ifconfig is None:
                self._apply_bare_tap(pushed, remote_ip)
                return
        if pushed is None or pushed.ifconfig is None:
            raise RuntimeError("server pushed no ifconfig")
        mtu = self._device_at(pushed)
        # remote_ip: a new server with the same push still needs its own host route
        key = (pushed.ifconfig, pushed.topology, tuple(pushed.routes), _flags(pushed.redirect_gateway),
               _flags(pushed.redirect_private), mtu,
               tuple((gw, tuple(w)) for gw, w in getattr(pushed, "redirect_lines", ())),   # their order counts
               pushed.ifconfig_ipv6, tuple(pushed.routes_ipv6), remote_ip, pushed.block_ipv6, pushed.route_metric,
               pushed.route_gateway, getattr(pushed, "route_delay", None))
        if self._unchanged(key):
            return
        # `pushed` is the server's options with the profile's own (openvpn/profile_push.py): under
        # route-nopull the server's routes, redirect and block-ipv6 never got into it, and the
        # profile's stay, as with OpenVPN 2.6 (route-nopull only refuses pushed options).
        self.block_ipv6 = pushed.block_ipv6
        self._routes_replaced()
        # The paths that exist without the tunnel (OpenVPN's net_gateway), looked up before any
        # tunnel route goes in: excluded routes and block-local use them. Only when the push
        # has such a route: each lookup is a dump of the routing table, on the way to the first packet.
        need4, need6 = self._net_gateway_needed(pushed)
        ng4 = RouteSet.net_gateway(False, not_dev=self.tun.name) if need4 else None
        ng6 = RouteSet.net_gateway(True, not_dev=self.tun.name) if need6 else None
        # The way to the server too, for redirect-gateway's host route (OpenVPN takes it from the
        # default gateway it found before any tunnel route): looked up after the tunnel's address
        # and routes, a pushed route or a subnet covering the server's address sent the server's
        # own packets into the tunnel, and the tunnel died of it.
        server_path = (self._path_past_holds(remote_ip)
                       if self._server_needs_host_route(pushed, remote_ip) else None)
        local, second = pushed.ifconfig
        self._address_outside_lan(pushed)
        self._subnet_not_a_redirect(pushed)
        self._address_not_claimed(pushed, remote_ip)
        # The last push's addresses go (only ours: a device made beforehand may hold a user's own).
        self.addrs.remove_all(self._nl)
        self.addressed = True
        link = self.link_mtu != mtu
        if pushed.topology == "subnet":
            prefix = mask_to_prefix(second)
            configure_tun(self.tun.name, local, prefix, mtu, flush=False, link=link, index=self._tun_index(),
                          nl=self._nl, added=self.addrs)
        else:
            configure_tun(self.tun.name, local, 32, mtu, peer=second, flush=False, link=link,
                          index=self._tun_index(), nl=self._nl, added=self.addrs)
        self.link_mtu = mtu
        self.tun.note_local(local)      # the device's address now: the last push's went above
        log.info("%s %s: address %s %s (topology %s), mtu %d", self.opts.dev_type, self.tun.name, local, second,
                 "none: tap" if self.tap else pushed.topology, mtu)
        has6 = False
        if pushed.ifconfig_ipv6 is not None:
            addr6, _, plen = pushed.ifconfig_ipv6[0].partition("/")
            add_address6(self.tun.name, addr6, int(plen or 64), added=self.addrs)
            log.info("tun %s: IPv6 address %s", self.tun.name, pushed.ifconfig_ipv6[0])
            has6 = True
        if routes_wait_for_dhcp(self.opts, pushed):
            self._wait_for_router(pushed, remote_ip, has6, server_path)
        elif waits_for_router_alone(self.opts, pushed, self._redirect4(pushed)):
            self._wait_for_router(pushed, remote_ip, has6, server_path, alone=True)
        elif delay_in_effect(self.opts, pushed) is not None:
            self._wait_for_delay(pushed, remote_ip, has6, "routes", server_path)
        elif self.opts.route_noexec:
            # As OpenVPN 2.6 (init.c: no do_route): the user routes; we add nothing, not even the
            # server's host route, and say what was left out.
            log.info("route-noexec: no routes added (%d pushed route(s), %d route-ipv6, redirect-gateway %s; "
                     "%d in the config)", len(pushed.routes), len(pushed.routes_ipv6),
                     "pushed" if pushed.redirect_gateway is not None else
                     "in the config" if self.opts.redirect_gateway is not None else "none", len(self.opts.route))
        else:
            self._all_routes(pushed, remote_ip, ng4, ng6, has6, server_path)
        if self.routes_waiting is None:
            self.routes.release_holds()         # the last push's redirect, covered until now
        if pushed.dns:
            # applied (or not) by host/resolver.py; a push may name ~1000 (eventlog.MAX_SUMMARY_ITEMS)
            log.info("server pushed DNS %s", some_of(pushed.dns, "servers", ", "))
        self.applied = key

    def _all_routes(self, pushed, remote_ip: str, ng4, ng6, has6: bool, server_path,
                    redirect_via: str | None = None) -> None:
        """The pushed routes and the profile's `route` lines (the push's address already set)."""
        self._pushed_routes(pushed, remote_ip, ng4, ng6, has6, server_path, redirect_via)
        default_metric = getattr(pushed, "route_metric", None) or None     # route-metric (0: none)
        for route in self.opts.route:
            r = route.resolved(remote_ip)
            if r is None:
                log.warning("route remote_host %s: the server's address %s is no IPv4 address; skipped",
                            route.netmask, remote_ip)
                continue
            net, mask, gw, metric = r
            m = metric if metric is not None else default_metric
            if self.tap or gw == "net_gateway":
                # Via a gateway, as the pushed ones (_route4): tap's, or the pre-tunnel way (a
                # profile's `route X Y net_gateway` went into the tunnel before, the opposite).
                try:
                    self._route4(net, mask or "255.255.255.255", gw, m, ng4, self._gateway4(pushed))
                except (ValueError, NetlinkError, OSError) as e:
                    log.warning("route %s %s: not installed (%s); skipped", net, mask,
                                _refused(net, mask or "255.255.255.255", e))
                continue
            prefix = mask_to_prefix(mask or "255.255.255.255")
            try:
                added = self.routes.add(net, prefix, dev=self.tun.name, metric=m)
            except (NetlinkError, OSError) as e:
                # As OpenVPN 2.6 ("ERROR: Linux route add command failed", and on): one route the
                # kernel refuses -- host bits outside the mask (EINVAL), among others -- is said
                # and left out, the tunnel and the other routes stay. It stopped the push's apply
                # before, and the client reconnected each second for as long as it ran.
                log.error("route %s %s: not installed, the kernel refused it (%s); skipped", net, mask,
                          route_refusal(net, prefix, e))
                continue
            if added:
                log.info("route %s/%d dev %s", net, prefix, self.tun.name)
            else:
                log.warning("route %s/%d: the host already has a route for it (left as it is); not through "
                            "the tunnel", net, prefix)

    # route-delay (gateway/route_delay.py): what the routes wait with -- (pushed, remote_ip, has6,
    # kind, the server's pre-tunnel path or None): "routes" (added as at tunnel-up), "dhcp" (route-gateway dhcp: redirect-gateway via
    # the router learned by then), "none" (a bare tap: nothing can go in) -- and whether they are
    # going in now (_wait_for_router said which of them cannot: not said again).
    routes_waiting: tuple | None = None
    _delayed = False
    # The routes waiting for a DHCP router without route-delay (route_delay.waits_for_router_alone):
    # the client's deadline is ROUTER_WAIT, and a router ends the wait at once.
    router_alone = False

    def _wait_for_delay(self, pushed, remote_ip: str, has6: bool, kind: str, server_path=None) -> None:
        """route-delay: no route now; the client calls add_waiting_routes once the delay is over.
        But for the server's host route along `server_path` (the pre-tunnel path, looked up
        before the tunnel's address went on), when the push needs one: 2.6 adds it with the rest,
        so a pushed subnet covering the server's address took the server's packets into the
        tunnel until then -- each read back out of the TUN, sealed and sent into it again, a
        loop on a core for as long as a (hostile) server's pushed delay."""
        self.routes_waiting = (pushed, remote_ip, has6, kind, server_path)
        if server_path is not None and self.routes is not None and not self.opts.route_noexec:
            self.routes.keep_path_to(remote_ip, server_path)
        if kind == "routes":        # (dhcp: held by _wait_for_router, said with its own words there)
            held = self._hold_redirect(pushed, remote_ip, server_path)
            log.info("route-delay %d: the routes, >UPDOWN:UP and route-up wait (as OpenVPN 2.6)%s",
                     delay_in_effect(self.opts, pushed)[0],
                     "; the redirect's traffic refused as unreachable meanwhile, never sent outside the tunnel "
                     "(2.6 sends it out the host's own route until then)" if held else "")

    def _wait_for_router(self, pushed, remote_ip: str, has6: bool, server_path=None, alone: bool = False) -> None:
        """route-delay with route-gateway dhcp (or, `alone`, a redirect with route-gateway dhcp
        and no route-delay: route_delay.waits_for_router_alone): no route now (but the server's
        host route, as _wait_for_delay); the client calls add_waiting_routes once the delay is
        over (`alone`: once a DHCP router came, at most ROUTER_WAIT s). Said as 2.6 says it at
        this point: the routes that can never have a gateway (none of their own, or vpn_gateway)
        are dropped now, before any reply came. The redirect's halves are held unreachable
        meanwhile (RouteSet.hold_halves): 2.6 lets that traffic out the host's own default route
        until its routes go in, which the user's redirect asked it not to."""
        self.router_alone = alone
        held = self._hold_redirect(pushed, remote_ip, server_path)
        self._wait_for_delay(pushed, remote_ip, has6, "dhcp", server_path)
        gateless = [f"{n} {m}" for n, m, g, _x in [*pushed.routes, *self.opts.route]
                    if g is None or not _is_v4(g) and g != "net_gateway"]
        if gateless:
            log.warning("route-gateway dhcp: %d route(s) with no gateway of their own (%s%s) not installed: the "
                        "gateway comes from a DHCP reply after the route list is made, as OpenVPN 2.6 drops "
                        "them (\"needs a gateway parameter\")", len(gateless), ", ".join(gateless[:3]),
                        ", ..." if len(gateless) > 3 else "")
        held_text = " (the redirect's traffic refused as unreachable meanwhile, never sent outside the tunnel)" \
            if held else ""
        if alone:
            log.warning("route-gateway dhcp with redirect-gateway and no route-delay: the routes, >UPDOWN:UP and "
                        "route-up wait for the router of a DHCP ACK on %s, at most %d s (route-delay's default "
                        "window), as route-delay would%s; OpenVPN 2.6 would come up unredirected, all traffic "
                        "outside the tunnel", self.tun.name, ROUTER_WAIT, held_text)
        else:
            log.info("route-delay %d: routes and route-up wait (route-gateway dhcp: redirect-gateway via the router "
                     "a DHCP ACK gives by then)%s", delay_in_effect(self.opts, pushed)[0], held_text)

    def _hold_redirect(self, pushed, remote_ip: str, server_path=None) -> bool:
        """While this push's routes wait (route-delay, or route-gateway dhcp's router), what its
        redirect would take into the tunnel is refused by the host instead: the halves of each
        family it redirects (RouteSet.hold_halves) and, with `block-local`, the local network's
        (RouteSet.block_local held: its gateway kept direct). The server's own host route goes in
        first (the tunnel's way out). 2.6 sends all of it out the host's own routes until its
        routes go in; the user's redirect asked it not to (tapredir49; explicit route-delay and
        block-local since redirect50). The last push's holds of a family this one does not
        redirect go. -> whether anything is held. A hold the host refuses fails the push."""
        redirect4 = self._redirect4(pushed)
        redirect6 = self._redirect6(pushed)
        local = self._blocks_local(pushed, redirect4)       # (redirect-private's too)
        held = False
        if (redirect4 or redirect6 or local) and not self.opts.route_noexec:
            if self.routes is None:
                self.routes = RouteSet(self._nl)
            if server_path is None and self._server_needs_host_route(pushed, remote_ip):
                server_path = self._path_past_holds(remote_ip)
            if server_path is not None:
                self.routes.keep_path_to(remote_ip, server_path)      # before the holds: the tunnel's own way
            for v6 in (False, True):
                if not (redirect6 if v6 else redirect4):
                    continue
                try:
                    self.routes.hold_halves(v6)
                    held = True
                except NetlinkError as e:
                    if v6 and not os.path.isdir("/proc/sys/net/ipv6"):
                        continue                # a host without IPv6: nothing to hold
                    raise _redirect_refused(f"{'IPv6 redirect' if v6 else 'redirect-gateway def1'} held "
                                            "while the routes wait", self.tun.name, None, e) from e
            if local:
                ng4 = RouteSet.net_gateway(False, not_dev=self.tun.name)
                net = self.routes.block_local(self.tun.name, ng4, hold=True) if ng4 is not None else None
                if net is not None:
                    held = True
                    log.info("redirect-gateway block-local: %s refused as unreachable until the routes go in "
                             "(its gateway kept direct)", net)
        if self.routes is not None:
            for v6 in (False, True):
                if self.opts.route_noexec or not (redirect6 if v6 else redirect4 or local):
                    self.routes.release_holds(v6)   # the last push's, not this one's (_routes_replaced)
            if not local:
                # The last push's block-local network (carried over by take_holds): this push does
                # not block it, so it is reached directly while this one's routes wait (review50c).
                self.routes.release_holds(False, local_only=True)
        return held

    def _blocks_local(self, pushed, redirect4: bool) -> bool:
        """Whether this push's redirect (or redirect-private) asks for `block-local`."""
        flags = redirect_in_effect(self.opts, pushed)[0]
        priv = self._private(pushed)
        return bool((redirect4 and flags and "block-local" in flags)
                    or (priv is not None and "block-local" in priv and "!ipv4" not in priv))

    def _redirect6(self, pushed) -> bool:
        """Whether this push's routes redirect IPv6 (redirect-gateway ipv6, block-ipv6, or a
        pushed route-ipv6 ::/0), with or without ifconfig-ipv6."""
        return (redirect_defaults(self.opts, pushed)[1] or pushed.block_ipv6
                or any(self._default6(n6, g6) for n6, g6, _x in pushed.routes_ipv6))

    def add_waiting_routes(self, router: str | None) -> bool | None:
        """route-delay is over: the routes that waited, as they would have gone in at tunnel-up;
        with route-gateway dhcp (_wait_for_router) redirect-gateway via `router` (the DHCP ACK's;
        None: none came -- a redirect then raises RuntimeError, _redirect_without_gateway, where 2.6
        runs on without it; the client ends the connection). -> whether IPv4 redirect-gateway was done
        (route-up's redirect_gateway); None, nothing done, when nothing waits, nothing can go in
        (a bare tap) or route-noexec (2.6's do_route then sets no redirect_gateway)."""
        w, self.routes_waiting = self.routes_waiting, None
        if w is None or self.tun is None:
            return None
        pushed, remote_ip, has6, kind, kept_path = w
        if kind == "none":
            return None
        if kind == "kept":              # in since the last connection's delay (apply): as then
            return None if self.opts.route_noexec else self._kept_redirect
        if self.routes is None:
            self.routes = RouteSet(self._nl)
        try:
            if self.opts.route_noexec:
                log.info("route-noexec: no routes added (route-delay over)")
                return None
            need4, need6 = self._net_gateway_needed(pushed)
            ng4 = RouteSet.net_gateway(False, not_dev=self.tun.name) if need4 else None
            ng6 = RouteSet.net_gateway(True, not_dev=self.tun.name) if need6 else None
            server_path = kept_path if kept_path is not None else (
                self._path_past_holds(remote_ip)
                if self._server_needs_host_route(pushed, remote_ip) else None)
            self._delayed = kind == "dhcp"
            try:
                self._all_routes(pushed, remote_ip, ng4, ng6, has6, server_path,
                                 redirect_via=(router or "") if kind == "dhcp" else None)
            except (NetlinkError, OSError, ValueError) as e:
                # As 2.6's delayed do_route: a route the host refuses is logged, the tunnel stays.
                log.warning("route-delay: routes not all installed (%s)", e)
                # The holds the redirect's halves replaced go; one whose half did not go in (the
                # server's host route refused before them) keeps refusing that traffic: released,
                # it left outside the tunnel with the tunnel up (review49e).
                self.routes.release_holds(replaced_only=True)
                return False
            except RuntimeError:
                # The redirect failed (no router): the connection ends with its holds kept until
                # the next push replaces them (no leak meanwhile); that push, the same or not, is
                # applied in full, so its routes wait again.
                self.applied = None
                raise
            self.routes.release_holds()         # the real halves are in (or none was asked)
            if kind == "routes":
                self._kept_redirect = did_redirect(self.opts, pushed)
            else:
                self._kept_redirect = router is not None and self._redirect4(pushed)
            return self._kept_redirect
        finally:
            self._delayed = False
            self._record_routes()

    def _routes_replaced(self) -> None:
        """The last push's routes go, a new RouteSet in their place. Why not remove_all alone: the
        last push's redirect halves (or their holds) gone, traffic to the outside took the host's
        own default route until the new push's halves or holds went in (a failover, a changed
        push, the push after a failed DHCP-router wait), while the client keeps the routes across
        a reconnect so that nothing leaves outside the tunnel. Their holds (hold_halves) go in
        first, or stay, and the new push's routes beat them or keep them (release_holds after)."""
        old, self.routes = self.routes, RouteSet(self._nl)
        if old is None:
            return
        try:
            self.routes.take_holds(old)
            for v6 in (False, True):
                if old.redirects(v6) and not self.routes.redirects(v6) and not self.opts.route_noexec:
                    try:
                        self.routes.hold_halves(v6)
                    except NetlinkError as e:   # (a host without IPv6): the old way, removed alone
                        log.warning("the last push's %s redirect not held while the next push is applied: %s",
                                    "IPv6" if v6 else "IPv4", e)
        finally:
            old.remove_all()

    def _path_past_holds(self, remote_ip: str):
        """RouteSet.path_to(remote_ip) off the tunnel; with our holds refusing that family (the
        kernel's lookup fails), the pre-tunnel default's way, as reach() takes it -- on-link for
        a server in block-local's held network (its way before the holds)."""
        if self.routes is not None and self.routes.refuses(":" in remote_ip):
            got = RouteSet.path_to(remote_ip, not_dev=self.tun.name) or self.routes.held_local_path(remote_ip)
            return got if got is not None else RouteSet.net_gateway(":" in remote_ip, not_dev=self.tun.name)
        return RouteSet.path_to(remote_ip, not_dev=self.tun.name)

    def router_on_link(self, router: str) -> bool:
        """Whether the tap has an address on `router`'s network yet. Why: the DHCP router is read
        from the ACK on its way to the tap, before the DHCP client there has taken the address
        the ACK gives, so a route via it made at once is refused (ENETUNREACH); without
        route-delay's fixed wait the client waits for this too (True when it cannot tell: the
        routes' own add then says)."""
        try:
            return (self.routes or RouteSet(self._nl)).on_link(router, self._tun_index())
        except (NetlinkError, OSError, RuntimeError, ValueError):
            return True

    def _redirect4(self, pushed) -> bool:
        """Whether this push's routes redirect the IPv4 default route (redirect-gateway without
        !ipv4, or a pushed default route)."""
        return redirect_defaults(self.opts, pushed)[0] or any(self._default4(*r) for r in pushed.routes)

    def _device_at(self, pushed) -> int:
        """The device (opened on the first push) at this push's MTU, else the profile's; the MTU."""
        mtu = device_mtu(self.opts, pushed)
        if self.tun is None:
            self._open(mtu)
        self.tun.mtu = mtu
        return mtu

    def _unchanged(self, key: tuple) -> bool:
        """Whether `key` (what a push would set on the host) is what the host already has: then
        nothing is redone and the push is marked the same as before (a reconnect's route-delay
        check reads that). Otherwise the last push is forgotten before anything changes: a push
        that fails half-way (a value the kernel refuses) has removed the routes of the last one,
        so the same push coming back after the reconnect must be applied in full, not taken for
        what the host still has."""
        if key == self.applied:
            self._same_as_before = self.applied
            return True
        self._same_as_before = None
        self.applied = None
        self.routes_waiting = None
        self.router_alone = False
        return False

    def _apply_bare_tap(self, pushed, remote_ip: str = "") -> None:
        """A tap push without ifconfig (server-bridge without a pool): the device up at its MTU
        with no address from us, as OpenVPN 2.6's client leaves it; the profile's up script (or
        the user) gives it one, typically by DHCP through the bridge. No routes: the gateway
        (`route-gateway dhcp`, which such a server pushes) is learned from that DHCP reply only
        after the routes were set, so 2.6 skips those needing it ("needs a gateway parameter");
        any pushed ones are named and skipped here too."""
        mtu = self._device_at(pushed)
        key = ("bare-tap", mtu, tuple(pushed.routes), tuple(pushed.routes_ipv6), pushed.redirect_gateway,
               pushed.route_gateway, getattr(pushed, "route_delay", None))
        if self._unchanged(key):
            return
        self._routes_replaced()
        self.block_ipv6 = pushed.block_ipv6
        if self.addressed:                      # a last push's address: not this server's network now
            self.addrs.remove_all()
            self.addressed = False
        if self.link_mtu != mtu:
            link_up(self.tun.name, mtu)
            self.link_mtu = mtu
        log.info("tap %s: up without an address (the server pushed no ifconfig; an up script or DHCP gives "
                 "it one), mtu %d", self.tun.name, mtu)
        skipped = len(pushed.routes) + len(pushed.routes_ipv6) + (pushed.redirect_gateway is not None)
        alone = waits_for_router_alone(self.opts, pushed, self._redirect4(pushed))
        dhcp = routes_wait_for_dhcp(self.opts, pushed) or alone
        if not dhcp and not self.opts.route_noexec and self._redirect4(pushed):
            raise self._redirect_without_gateway(pushed, False, bare=True)
        if dhcp:
            self._wait_for_router(pushed, remote_ip, False, alone=alone)
        else:
            self.routes.release_holds()         # the last push's redirect, covered until now
        if not dhcp and delay_in_effect(self.opts, pushed) is not None:
            self._wait_for_delay(pushed, remote_ip, False, "none")      # no route; >UPDOWN:UP and route-up wait
        if not dhcp and (skipped or pushed.ifconfig_ipv6 is not None):
            gw = pushed.route_gateway or self.opts.route_gateway or "none"
            log.warning("tap %s: %d pushed route(s)/redirect-gateway and %s skipped: without a pushed ifconfig "
                        "there is no route-gateway to send them to (route-gateway %s%s)", self.tun.name, skipped,
                        "ifconfig-ipv6" if pushed.ifconfig_ipv6 is not None else "no IPv6", gw,
                        ": the DHCP reply on the tap gives it only after the routes are set, and OpenVPN 2.6 "
                        "skips them too" if gw == "dhcp" else "")
        self.applied = key

    def _gateway4(self, pushed) -> str | None:
        """A tap device's IPv4 route gateway (OpenVPN 2.6's route-gateway: the pushed one, else the
        profile's); None on a tun device (routes go out of the device) or when there is none
        usable (`dhcp`: not read here, said once per push)."""
        if not self.tap:
            return None
        gws = [g for g in (pushed.route_gateway, self.opts.route_gateway) if g is not None]
        for gw in gws:                  # the pushed one first; `dhcp` beside an address: the address
            if gw != "dhcp":
                break
        else:
            if gws:
                # As OpenVPN 2.6 on Linux: its routes are set as the tap comes up, before any DHCP
                # reply can give the gateway (openvpn/dhcprouter.py reads it then), so those needing
                # one are skipped ("needs a gateway parameter"); a redirect's routes wait for the
                # router instead, with route-delay or without (route_delay.waits_for_router_alone).
                if not self._delayed:
                    self._route_line(logging.WARNING, "route-gateway dhcp: no gateway yet as the routes are set "
                                     "(it comes from the DHCP reply on the tap later); routes needing it are "
                                     "skipped, as OpenVPN 2.6's")
            return None
        try:
            _v4(gw)
        except ValueError:
            self._route_line(logging.WARNING, "route-gateway %s: not an IPv4 address this client can route via; "
                             "routes needing it are skipped", gw)
            return None
        return gw

    def _gateway6(self, pushed) -> str | None:
        """A tap device's IPv6 route gateway: ifconfig-ipv6's second address, as OpenVPN 2.6's
        route.c (the remote endpoint, on tap only); None: out of the device itself."""
        if not self.tap or pushed.ifconfig_ipv6 is None or not pushed.ifconfig_ipv6[1]:
            return None
        return pushed.ifconfig_ipv6[1].partition("/")[0]

    def _net_gateway_needed(self, pushed) -> tuple[bool, bool]:
        """Whether the IPv4 / IPv6 net_gateway is used: `net_gateway` routes, block-local."""
        if self.opts.route_noexec:
            return False, False
        flags = redirect_in_effect(self.opts, pushed)[0]
        if flags is None and (priv := self._private(pushed)) is not None and "!ipv4" not in priv:
            flags = priv
        need4 = (any(gw == "net_gateway" for _n, _m, gw, _x in [*pushed.routes, *self.opts.route])
                 or "block-local" in (flags or ()))
        need6 = any(gw6 == "net_gateway_ipv6" for _n, gw6, _x in pushed.routes_ipv6)
        return need4, need6

    def _private(self, pushed) -> "set[str] | None":
        """The redirect-private flags where redirect-private applies alone: no redirect-gateway
        (the server's or the profile's) in effect; with one, its flags are merged into the
        redirect's (redirect_in_effect), as 2.6 ORs every such line into one route list's flags
        (options.c); route-nopull and pull-filter keep a pushed one out like any route."""
        return redirect_in_effect(self.opts, pushed)[1]

    def _server_needs_host_route(self, pushed, remote_ip: str) -> bool:
        """Whether the server needs its host route along the pre-tunnel path: this push may
        redirect the default route (redirect-gateway, or a pushed default route), or a pushed
        route (IPv4 or IPv6) or the pushed subnet (IPv4 or IPv6) covers its address. Why IPv4 too (OpenVPN
        checks only IPv6 routes): a hostile server pushing `route <its address>`, or 0.0.0.0/1
        without redirect-gateway, sent the client's packets to it into the TUN, where each came
        back out of the pump to the same route, a loop that kept a core busy (~95% CPU in the
        lab) until ping-restart."""
        if self.opts.route_noexec:
            return False
        flags = redirect_in_effect(self.opts, pushed)[0]
        if flags is not None and ("!ipv4" not in flags or "ipv6" in flags):
            return True
        priv = self._private(pushed)
        if priv is not None and (("!ipv4" not in priv and "local" not in priv and ":" not in remote_ip)
                                 or ("ipv6" in priv and ":" in remote_ip)):
            # redirect-private: the IPv4 server's host route, as OpenVPN 2.6 adds it without
            # redirecting (`autolocal` too: for a server on a local network the route goes
            # on-link, as its packets went anyway); `ipv6` redirects IPv6 as redirect-gateway's.
            return True
        if any(m in ("0.0.0.0", "0") for _n, m, _g, _x in pushed.routes):
            return True
        if any(g != "net_gateway" and _covers4(route_network(n, remote_ip) or n, m, remote_ip)
               for n, m, g, _x in [*pushed.routes, *self.opts.route]):   # `remote_host`: the server's own
            return True
        if pushed.ifconfig is None:
            pass                        # a bare tap (route-delay's routes): no subnet of ours
        elif (_covers4(*pushed.ifconfig, remote_ip) if pushed.topology == "subnet"
                else remote_ip in pushed.ifconfig):
            return True
        if pushed.ifconfig_ipv6 is not None:
            addr6, _, plen = pushed.ifconfig_ipv6[0].partition("/")
            if _covers6(f"{addr6}/{plen or 64}", remote_ip):     # as apply() puts it on the TUN
                return True
        return any(gw6 != "net_gateway_ipv6" and _covers6(n6, remote_ip) for n6, gw6, _x in pushed.routes_ipv6)

    def _pushed_routes(self, pushed, remote_ip: str, ng4, ng6, has6: bool, server_path=None,
                       redirect_via: str | None = None) -> None:
        """Routes as OpenVPN applies them: `net_gateway` ones go the pre-tunnel way, a pushed
        default route is split in two halves (the real default stays, as with def1), and
        redirect-gateway honours its `ipv6`, `!ipv4` and `block-local` flags. `redirect_via`:
        the gateway of the IPv4 redirect alone (route-delay's DHCP router; "": none learned),
        as 2.6's redirect reads its vpn_gateway when it is done, a route's at tunnel-up."""
        tun, routes = self.tun.name, self.routes
        assert routes is not None
        self._route_lines = 0
        gw4, gw6 = self._gateway4(pushed), self._gateway6(pushed)
        flags = redirect_in_effect(self.opts, pushed)[0]
        redirect4, redirect6 = redirect_defaults(self.opts, pushed)
        priv = self._private(pushed)
        if priv is not None:
            # Its host route came with server_path (above); block-local as redirect-gateway's.
            log.info("redirect-private: server %s kept on the old default route, default route unchanged%s",
                     remote_ip, "" if server_path is not None else " (no host route: local, or an IPv6 server)")
        # block-ipv6 (OpenVPN: as redirect-gateway ipv6): all IPv6 into the TUN, where the client
        # answers it with "no route" (gateway/block_ipv6.py), so none leaves outside the tunnel.
        redirect6 = redirect6 or self.block_ipv6
        # A pushed default route: the two halves, like def1 (found ahead, see below).
        redirect4 = redirect4 or any(self._default4(*r) for r in pushed.routes)
        # (route-ipv6 ::/0 without ifconfig-ipv6 too: 2.6.14 adds `::/0 dev tun0` all the same,
        # behind the host's own IPv6 default at the same metric -- IPv6 then leaves outside the
        # tunnel there; redirect50. Ours: enforced below as redirect-gateway ipv6 is.)
        default6 = any(self._default6(n6, g6) for n6, g6, _x in pushed.routes_ipv6)
        redirect6 = redirect6 or default6
        if server_path is not None:
            # Ahead of the pushed routes, as OpenVPN adds it: a pushed route for the server's
            # own address must not take its place (the kernel keeps the first of the two).
            routes.keep_path_to(remote_ip, server_path)
        # The redirect's halves ahead of the pushed routes too, as OpenVPN (route.c add_routes:
        # the redirect before the route list): pushed `0.0.0.0/1 net_gateway` and `128.0.0.0/1
        # net_gateway` went in first, the halves were then "already there", and all traffic left
        # outside the tunnel while the log said redirect-gateway (the profile's own, too).
        rgw4 = gw4 if redirect_via is None else (redirect_via or None)
        if redirect4 and self.tap and rgw4 is None:
            raise self._redirect_without_gateway(pushed, redirect_via is not None)
        if redirect4:
            try:
                routes.add_redirect_gateway_def1(tun, remote_ip, server_path, gateway=rgw4)
            except NetlinkError as e:
                raise _redirect_refused("redirect-gateway def1", tun, rgw4, e) from e
            log.info("redirect-gateway def1 via %s%s (server %s kept on the old default route)", tun,
                     f" gateway {rgw4}" if rgw4 else "", remote_ip)
        said6 = "route-ipv6 ::/0" if default6 and not redirect_defaults(self.opts, pushed)[1] else \
            "redirect-gateway ipv6"
        if redirect6 and not has6 and not self.block_ipv6:
            # `redirect-gateway ipv6` (or a profile's) with no ifconfig-ipv6: the tunnel carries
            # no IPv6, and the user asked for IPv6 inside it, not outside. 2.6.14 adds its IPv6
            # redirect routes out of the device all the same ("WARNING: ... no IPv6 has been
            # configured for tun0, therefore the route installation may fail"), so IPv6 goes
            # into a tunnel that cannot carry it; ours routes it there too and answers it as
            # block-ipv6 does (unreachable, never sent), or, on a device that takes no IPv6,
            # has the host refuse it -- enforced, never left outside (tapredir49).
            # A tap is the exception: its bridge carries the LAN's own IPv6 (link-local, an
            # address from the LAN's router advertisements or DHCPv6, as DHCP gives IPv4), so
            # IPv6 goes into it as with 2.6.14, inside the tunnel, not dropped (review49e).
            if self.tap:
                log.warning("%s without ifconfig-ipv6: IPv6 is routed into %s (as OpenVPN "
                            "2.6), to the bridged LAN's IPv6, never sent outside the tunnel", said6, tun)
            else:
                self.block_ipv6 = True
                log.warning("%s without ifconfig-ipv6: the tunnel carries no IPv6, so IPv6 is "
                            "routed into %s and refused there (as block-ipv6), never sent outside the tunnel",
                            said6, tun)
        if redirect6:
            if has6 or self.block_ipv6 or self.tap:
                try:
                    routes.add_redirect_gateway_ipv6(tun, remote_ip, server_path, gateway=gw6)
                except NetlinkError as e:
                    if has6:            # the IPv6 redirect or block-ipv6: enforced or the push refused
                        raise _redirect_refused("IPv6 redirect", tun, gw6, e) from e
                    self._block_ipv6_without_tun(e)
                else:
                    log.info("IPv6 redirected: ::/1 and 8000::/1 via %s%s", tun,
                             " (block-ipv6: answered as unreachable, never sent)" if self.block_ipv6 else "")
        for net, mask, gw, metric in pushed.routes:
            try:
                self._route4(_pushed_network(net, remote_ip), mask, gw, metric, ng4, gw4)
            except (ValueError, NetlinkError, OSError) as e:
                # As OpenVPN: a route the host refuses is reported and skipped, the tunnel stays.
                self._route_line(logging.WARNING, "pushed route %s %s: not installed (%s); skipped", net, mask,
                                 _refused(net, mask, e))
        for net6, g6, metric6 in pushed.routes_ipv6:
            try:
                self._route6(net6, g6, ng6, has6, metric6, gw6)
            except (ValueError, NetlinkError, OSError) as e:
                self._route_line(logging.WARNING, "pushed route-ipv6 %s: not installed (%s); skipped", net6, e)
        if self._route_lines > MAX_ROUTE_LINES:
            log.warning("%d more lines about pushed routes not shown (%d route and route-ipv6 pushed)",
                        self._route_lines - MAX_ROUTE_LINES, len(pushed.routes) + len(pushed.routes_ipv6))
        if self._blocks_local(pushed, redirect4):
            net = routes.block_local(tun, ng4) if ng4 is not None else None
            if net is None:
                log.warning("redirect-gateway block-local: no local network found to block")
            else:
                log.info("redirect-gateway block-local: %s only through %s (its gateway kept direct)", net, tun)

    def _redirect_without_gateway(self, pushed, delay_over: bool, bare: bool = False) -> RuntimeError:
        """The push's failure (the client starts over with its restart pause) when a tap's IPv4
        redirect has no gateway to go via: no `route-gateway` pushed or in the profile (or none
        usable), or `route-gateway dhcp` when no DHCP ACK gave a router by route-delay's end (or,
        without route-delay, by ROUTER_WAIT: route_delay.waits_for_router_alone); `bare`:
        a push without ifconfig (_apply_bare_tap), whose routes go in only by DHCP's router. Why
        not warn and run on, as OpenVPN 2.6.14 does ("not redirected" in effect: it logs that the
        gateway is missing, then "Initialization Sequence Completed"): the user asked for all
        traffic in the tunnel, and a tunnel up without the redirect sends it outside while it looks
        protected -- as a redirect the kernel refuses (_redirect_refused, review48b; tapredir48)."""
        what = f"redirect-gateway via {self.tun.name}"
        tail = "; the tunnel is not brought up without it, traffic would leave outside it"
        if delay_over and self.router_alone:
            return RuntimeError(f"{what}: no DHCP ACK gave a router within {ROUTER_WAIT} s (route-gateway dhcp "
                                "without route-delay: the routes wait for one at most route-delay's default "
                                f"window){tail}")
        if delay_over:
            return RuntimeError(f"{what}: no DHCP ACK gave a router within route-delay "
                                f"{delay_in_effect(self.opts, pushed)[0]} s (route-gateway dhcp){tail}")
        gws = [g for g in (pushed.route_gateway, self.opts.route_gateway) if g is not None]
        if gws and all(g == "dhcp" for g in gws):
            # (Not reached by a redirect: with route-gateway dhcp its routes wait for the router,
            # with route-delay or without -- route_delay.waits_for_router_alone, tapredir49.)
            return RuntimeError(f"{what}: route-gateway dhcp, and no DHCP router known as the routes are "
                                f"set{tail}")
        bad = next((g for g in gws if g != "dhcp"), None)
        if bare and bad is not None:
            return RuntimeError(f"{what}: the server pushed no ifconfig, so no route goes via route-gateway "
                                f"{bad[:64]} (`route-gateway dhcp` with `route-delay N` waits for a DHCP router){tail}")
        if bad is not None:
            return RuntimeError(f"{what}: route-gateway {bad[:64]} is no IPv4 address routes can go via{tail}")
        return RuntimeError(f"{what}: no route-gateway pushed or in the profile, a tap's routes need "
                            f"one{tail}")

    @staticmethod
    def _default4(net: str, mask: str, gw, metric) -> bool:
        """Whether _route4 takes this pushed route as a default route (0.0.0.0/0, into the tunnel)."""
        try:
            return (_v4(net) == 0 and gw != "net_gateway" and mask_to_prefix(mask) == 0
                    and (metric is None or 0 <= metric <= 0xFFFFFFFF))
        except ValueError:
            return False

    @staticmethod
    def _default6(net6: str, gw6) -> bool:
        """Whether _route6 takes this pushed route-ipv6 as a default route (::/0, into the tunnel),
        with ifconfig-ipv6 or without (then enforced as redirect-gateway ipv6 without it is)."""
        try:
            return gw6 != "net_gateway_ipv6" and _net6(net6)[1] == 0
        except ValueError:
            return False

    def _block_ipv6_without_tun(self, e: NetlinkError) -> None:
        """block-ipv6 where the TUN device takes no IPv6 routes (disable_ipv6 on it, e.g. set as
        the host's default): the kernel itself refuses ::/1 and 8000::/1, so IPv6 still leaves by
        no other route. Why not fail the push: the tunnel then never came up on such a host,
        where OpenVPN 2.6 comes up (it warns about its routes). A host with no IPv6 at all has
        nothing to block."""
        try:
            self.routes.add_unreachable_ipv6()
        except NetlinkError:
            if os.path.isdir("/proc/sys/net/ipv6"):
                raise
            log.info("block-ipv6: this host has no IPv6, nothing to block")
            return
        log.warning("block-ipv6: the TUN device takes no IPv6 (%s): ::/1 and 8000::/1 refused by the "
                    "host (unreachable) instead", e)

    def _address_outside_lan(self, pushed) -> None:
        """RuntimeError (the push is refused, the client starts over) for a tunnel address or
        subnet inside a LAN network: the TUN's connected route would take those LAN hosts as a
        pushed route would (see __init__), and there is no tunnel without its address."""
        if not self.lan_nets:
            return
        local, second = pushed.ifconfig
        try:
            self._inside_lan(local, 32)
            if pushed.topology == "subnet":
                self._inside_lan(local, mask_to_prefix(second))
            else:
                self._inside_lan(second, 32)            # the peer's host route
            if pushed.ifconfig_ipv6 is not None:
                addr6, _, plen = pushed.ifconfig_ipv6[0].partition("/")
                self._inside_lan(addr6, 128)            # the address itself, as IPv4's above
                self._inside_lan(addr6, int(plen or 64))
        except ValueError as e:
            raise RuntimeError(f"pushed tunnel address {e}: refused") from None

    @staticmethod
    def _subnet_not_a_redirect(pushed) -> None:
        """RuntimeError (the push is refused, the client starts over) for a pushed tunnel subnet
        wider than WIDEST_SUBNET4 / WIDEST_SUBNET6. Why: the address comes with its connected
        route, which neither `route-nopull` nor `pull-filter ignore redirect-gateway` keeps
        out; `topology subnet` with `ifconfig A 128.0.0.0` (or `ifconfig-ipv6 A/3`) sent half
        the host's IPv4 (all its global IPv6) into the tunnel of a server the profile takes no
        routes from. OpenVPN 2.6 takes such a push; no VPN's own subnet is that wide."""
        if pushed.topology == "subnet":
            plen = mask_to_prefix(pushed.ifconfig[1])
            if plen < WIDEST_SUBNET4:
                raise RuntimeError(f"pushed tunnel subnet {pushed.ifconfig[0]}/{plen} is wider than /{WIDEST_SUBNET4}: "
                                   "refused (its route would redirect traffic past route-nopull and pull-filter)")
        if pushed.ifconfig_ipv6 is not None:
            plen6 = int(pushed.ifconfig_ipv6[0].partition("/")[2] or 64)
            if plen6 < WIDEST_SUBNET6:
                raise RuntimeError(f"pushed tunnel subnet {pushed.ifconfig_ipv6[0]} is wider than /{WIDEST_SUBNET6}: "
                                   "refused (its route would redirect traffic past route-nopull and pull-filter)")

    def _address_not_claimed(self, pushed, remote_ip: str) -> None:
        """RuntimeError (the push is refused, the client starts over) for a pushed tunnel
        address (IPv4 or IPv6) that is the server's, or an IPv4 one that this host already has
        on another interface. Why: the server's own address made each packet to it local, and
        as the TUN keeps its address while the client reconnects, no attempt ever reached that
        server again; an address of the WAN's (or the LAN's) would be given twice. Neither can be
        meant. A tunnel address merely inside a network on-link elsewhere is taken, as OpenVPN
        2.6 takes it (a campus WAN of 10.0.0.0/8 and a VPN of 10.8.0.0/24 work: the TUN's route
        is the more specific); in router mode the NICs answer ARP only for their own addresses
        (router/nics.py, arp_ignore), so such an address is not claimed on the WAN's segment."""
        local = pushed.ifconfig[0]
        try:
            ip = _v4(local)
            server = _ip_value(remote_ip)
        except ValueError:
            return                              # configure_tun refuses it; remote_ip is an address
        local6 = pushed.ifconfig_ipv6[0].partition("/")[0] if pushed.ifconfig_ipv6 is not None else None
        for mine in (local, local6):
            try:
                if mine is not None and _ip_value(mine) == server:
                    raise RuntimeError(f"pushed tunnel address {mine} is the server's own address: refused")
            except ValueError:
                pass                            # add_address6 refuses it
        try:
            tun = self._tun_index()
            if self._nl is not None:
                addrs = self._nl.addrs(socket.AF_INET)
            else:
                with Rtnl() as nl:
                    addrs = nl.addrs(socket.AF_INET)
        except DumpInterrupted as e:
            # The host's addresses kept changing while read: the check is neither passed nor
            # skipped (the push fails and the client starts over with its restart pause).
            raise RuntimeError(f"the pushed tunnel address {local} not checked against this host's: {e}") from e
        except (NetlinkError, OSError, RuntimeError) as e:
            log.warning("addresses not read (%s): the pushed tunnel address %s is not checked", e, local)
            return
        on_link = False
        for _f, addr, plen, index in addrs:
            if index == tun:
                continue
            mine = _v4(addr)
            if mine == ip:
                raise RuntimeError(f"pushed tunnel address {local} is already an address of this host "
                                   "on another interface: refused")
            on_link = on_link or _on_link4(ip, mine, plen)
        if on_link:
            # Inside a network on-link elsewhere (the campus case above): not the pre-tunnel
            # gateway's own address. Taken, the router became this host itself: its DNS (often
            # the host's resolver), kept through reconnects with the TUN's address, answered by
            # whatever listens here, so no `remote` name resolved again. Only looked up here
            # (a dump of the routing table), off the common path.
            try:
                ng = RouteSet.net_gateway(False, not_dev=self.tun.name)
            except DumpInterrupted as e:
                raise RuntimeError(f"the pushed tunnel address {local} not checked against this host's "
                                   f"gateway: {e}") from e
            except (NetlinkError, OSError, RuntimeError):
                ng = None
            if ng is not None and ng[0] == local:
                raise RuntimeError(f"pushed tunnel address {local} is the address of this host's gateway: refused")

    def _inside_lan(self, net: str, prefix: int) -> None:
        """ValueError (the route is skipped) when the pushed route lies inside a LAN network.
        Callers pass a valid address and prefix: with no LAN (client mode) nothing is parsed."""
        if not self.lan_nets:
            return
        n = ipaddress.ip_network(f"{net}/{prefix}", strict=False)
        for lan in self.lan_nets:
            if lan.version == n.version and n.subnet_of(lan):
                raise ValueError(f"inside the LAN's network {lan}")

    def _route_line(self, level: int, msg: str, *args) -> None:
        """A log line about one pushed route: the first MAX_ROUTE_LINES of a push, the rest
        only counted (_pushed_routes says how many). Why: a server pushing ~1,000 routes
        (skipped inside the LAN, or installed) wrote a line for each at every push that
        differed from the last, to a serial console on the VM."""
        self._route_lines += 1
        if self._route_lines <= MAX_ROUTE_LINES:
            log.log(level, msg, *args)

    def _route4(self, net: str, mask: str, gw, metric, ng4, via: str | None = None) -> bool:
        """One pushed IPv4 route; True when it is a default route (for the caller's def1 halves).
        ValueError (the route is skipped) for what is no IPv4 route: an IPv6 destination would
        put IPv6 traffic into the tunnel with no IPv6 pushed, and a metric beyond 32 bits has no
        kernel form; and for one inside the LAN (router mode, see __init__)."""
        _v4(net)
        if metric is not None and not 0 <= metric <= 0xFFFFFFFF:
            raise ValueError(f"metric {metric} out of range")
        prefix = mask_to_prefix(mask)
        self._inside_lan(net, prefix)
        if gw == "net_gateway":
            if ng4 is None:
                self._route_line(logging.WARNING,
                    "route %s/%d net_gateway: there is no default route to use; skipped", net, prefix)
                return False
            if self.routes.holds_via(net, prefix, ng4, metric):
                # Ours already (a redirect's host route to the server): what the line asks.
                self._route_line(logging.INFO, "route %s/%d net_gateway: the pre-tunnel way already "
                                 "(a route of ours along it)", net, prefix)
            elif self.routes.add_via(net, prefix, ng4, metric):
                self._route_line(logging.INFO,
                    "route %s/%d via the pre-tunnel gateway %s", net, prefix, ng4[0] or "(link)")
            else:
                self._route_line(logging.WARNING, _TAKEN_NG, f"route {net}/{prefix}")
        elif prefix == 0:
            if _v4(net):
                # `route 198.18.5.0 0.0.0.0`: the kernel refuses a prefix with host bits set, so
                # OpenVPN 2.6's client adds nothing for it (route.c hands the pair to netlink
                # unmasked); taken for a default route, it became the def1 halves, a redirect the
                # profile's pull-filter on `redirect-gateway` and `route 0.0.0.0` let through.
                raise ValueError("host bits set with netmask 0.0.0.0")
            return True
        else:
            if self.tap:
                # As OpenVPN 2.6 on tap: via the route's own gateway, else route-gateway's; none:
                # "needs a gateway parameter" -- on a tap device a route out of the device alone
                # would ARP for every destination, which nobody answers.
                via = gw if gw is not None and _is_v4(gw) else via
                if via is None:
                    raise ValueError("no gateway for it on a tap device (no route-gateway pushed or set)")
                if self.routes.add(net, prefix, oif=self._tun_index(), gateway=via, metric=metric):
                    self._route_line(logging.INFO, "route %s/%d via %s dev %s", net, prefix, via, self.tun.name)
                else:
                    self._route_line(logging.WARNING, _TAKEN, f"route {net}/{prefix}")
            elif self.routes.add(net, prefix, oif=self._tun_index(), metric=metric):     # dev=: the same spec
                self._route_line(logging.INFO, "route %s/%d dev %s", net, prefix, self.tun.name)
            else:
                self._route_line(logging.WARNING, _TAKEN, f"route {net}/{prefix}")
        return False

    def _route6(self, net6: str, gw6, ng6, has6: bool, metric: int | None = None, via: str | None = None) -> bool:
        """One pushed IPv6 route; True when it is a default route. ValueError (skipped) for an
        IPv4 destination (a route-ipv6 must not add IPv4 routes) or a prefix length beyond 128."""
        n6, plen6 = _net6(net6)
        if metric is not None and not 0 <= metric <= 0xFFFFFFFF:
            raise ValueError(f"metric {metric} out of range")
        self._inside_lan(n6, plen6)
        if gw6 == "net_gateway_ipv6":
            if ng6 is None:
                self._route_line(logging.WARNING,
                    "route-ipv6 %s net_gateway_ipv6: there is no IPv6 default route; skipped", net6)
                return False
            if self.routes.add_via(n6, plen6, ng6, metric):
                self._route_line(logging.INFO,
                    "route-ipv6 %s via the pre-tunnel gateway %s", net6, ng6[0] or "(link)")
            else:
                self._route_line(logging.WARNING, _TAKEN_NG, f"route-ipv6 {net6}")
        elif plen6 == 0:
            return True
        elif not has6:
            self._route_line(logging.WARNING, "route-ipv6 %s: the server pushed no ifconfig-ipv6; skipped", net6)
        else:
            if self.routes.add(n6, plen6, dev=self.tun.name, gateway=via, metric=metric):
                self._route_line(logging.INFO, "route-ipv6 %s %sdev %s", net6, f"via {via} " if via else "",
                                 self.tun.name)
            else:
                self._route_line(logging.WARNING, _TAKEN, f"route-ipv6 {net6}")
        return False
