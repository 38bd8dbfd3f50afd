"""The appliance's NICs: find them (by name or MAC), give them addresses (static or DHCP; IPv6
static or SLAAC), default routes, forwarding; and the Undo list that removes all of it again,
newest first.

Small separate functions so the VM's PID 1 and `vpn-appliance run appliance.toml` share them.
"""
from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import socket
import time
from contextlib import nullcontext
from typing import Callable, ContextManager, Sequence

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..boot import dhcp_client
from ..tun.rtnl import whole_dump
from ..config.schema import Lan, Wan
from .lan_routes import LanRouteKeeper
from .routes import RouteSet
from .static_wan import StaticWan

log = logging.getLogger("vpn-appliance")

IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
IP6_CONF = "/proc/sys/net/ipv6/conf"
IP4_CONF = "/proc/sys/net/ipv4/conf"
IFA_F_NODAD, IFA_F_DADFAILED, IFA_F_TENTATIVE = 0x02, 0x08, 0x40
DAD_WAIT = 5.0          # duplicate address detection takes ~1 s (RetransTimer x DupAddrDetectTransmits)
SLAAC_WAIT = 10.0       # an RA arrives within MAX_RTR_SOLICITATION_DELAY + RTR_SOLICITATION_INTERVAL


class Undo:
    """What we changed, as callables run newest-first on exit; one failure does not stop the rest."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], None]]] = []
        # run_toml's SetUpSignals.step: a stop signal between a change and its push is held
        # until the push is made (host/setup_signals.py); none elsewhere (PID 1, tests).
        self.guard: Callable[[], ContextManager[None]] = nullcontext

    def step(self) -> ContextManager[None]:
        """`with undo.step():` around a change to the host and the push of its undo: no stop
        signal lands between the two (atk45: one there left the change in place after the run)."""
        return self.guard()

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
        for link in whole_dump(ipr.get_links, "link"):
            ifname = link.get_attr("IFLA_IFNAME")
            addr = (link.get_attr("IFLA_ADDRESS") or "").lower()
            if (name is not None and ifname == name) or (mac is not None and addr == mac.lower()):
                return link["index"], ifname
    raise RuntimeError(f"no network interface with {'name ' + name if name else 'MAC ' + str(mac)}")


def configure_static(ifname: str, address: ipaddress.IPv4Interface | ipaddress.IPv6Interface, undo: Undo,
                     nodad: bool = False) -> None:
    """Bring the link up and add the address (removed again on exit unless it was already there).
    `nodad`: an IPv6 address usable at once, without duplicate address detection."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        ipr.link("set", index=idx, state="up")
        extra = {"flags": IFA_F_NODAD} if nodad else {}

        def remove() -> None:
            with IPRoute() as ipr2:
                ipr2.addr("del", index=idx, address=str(address.ip), prefixlen=address.network.prefixlen)
        with undo.step():               # the address and its removal as one (Undo.step)
            try:
                ipr.addr("add", index=idx, address=str(address.ip), prefixlen=address.network.prefixlen, **extra)
            except NetlinkError as e:
                if e.code != 17:  # EEXIST: configured already (PID 1 did it, or a restart)
                    raise
                log.info("%s already has %s", ifname, address)
                return
            undo.push(f"address {address} on {ifname}", remove)
    log.info("%s: address %s, up", ifname, address)


def add_default_route(gateway: ipaddress.IPv4Address | ipaddress.IPv6Address, undo: Undo,
                      dev: str | None = None) -> None:
    """Default route via the WAN gateway; an existing default route is kept (and reported).
    `dev` is needed for a link-local IPv6 gateway (fe80:: is on every link)."""
    rs = RouteSet()
    with undo.step():                   # the route and its removal as one (Undo.step)
        rs.add("::" if gateway.version == 6 else "0.0.0.0", 0, dev=dev, gateway=str(gateway))
        if rs.added:
            undo.push(f"default route via {gateway}", rs.remove_all)
    if rs.added:
        log.info("default route via %s", gateway)
    else:
        log.warning("a default route exists already; kept it (not via %s)", gateway)


