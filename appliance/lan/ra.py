"""IPv6 router advertisements on the LAN, while (and only while) the tunnel carries IPv6.

NAT66 or routed (the choice, keyed on `[lan] nat` like IPv4):
- `nat = true` (default): the LAN gets a ULA prefix (`[lan] address6`, or one derived from the
  LAN NIC's MAC, see router/nics.py) and LAN hosts are masqueraded behind the ONE IPv6 address
  the server pushes (`ifconfig-ipv6`). That is what every stock OpenVPN server gives a client
  (`server-ipv6` hands out one address, not a prefix), so IPv6 on the LAN works with any server
  without touching it -- the same reason IPv4 defaults to masquerading.
- `nat = false`: the prefix of `address6` is advertised and routed as it is; the server must send
  it to us (`iroute-ipv6` in the client's ccd file plus a `route-ipv6`), as for IPv4 routing.
Either way the prefix is the LAN's; what goes through the tunnel is what the server pushed
(`route-ipv6`, `redirect-gateway ipv6`), routed by the kernel; anything else from the LAN is
dropped by the kill switch, never sent to the WAN.

When: an RA makes hosts use us as their IPv6 router. With no IPv6 from the server that router
would be a black hole (hosts would prefer IPv6 and time out), so the LAN gets NO RA at all then.
When the tunnel goes down (or stops carrying IPv6, or the appliance stops) one final RA says
router lifetime 0, prefix preferred lifetime 0 and RDNSS lifetime 0, so hosts stop routing and
resolving through us at once instead of after the router lifetime.

Timing is RFC 4861's (6.2.4, 6.2.6): unsolicited RAs at a random interval in [MIN, MAX], the first
few at most MAX_INITIAL apart; a router solicitation is answered by a multicast RA after a random
delay of up to 0.5 s and never sooner than 3 s after the previous one, so any number of RSs from
the LAN cost at most one RA per 3 s; past RS_RATE a second they are not even parsed. The schedule (RaSchedule) is pure and unit-tested; the
observer around it owns the raw socket and registers it on the client's one pump.
"""
from __future__ import annotations

import ipaddress
import logging
import random
import socket
import struct
from typing import TYPE_CHECKING, Callable

from .icmpv6 import MAX_RDNSS, RS_TYPE, Prefix, RouterAdvert, build_ra, parse_rs_untrusted
from .pushed_dns import not_through_the_tunnel

if TYPE_CHECKING:
    from ..gateway.loop import Pump
    from ..gateway.observers import ClientCounters, TunnelState

log = logging.getLogger("vpn-appliance")

MAX_RTR_ADV_INTERVAL = 120.0            # RFC 4861 allows 4..1800 s; short, so a dead appliance is
MIN_RTR_ADV_INTERVAL = 40.0             # forgotten soon: router lifetime = 3 * MAX (6.2.1 default)
ROUTER_LIFETIME = int(3 * MAX_RTR_ADV_INTERVAL)
MAX_INITIAL_RTR_ADVERT_INTERVAL = 16.0
MAX_INITIAL_RTR_ADVERTISEMENTS = 3
MAX_RA_DELAY_TIME = 0.5
MIN_DELAY_BETWEEN_RAS = 3.0
PREFIX_VALID = 86400                    # the LAN prefix is stable (configured or derived from the MAC)
PREFIX_PREFERRED = 14400
RDNSS_LIFETIME = ROUTER_LIFETIME        # RFC 8106 5.1: by default at least 3 * MaxRtrAdvInterval
MAX_READS_PER_WAKE = 32
# Packets from the RS socket parsed per second (a token bucket; RS_BURST at once); the rest are
# read and dropped unparsed, counted. Why: any number of RSs makes one RA per 3 s, but each was
# parsed however fast it came, and one of 64 options costs ~45 us: a LAN host's flood at wire
# speed (hundreds of thousands a second) took the pump every tunnel packet waits on. 100 a
# second is ~0.5% of a core at worst and more than the RSs of a LAN of hosts all booting at once.
RS_RATE, RS_BURST = 100.0, 200.0
SEND_RETRY = 1.0                        # a failed RA (link-local still tentative right after link-up) is retried soon
ALL_NODES, ALL_ROUTERS = "ff02::1", "ff02::2"
ICMP6_FILTER = 1                        # <netinet/icmp6.h>; not exported by the socket module