def configure_dhcp(ifname: str, undo: Undo, avoid: Sequence[ipaddress.IPv4Network] = ()) -> None:
    """DHCP on the WAN (boot/dhcp_client.py); the lease is released again on the way out (the
    undo's Lease.stop: a DHCPRELEASE to the server, bounded, then the address removed). No lease
    overlapping `avoid` (the LAN's networks) is taken. A NIC that loses the lease's address
    (link down/up, a flush) gets it back at once (the client's relink thread)."""
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], state="up")
    lease = dhcp_client.dhcp_configure(ifname, avoid, undo=undo)   # its stop pushed there (Undo.step)
    log.info("%s: configured by DHCP (%s)", ifname, lease)


def configure_nic(nic: Wan | Lan, undo: Undo, avoid: Sequence[ipaddress.IPv4Network] = ()) -> str:
    """Find the NIC (by name or MAC), give it its addresses (static or DHCP; IPv6 static or
    SLAAC on the WAN, static or derived on the LAN); returns its name. `avoid`: networks a WAN
    DHCP lease must not overlap (the LAN's; the config checks a static WAN address itself)."""
    _, ifname = find_link(nic.name, nic.mac)
    if nic.mac:
        log.info("%s: the NIC with MAC %s (%s)", ifname, nic.mac, "wan" if isinstance(nic, Wan) else "lan")
    # ARP answers only for this NIC's own addresses (arp_ignore 1; Linux's default 0 answers for
    # every address of the host on every interface): the server chooses the tunnel's address, and
    # with `ifconfig-push <a WAN neighbour's address>` the appliance answered ARP for it on the
    # WAN, taking that neighbour's traffic (tests/interop/test_wan_address_push.py). OpenVPN on a
    # host leaves this to the host's own settings; the appliance owns its NICs.
    _sysctl(f"{IP4_CONF}/{ifname}/arp_ignore", "1", undo)
    refuse_redirects(ifname, undo)
    if isinstance(nic, Wan):
        _ipv6_sysctls(ifname, undo, slaac=nic.slaac)
    else:
        # No host on the LAN configures the router -- from before its link is up: an RA taken
        # in between (a LAN host flooding them) left its on-link prefix as a route out of the
        # LAN NIC that neither accept_ra 0 nor forwarding removes (tests/unit/test_lan_nic_ra_order.py).
        _sysctl(f"{IP6_CONF}/{ifname}/accept_ra", "0", undo)
    if isinstance(nic, Wan) and nic.dhcp:
        configure_dhcp(ifname, undo, avoid)
    else:
        assert nic.address is not None
        configure_static(ifname, nic.address, undo)
        if isinstance(nic, Wan) and nic.gateway is not None:
            add_default_route(nic.gateway, undo)
    if isinstance(nic, Wan):
        if nic.address6 is not None:
            configure_static(ifname, nic.address6, undo)
            wait_dad(ifname)
            if nic.gateway6 is not None:
                add_default_route(nic.gateway6, undo, dev=ifname)
        elif nic.slaac:
            wait_slaac(ifname)
        keep_static_wan(nic, ifname, undo)
    else:
        a6 = lan_address6(nic, ifname)
        if a6 is not None:
            # No DAD for the router's own LAN address: the DNS forwarder binds it at once (a tentative
            # address cannot be bound), and an unplugged LAN would keep it tentative indefinitely.
            configure_static(ifname, a6, undo, nodad=True)
        add_lan_routes(nic, ifname, undo, a6)
    return ifname


def keep_static_wan(wan: Wan, ifname: str, undo: Undo) -> None:
    """The WAN's static addresses and default routes given back after a link flap (a thread:
    router/static_wan.py), stopped first on the way out (the undo is newest first), before
    the addresses go. Nothing for a DHCP WAN without address6: its lease's thread does it."""
    addresses = [a for a in (None if wan.dhcp else wan.address, wan.address6) if a is not None]
    gateways = [g for g in (None if wan.dhcp else wan.gateway, wan.gateway6 if wan.address6 is not None else None)
                if g is not None]
    if not addresses:
        return
    keeper = StaticWan(ifname, addresses, gateways)
    with undo.step():                   # a thread left running would keep the process from ending
        keeper.start()
        undo.push(f"keeping {ifname}'s static address", keeper.halt)