class RaSchedule:
    """When to send the next RA (pure: times in, decisions out).

    `up(now)` starts advertising with an RA at once; `solicited(now)` asks for one soon (RS);
    `fire(now)` says whether an RA is due now and plans the next; `down()` stops."""

    def __init__(self, rng: Callable[[], float] = random.random) -> None:
        self.rng = rng
        self.active = False
        self.next_at: float | None = None
        self.last_sent: float | None = None
        self.initial_left = 0

    def up(self, now: float) -> None:
        self.active = True
        self.initial_left = MAX_INITIAL_RTR_ADVERTISEMENTS
        self.next_at = now

    def down(self) -> None:
        self.active = False
        self.next_at = None

    def solicited(self, now: float) -> None:
        if not self.active:
            return
        at = now + self.rng() * MAX_RA_DELAY_TIME
        if self.last_sent is not None:
            at = max(at, self.last_sent + MIN_DELAY_BETWEEN_RAS)
        if self.next_at is None or at < self.next_at:
            self.next_at = at

    def fire(self, now: float) -> bool:
        if not self.active or self.next_at is None or now < self.next_at:
            return False
        self.last_sent = now
        interval = MIN_RTR_ADV_INTERVAL + self.rng() * (MAX_RTR_ADV_INTERVAL - MIN_RTR_ADV_INTERVAL)
        if self.initial_left > 0:
            self.initial_left -= 1
            interval = min(interval, MAX_INITIAL_RTR_ADVERT_INTERVAL)
        self.next_at = now + max(interval, MIN_DELAY_BETWEEN_RAS)
        return True


def advert_for(pushed, address6: ipaddress.IPv6Interface, dns_forwarder: bool, mtu: int | None,
               mac: bytes | None) -> RouterAdvert | None:
    """The RA for this push, or None when the server gave no IPv6 (then the LAN gets none)."""
    if pushed is None or pushed.ifconfig_ipv6 is None:
        return None
    if dns_forwarder:
        dns = (address6.ip,)
    else:
        dns = _usable_dns(pushed, address6)
    return RouterAdvert(ROUTER_LIFETIME, (Prefix(address6.network, PREFIX_VALID, PREFIX_PREFERRED),),
                        dns, RDNSS_LIFETIME if dns else 0, mtu if mtu is not None and mtu >= 1280 else None, mac)


LINK_LOCAL6 = ipaddress.IPv6Network("fe80::/10")


def _usable_dns(pushed, address6: ipaddress.IPv6Interface) -> tuple[ipaddress.IPv6Address, ...]:
    """The pushed IPv6 DNS servers an RA may name (at most MAX_RDNSS), by DHCP's rule for IPv4
    (pushed_dns.py): not this host's (the LAN or tunnel address, loopback), not multicast, not on
    the LAN's prefix or link (a LAN host would ask it there, in clear, never through the tunnel).
    A hostile server's `DNS6 ff02::1` sent every LAN host's queries to the whole LAN."""
    ours = [str(address6.ip), pushed.ifconfig_ipv6[0].partition("/")[0]]
    out: list[ipaddress.IPv6Address] = []
    refused = 0
    for d in pushed.dns:
        a = _v6(d)
        if a is None or len(out) >= MAX_RDNSS:
            continue
        # An IPv4-mapped address (`DNS6 ::ffff:198.18.50.10`, which inet_pton takes) is an IPv4
        # server in disguise: a LAN host's resolver sends to it over IPv4, to a LAN host or the
        # LAN's broadcast address as readily as through the tunnel, and the rule below knows only
        # the LAN's IPv6 prefixes. An RDNSS option names IPv6 servers.
        why = ("an IPv4-mapped address" if a.ipv4_mapped is not None
               else not_through_the_tunnel(d, ours, on_link=[address6.network, LINK_LOCAL6]))
        if why is None:
            out.append(a)
            continue
        refused += 1
        if refused <= MAX_RDNSS:            # a line each for the first few (a push may name ~1000)
            log.warning("LAN IPv6: pushed DNS server %s is %s, not a server through the tunnel: not advertised",
                        d, why)
    if refused > MAX_RDNSS:
        log.warning("LAN IPv6: %d more pushed DNS servers not advertised (not servers through the tunnel)",
                    refused - MAX_RDNSS)
    return tuple(out)


def farewell(ra: RouterAdvert) -> RouterAdvert:
    """The last RA: not a router any more, prefix deprecated, DNS servers withdrawn."""
    return RouterAdvert(0, tuple(Prefix(p.network, p.valid, 0, p.on_link, p.autonomous) for p in ra.prefixes),
                        ra.rdnss, 0, ra.mtu, ra.source_mac)


def _v6(text: str) -> ipaddress.IPv6Address | None:
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        return None
    return a if isinstance(a, ipaddress.IPv6Address) else None


def _sysfs(ifname: str | None, what: str) -> str | None:
    if not ifname:
        return None
    try:
        with open(f"/sys/class/net/{ifname}/{what}") as f:
            return f.read().strip()
    except OSError:
        return None


def link_local(ifname: str, path: str = "/proc/net/if_inet6") -> str | None:
    """The NIC's usable link-local address (not tentative, not failed DAD), or None.

    RFC 4861 6.1.2: hosts discard an RA whose source is not link-local, and right after link-up
    the kernel may pick a global source for ff02::1 while the link-local is still tentative, so
    the source is chosen here, not left to the kernel."""
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 6 and parts[5] == ifname and parts[3] == "20" and not int(parts[4], 16) & 0x48:
                    return str(ipaddress.IPv6Address(bytes.fromhex(parts[0])))
    except (OSError, ValueError):
        return None
    return None


def open_ra_socket(ifname: str) -> tuple[socket.socket, int]:
    """Raw ICMPv6 on the LAN NIC: hop limit 255 out (RFC 4861 requires it and hosts check it),
    only router solicitations in (kernel filter), the all-routers group joined, the hop limit of
    each received packet reported (an RS that was forwarded is not from our link)."""
    idx = socket.if_nametoindex(ifname)
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        words = [0xFFFFFFFF] * 8                     # block everything ...
        words[RS_TYPE >> 5] &= ~(1 << (RS_TYPE & 31)) & 0xFFFFFFFF   # ... but router solicitations
        s.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("=8I", *words))
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                     socket.inet_pton(socket.AF_INET6, ALL_ROUTERS) + struct.pack("@I", idx))
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s, idx