def add_lan_routes(lan: Lan, ifname: str, undo: Undo, address6: ipaddress.IPv6Interface | None = None) -> None:
    """`[lan] routes`: each network via its LAN router (or on the LAN's link). The kill switch takes
    these sources from the LAN NIC, so their return traffic must go back there: a route that
    exists already is kept only if it leads out of the LAN NIC; one leading elsewhere (the WAN, the
    tunnel) would send the answers there, and stops the start instead. Those we added, and the
    LAN's IPv6 address (`address6`: an administrative link down removes it), come back after a
    LAN link flap (LanRouteKeeper)."""
    rs = RouteSet()
    undo.push("LAN routes", rs.remove_all)
    for r in lan.routes or ():
        net = r.network
        with undo.step():               # added and recorded in rs (undone above) as one
            added = rs.add(str(net.network_address), net.prefixlen, dev=ifname,
                           gateway=str(r.gateway) if r.gateway is not None else None)
        if added:
            log.info("route %s out of %s (LAN)", r, ifname)
        elif not RouteSet.goes_via(str(net.network_address), ifname):
            raise RuntimeError(f"[lan] routes: {net} is routed elsewhere already, not out of the LAN NIC {ifname}")
        else:
            log.info("route %s: one out of %s exists already; kept", r, ifname)
    if rs.added or address6 is not None:
        # Given back after a LAN link flap (router/lan_routes.py); stopped first on the way out
        # (the undo is newest first), before the routes and the address are removed.
        keeper = LanRouteKeeper(ifname, rs if rs.added else None, [address6] if address6 is not None else [])
        with undo.step():
            keeper.start()
            undo.push(f"keeping {ifname}'s address and [lan] routes", keeper.halt)


# ------------------------------------------------------------------ IPv6
def stable_ula(mac: str) -> ipaddress.IPv6Interface:
    """`fdXX:XXXX:XXXX::1/64`: a ULA (RFC 4193) whose 40-bit global ID is a hash of the LAN MAC.

    RFC 4193 hashes the time and an EUI-64 so the ID is random yet unlikely to collide; we only
    drop the time, so the same appliance (same NIC) gets the same prefix on every boot without
    storing anything -- LAN hosts keep their addresses across restarts, as with the deterministic
    DHCP leases."""
    digest = hashlib.sha256(b"vpn-appliance ULA " + mac.lower().encode()).digest()
    return ipaddress.IPv6Interface((b"\xfd" + digest[:5] + bytes(9) + b"\x01", 64))


def lan_address6(lan: Lan, ifname: str) -> ipaddress.IPv6Interface | None:
    """The LAN's IPv6 address: `address6`; else (NAT66) one derived from the NIC's MAC; None when
    the LAN has no IPv6 (`ipv6 = false`, or routed without a prefix from the server's side)."""
    if not getattr(lan, "ipv6", True):
        return None
    if lan.address6 is not None:
        return lan.address6
    if not lan.nat:
        return None
    try:
        with open(f"/sys/class/net/{ifname}/address") as f:
            mac = f.read().strip()
    except OSError:
        return None
    return stable_ula(mac) if mac and mac != "00:00:00:00:00:00" else None


def _sysctl(path: str, value: str, undo: Undo, required: bool = False) -> bool:
    """Set one /proc/sys value (restored on exit). A failure is a warning (a host may not let us,
    a kernel may have no IPv6) unless `required`: then RuntimeError."""
    def restore() -> None:
        with open(path, "w") as f2:
            f2.write(old + "\n")
    with undo.step():                   # the value and its restore as one (Undo.step)
        try:
            with open(path) as f:
                old = f.read().strip()
            if old == value:
                return True
            with open(path, "w") as f:
                f.write(value + "\n")
        except OSError as e:
            if required:
                raise RuntimeError(f"cannot set {path} to {value}: {e.strerror or e}") from None
            log.warning("cannot set %s to %s: %s", path, value, e.strerror or e)
            return False
        undo.push(path, restore)
    return True


REDIRECT_SWITCHES4 = ("accept_redirects", "secure_redirects", "send_redirects")


def link_name(index: int) -> str:
    """The NIC's name now (OSError when there is no NIC of that index any more)."""
    return socket.if_indextoname(index)