class RouterAdvertiser:
    """The TunnelObserver that advertises the LAN prefix while the tunnel carries IPv6."""

    def __init__(self, lan_if: str, address6: ipaddress.IPv6Interface, dns_forwarder: bool = True,
                 open_socket: Callable[[str], tuple[socket.socket, int]] = open_ra_socket,
                 source: Callable[[str], str | None] = link_local) -> None:
        self.lan_if = lan_if
        self.address6 = address6
        self.dns_forwarder = dns_forwarder
        self._open = open_socket
        self._source = source
        self.schedule = RaSchedule()
        self.sock: socket.socket | None = None
        self.ifindex = 0
        self.pump: "Pump | None" = None
        self.current: RouterAdvert | None = None
        self.counts = {"sent": 0, "final": 0, "solicitations": 0, "malformed": 0, "send errors": 0,
                       "over the rate": 0}
        self._tokens, self._refilled = RS_BURST, None      # RS_RATE's bucket
        self._key = ("lan-ra", id(self))

    # ---------------------------------------------------------------- TunnelObserver
    def attach(self, pump: "Pump", counters: "Callable[[], ClientCounters]") -> None:
        self.pump = pump
        try:
            self.sock, self.ifindex = self._open(self.lan_if)
        except OSError as e:
            log.error("LAN IPv6: cannot open the router advertisement socket on %s: %s (no IPv6 on the LAN)",
                      self.lan_if, e)
            return
        pump.watch(self.sock, self._on_read)

    def tunnel_changed(self, state: "TunnelState") -> None:
        if self.sock is None or self.pump is None:
            return
        mtus = [int(m) for m in (_sysfs(self.lan_if, "mtu"), _sysfs(state.tun_name, "mtu")) if m and m.isdigit()]
        mac_text = _sysfs(self.lan_if, "address")
        mac = bytes.fromhex(mac_text.replace(":", "")) if mac_text and len(mac_text) == 17 else None
        ra = advert_for(state.pushed if state.up else None, self.address6, self.dns_forwarder,
                        min(mtus) if mtus else None, mac)
        if ra is None:
            if self.current is not None:
                self._stop("the tunnel is down" if not state.up else "the server pushed no IPv6")
            elif state.up:
                log.info("LAN IPv6: the server pushed no IPv6 address; no router advertisements on %s",
                         self.lan_if)
            return
        was = self.current
        self.current = ra
        if was is None:
            log.info("LAN IPv6: advertising %s on %s (router lifetime %d s, DNS %s, MTU %s)", self.address6.network,
                     self.lan_if, ra.router_lifetime, ", ".join(map(str, ra.rdnss)) or "-", ra.mtu or "-")
        self.schedule.up(self.pump.clock())
        self._arm()

    def close(self) -> None:
        if self.current is not None:
            self._stop("the appliance is stopping")
        if self.sock is not None:
            if self.pump is not None:
                try:
                    self.pump.unwatch(self.sock)
                except (KeyError, ValueError, OSError):
                    pass
            self.sock.close()
            self.sock = None

    # ---------------------------------------------------------------- internals
    def _stop(self, why: str) -> None:
        assert self.current is not None
        self._send(build_ra(farewell(self.current)))
        self.counts["final"] += 1
        self.current = None
        self.schedule.down()
        if self.pump is not None:
            self.pump.timers.cancel(self._key)
        log.info("LAN IPv6: %s; sent a final router advertisement (router lifetime 0) on %s", why, self.lan_if)

    def _arm(self) -> None:
        if self.pump is not None:
            self.pump.timers.arm(self._key, self.schedule.next_at, self._on_timer)

    def _on_timer(self) -> None:
        if self.pump is None or self.current is None:
            return
        now = self.pump.clock()
        if self.schedule.fire(now):
            if self._send(build_ra(self.current)):
                self.counts["sent"] += 1
            else:
                self.schedule.next_at = now + SEND_RETRY
        self._arm()

    def _send(self, data: bytes) -> bool:
        if self.sock is None:
            return False
        src = self._source(self.lan_if)
        if src is None:         # right after link-up: DAD on the link-local is not over (about 1 s)
            log.debug("LAN IPv6: no usable link-local address on %s yet; RA retried", self.lan_if)
            return False
        try:
            pktinfo = socket.inet_pton(socket.AF_INET6, src) + struct.pack("@I", self.ifindex)
            self.sock.sendmsg([data], [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo)], 0,
                              (ALL_NODES, 0, 0, self.ifindex))
            return True
        except OSError as e:
            self.counts["send errors"] += 1
            if self.pump is not None:
                self.pump.faults.count("LAN RA not sent")
            if self.counts["send errors"] <= 3 or self.counts["send errors"] % 1000 == 0:
                log.info("LAN IPv6: a router advertisement on %s was not sent (%s); retrying", self.lan_if, e)
            return False

    def _on_read(self) -> None:
        """Up to MAX_READS_PER_WAKE packets (the rest wait for the next wake-up: level-triggered)."""
        assert self.sock is not None and self.pump is not None
        for _ in range(MAX_READS_PER_WAKE):
            try:
                data, anc, _flags, addr = self.sock.recvmsg(1500, socket.CMSG_SPACE(4))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.pump.faults.count("LAN RS read error")
                log.debug("LAN IPv6: read error %s", e)
                return
            self.receive(data, anc, addr)

    def receive(self, data: bytes, anc: list, addr: tuple) -> None:
        """One packet from the socket (separate for tests): a valid RS schedules an answer.
        Past RS_RATE a second, dropped unparsed (a float compare: see RS_RATE)."""
        assert self.pump is not None
        now = self.pump.clock()
        last, self._refilled = self._refilled, now
        if last is not None:
            self._tokens = min(RS_BURST, self._tokens + max(0.0, now - last) * RS_RATE)
        if self._tokens < 1.0:
            self.counts["over the rate"] += 1
            self.pump.faults.count("LAN RS over the rate")
            return
        self._tokens -= 1.0
        hop = None
        for level, typ, val in anc:
            if level == socket.IPPROTO_IPV6 and typ == socket.IPV6_HOPLIMIT and len(val) >= 4:
                hop = struct.unpack("@i", val[:4])[0]
        try:
            src = ipaddress.IPv6Address(str(addr[0]).split("%", 1)[0])
        except (ValueError, IndexError, TypeError):
            src = None
        rs = parse_rs_untrusted(data, hop, src) if src is not None else None
        if rs is None:
            self.counts["malformed"] += 1
            self.pump.faults.count("LAN ICMPv6 malformed")
            return
        self.counts["solicitations"] += 1
        if self.current is not None:
            self.schedule.solicited(self.pump.clock())
            self._arm()


def ra_observers(cfg, lan_if: str | None) -> list[RouterAdvertiser]:
    """The RA sender when the client role routes a LAN that has IPv6 (lan/__init__.py calls this)."""
    from ..router.nics import lan_address6
    if cfg.lan is None or lan_if is None or cfg.vpn.role != "client":
        return []
    a6 = lan_address6(cfg.lan, lan_if)
    return [RouterAdvertiser(lan_if, a6, getattr(cfg.lan, "dns_forwarder", True))] if a6 is not None else []