def keep_nic_redirects(nics: Sequence[Wan | Lan | None], undo: Undo, conf4: str = IP4_CONF) -> None:
    """The NICs' own IPv4 redirect switches, put back at the very end of the run as they are now.

    Why: refuse_redirects sets `default` to 0, and the kernel copies a `default` write to every
    NIC whose own value was never written -- but an IPv4 address added over netlink marks all of
    that NIC's values as written (ipv4_devconf_setall), so once configure_nic gave it its address
    `default`'s restore no longer reached it, and a NIC that had no address before the run kept
    accept/secure/send_redirects at 0 after every run, ended by a signal or not (host44's netns
    test compares the host before and after; IPv6's `default` is copied to new devices only).
    Pushed first, so run last; a value is written only where it differs. Each NIC is found again
    by its index, not its name (review45c): one renamed during the run gets its values back under
    its new name, and a NIC that took the old name meanwhile is not written."""
    saved: list[tuple[int, str, str]] = []          # (index, switch, value): at most 2 NICs x 3
    for nic in nics:
        if nic is None:
            continue
        try:
            index, ifname = find_link(nic.name, nic.mac)
        except RuntimeError:
            continue                    # missing_nic has said so already
        for name in REDIRECT_SWITCHES4:
            try:
                with open(f"{conf4}/{ifname}/{name}") as f:
                    saved.append((index, name, f.read().strip()))
            except OSError:
                continue

    def restore() -> None:
        for index, name, old in saved:
            try:
                path = f"{conf4}/{link_name(index)}/{name}"
                with open(path) as f:
                    if f.read().strip() == old:
                        continue
                with open(path, "w") as f:
                    f.write(old + "\n")
            except OSError as e:         # the NIC went away meanwhile: nothing to put back
                log.debug("restoring NIC %d's %s: %s", index, name, e.strerror or e)
    undo.push("the NICs' own redirect switches", restore)


def refuse_redirects(ifname: str, undo: Undo, conf4: str = IP4_CONF, conf6: str = IP6_CONF) -> None:
    """ICMP redirects neither taken nor sent on this NIC (each value restored on exit).

    Taken: a redirect rewrites the kernel's path to one destination (a route exception for
    ~5 minutes) on the word of any host on the segment that spoofs the gateway's address --
    the VPN server's packets sent to an attacker's MAC (held there, or dropped: the tunnel down).
    Linux takes them by default when it does not forward (IPv4: `all` OR the NIC's
    accept_redirects, both 1 by default; IPv6: the NIC's, unless it forwards), which is the
    appliance without a `[lan]`, an IPv6 WAN whose LAN has no IPv6 (IPv6 forwarding stays off),
    and every router-mode start before forwarding goes on (the remotes' resolution in between),
    an exception taken then outliving it. With IPv4 forwarding on the kernel needs `all` AND the
    NIC's, and switching ip_forward writes `all` (on: 0, off: 1), so both are set here, before
    enable_forwarding, and restored after it on exit (the undo is newest first). secure_redirects
    too, as CIS/STIG hardening has it (it only narrows which redirects are taken; with
    accept_redirects 0 none is). OpenWrt gets the same by switching forwarding on for both
    families at boot (its sysctl.d/10-default.conf); we do not rely on forwarding being on.

    Sent: the kernel sends a redirect for a packet it forwards back out of the NIC it came in
    by (a LAN host's packet for a `[lan] routes` network), and sends it before netfilter's
    FORWARD chain -- the kill switch -- judges the packet. A security gateway's LAN hosts route
    through it as configured; it tells them of no other path (IPv4 send_redirects: `all` OR the
    NIC's, so both). Linux has no switch for IPv6's (ip6_forward sends them).

    `default` too (atk42): a device made later -- the VPN's own TUN/TAP, made after this -- takes
    its values from there, 1, and without forwarding the kernel judges a redirect by the device
    it came in by (all OR that device's) while applying it to whatever route the inner packet's
    destination takes: a redirect sent in through the tunnel, from the WAN gateway's address, by
    the server or a host behind it, moved a WAN route -- the VPN server's -- to another WAN host."""
    for name in REDIRECT_SWITCHES4:
        _sysctl(f"{conf4}/all/{name}", "0", undo)
        _sysctl(f"{conf4}/default/{name}", "0", undo)
        _sysctl(f"{conf4}/{ifname}/{name}", "0", undo)
    _sysctl(f"{conf6}/default/accept_redirects", "0", undo)
    _sysctl(f"{conf6}/{ifname}/accept_redirects", "0", undo)


def _ipv6_sysctls(ifname: str, undo: Undo, slaac: bool) -> None:
    """SLAAC on the WAN: accept_ra 2 (RAs are ignored on a forwarding interface otherwise) and
    autoconf; without it the WAN takes no RA at all (a static or IPv4-only WAN is not reconfigured
    by whoever sends one). As PID 1 nothing else does this."""
    _sysctl(f"{IP6_CONF}/{ifname}/accept_ra", "2" if slaac else "0", undo, required=slaac)
    _sysctl(f"{IP6_CONF}/{ifname}/autoconf", "1" if slaac else "0", undo, required=slaac)
    if slaac:
        with IPRoute() as ipr:     # a link that goes up now sends its router solicitations now
            idx = ipr.link_lookup(ifname=ifname)[0]
            ipr.link("set", index=idx, state="up")
        log.info("%s: IPv6 by SLAAC (accept_ra 2, autoconf 1)", ifname)


def _v6_addrs(ifname: str) -> list[tuple[str, int, int]]:
    """(address, prefixlen, flags) of the link's global IPv6 addresses."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        out = []
        for a in whole_dump(lambda: ipr.get_addr(family=socket.AF_INET6, index=idx), "address"):
            ip = a.get_attr("IFA_ADDRESS")
            if ip and not ipaddress.IPv6Address(ip).is_link_local:
                out.append((ip, a["prefixlen"], a.get_attr("IFA_FLAGS") or a["flags"]))
        return out


def wait_dad(ifname: str, timeout: float = DAD_WAIT) -> None:
    """Wait until duplicate address detection is over (a tentative address cannot be a source);
    RuntimeError if it found a duplicate."""
    end = time.monotonic() + timeout
    while True:
        addrs = _v6_addrs(ifname)
        if any(f & IFA_F_DADFAILED for _, _, f in addrs):
            raise RuntimeError(f"{ifname}: duplicate address detection failed (another host has the address)")
        if not any(f & IFA_F_TENTATIVE for _, _, f in addrs) or time.monotonic() >= end:
            return
        time.sleep(0.1)


def wait_slaac(ifname: str, timeout: float = SLAAC_WAIT) -> None:
    """Wait (bounded) for a usable SLAAC address; without one we go on (IPv4 remotes still work,
    and the kernel keeps listening for RAs)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ready = [f"{a}/{n}" for a, n, f in _v6_addrs(ifname) if not f & (IFA_F_TENTATIVE | IFA_F_DADFAILED)]
        if ready:
            log.info("%s: IPv6 address %s (SLAAC)", ifname, ", ".join(ready))
            return
        time.sleep(0.2)
    log.warning("%s: no IPv6 address by SLAAC within %.0f s (no router advertisement yet); going on", ifname, timeout)


def enable_forwarding(undo: Undo, path: str = IP_FORWARD, ipv6: bool = False) -> None:
    """Router mode: the kernel forwards LAN ↔ tunnel (the kill switch decides what may pass);
    `ipv6`: IPv6 too (the LAN has an IPv6 prefix)."""
    if ipv6:
        keep_host_slaac(undo)
        if _sysctl(f"{IP6_CONF}/all/forwarding", "1", undo):
            log.info("IPv6 forwarding on")
    with open(path) as f:
        old = f.read().strip()
    if old != "1":
        def restore() -> None:
            with open(path, "w") as f2:
                f2.write(old + "\n")
        # Forwarding on and its restore as one (Undo.step): a stop signal between the two left
        # ip_forward at 1 after the run, the kill switch flushed -- LAN to WAN in clear (atk45).
        with undo.step():
            with open(path, "w") as f:
                f.write("1\n")
            undo.push("ip_forward", restore)
    log.info("IPv4 forwarding on")


def keep_host_slaac(undo: Undo, conf: str = IP6_CONF) -> None:
    """Before IPv6 forwarding goes on: every interface that takes RAs as a host (accept_ra 1) gets
    accept_ra 2, restored on exit. IPv6 forwarding is one switch for the whole namespace
    (conf/all/forwarding), and a forwarding interface ignores RAs unless accept_ra is 2, so on a
    host the uplinks' SLAAC routes would otherwise quietly expire while the appliance runs."""
    try:
        names = sorted(os.listdir(conf))
    except OSError:
        return
    for name in names:
        if name in ("all", "default", "lo"):
            continue
        try:
            with open(f"{conf}/{name}/accept_ra") as f:
                if f.read().strip() != "1":
                    continue
        except OSError:
            continue
        _sysctl(f"{conf}/{name}/accept_ra", "2", undo)


def write_resolv_conf(dns: tuple[ipaddress.IPv4Address, ...], path: str = "/etc/resolv.conf") -> None:
    """Only as PID 1: a host's own resolver configuration is not ours to change."""
    with open(path, "w") as f:
        f.writelines(f"nameserver {d}\n" for d in dns)
