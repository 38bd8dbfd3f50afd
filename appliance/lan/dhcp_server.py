"""The DHCP server on the LAN NIC: leases from `[lan] dhcp_range`, static leases by MAC, the LAN
address as router (and as DNS server while the DNS forwarder runs), the pushed DOMAIN /
DOMAIN-SEARCH as options 15/119.

Two layers. `DhcpServer` is sans-I/O: bytes and a time in, replies (bytes + where to send them)
out; every decision is there and unit/fuzz-tested. `DhcpService` is the tunnel observer that owns
the UDP socket on the client's one pump and feeds it.

Allocation is deterministic per MAC: a hash of the MAC picks the first address tried in the
range, and the next ones are probed in order. So with no lease file a restarted appliance offers
each client the address it had (unless a collision moved it), and a client that asks for its
old address (INIT-REBOOT, option 50, or a renewal) gets it whenever it is free. No lease state is
ever written to disk (the VM's root is read-only). Clients are told apart by their hardware address
(chaddr), not by option 61: static leases are given by MAC, and every stock client sends its MAC.

A hostile LAN: every message is decoded by dhcp_codec (dropped with a counted reason if malformed,
relayed or not from a client); the lease table is capped (`max_leases`, and never more than the
range), and when it is full an expired entry or the oldest offer nobody requested goes first, so
a flood of fake MACs costs a bounded table and the pool, never memory; bound leases are never
evicted (DHCP cannot tell a real new client from a fake one: starving the pool is what a LAN host
can do to any DHCP server, and only port security on the switch prevents it). Pool exhaustion
means no answer, counted.

Leases handed out before the tunnel first came up have no domain (nothing was pushed yet): they
last at most PRE_TUNNEL_LEASE seconds, so the client's renewal at T1 picks up the domain soon after.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import socket
import struct
from collections import OrderedDict
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import TYPE_CHECKING, Callable, Iterable

from . import dhcp_codec as c
from .dhcp_pool import TakenAddresses
from .pushed_dns import not_through_the_tunnel

if TYPE_CHECKING:
    from ..gateway.loop import Pump
    from ..gateway.observers import ClientCounters, TunnelState
    from ..openvpn.keymethod import PushedOptions

log = logging.getLogger("vpn-appliance")

CLIENT_PORT, SERVER_PORT = 68, 67
OFFER_HOLD = 60.0            # an OFFER keeps its address this long for the REQUEST to come
DECLINE_HOLD = 600.0         # an address a client DECLINEd (someone else uses it) rests this long
MAX_DNS = 8                  # pushed DNS servers handed out (and refused ones logged one by one)
PRE_TUNNEL_LEASE = 300       # lease time before anything was pushed (so renewals pick up the domain)
MAX_LEASES = 4096            # lease table cap (offers + bound), besides the static leases
PROBES = 8                   # addresses tried one by one from the MAC's hash before the taken runs are skipped
SWEEP_EVERY = 10.0           # at most this often, a full scan for expired entries when the table is full
RATE, BURST = 200.0, 400.0   # messages handled per second (token bucket): a flood's CPU share is bounded
CLIENT_RATE, CLIENT_BURST = 1.0, 8.0   # ... from a bound lease's own address: its own bucket (see handle)
KNOWN_RATE, KNOWN_BURST = 200.0, 400.0  # ... all the own buckets together (see handle)
BROADCAST = "255.255.255.255"
LINK_LOCAL4 = IPv4Network("169.254.0.0/16")   # on every link of many hosts: asked there, never through the tunnel
SIOCGIFMTU = 0x8921


def nic_mtu(sock: socket.socket, ifname: str) -> int | None:
    """The MTU of NIC `ifname` now (an ioctl on any socket: no file, no netlink), None if it fails."""
    try:
        r = fcntl.ioctl(sock.fileno(), SIOCGIFMTU, struct.pack("16si", ifname.encode()[:15], 0))
    except (OSError, ValueError):
        return None
    mtu = struct.unpack_from("16si", r)[1]
    return mtu if mtu > 0 else None


@dataclass
class Lease:
    mac: bytes
    addr: int
    expires: float
    bound: bool              # False: offered, waiting for the REQUEST
    tokens: float = CLIENT_BURST     # the rate limit of messages from this lease's address
    refilled: float | None = None
    name: str | None = None          # the host name it gave (option 12), served by the DNS forwarder

    def take_token(self, now: float) -> bool:
        """One message from this lease's address may be handled (CLIENT_RATE a second)."""
        if self.refilled is not None:
            self.tokens = min(CLIENT_BURST, self.tokens + max(0.0, now - self.refilled) * CLIENT_RATE)
        self.refilled = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass(frozen=True)
class Reply:
    data: bytes
    dest: str                # BROADCAST, or the client's address (renewal, INFORM)
    kind: int


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


class DhcpServer:
    """The server's state and decisions, without sockets (`handle(bytes, now) -> [Reply]`)."""

    def __init__(self, lan: IPv4Interface, first: IPv4Address, last: IPv4Address, lease_time: int,
                 static: Iterable[tuple[str, IPv4Address]] = (), dns_forwarder: bool = True,
                 max_leases: int = MAX_LEASES, link_mtu: int = 1500) -> None:
        self.lan = lan
        self.server = lan.ip
        self.net = lan.network
        self.first, self.last = int(first), int(last)
        self.size = self.last - self.first + 1
        self.lease_time = lease_time
        self.dns_forwarder = dns_forwarder
        self.static = {bytes.fromhex(m.replace(":", "")): int(a) for m, a in static}
        self.static_addrs = set(self.static.values())
        self.cap = max(1, min(max_leases, self.size))
        self.by_mac: dict[bytes, Lease] = {}
        self.by_addr: dict[int, Lease] = {}
        self.offered: OrderedDict[bytes, None] = OrderedDict()    # dynamic offers, oldest first
        self.declined: dict[int, float] = {}
        # Held (by_addr), resting (declined), static and our own: what _pick skips in runs.
        self.taken = TakenAddresses()
        for a in (*self.static_addrs, int(self.server)):
            self.taken.add(a)
        self.dynamic = 0                   # entries in by_mac that are not static leases
        self._next_sweep = 0.0
        self.pushed_seen = False           # the tunnel came up at least once
        self.domain: str | None = None
        self.search: list[str] = []
        self.dns: list[IPv4Address] = []   # pushed IPv4 servers (used with dns_forwarder off)
        self._tokens, self._refilled = BURST, None      # the rate limit's bucket
        self._known, self._known_refilled = KNOWN_BURST, None   # the own buckets' together
        self._fixed: list[bytes] | None = None          # encoded options (reset by set_pushed)
        self._search_option: bytes | None = None
        self.drops: dict[str, int] = {}    # malformed or refused messages, by reason
        self.dropped = 0                   # their total (the service logs when it moves)
        self.declines = 0                  # DECLINEs taken (an address rests)
        self.sent: dict[str, int] = {}     # replies by type
        self.link_mtu = link_mtu           # the LAN NIC's MTU: no reply is larger (DhcpService reads it)
        self.names: dict[str, Lease] = {}  # host names of leases (option 12), for the DNS forwarder
        self.name_conflicts = 0

    # ---------------------------------------------------------------- what the tunnel pushed
    def set_pushed(self, pushed: "PushedOptions | None") -> None:
        """Take DOMAIN / DOMAIN-SEARCH / DNS from what the server pushed (kept while the tunnel
        is down: a reconnect usually pushes the same, and a LAN host's renewal must not lose it)."""
        if pushed is None:
            return
        self.pushed_seen = True
        domain = None
        search: list[str] = []
        for name, value in pushed.dhcp_options:
            if name.upper() == "DOMAIN" and c.valid_domain(value.rstrip(".")):
                domain = value.rstrip(".")
            elif name.upper() == "DOMAIN-SEARCH" and c.valid_domain(value.rstrip(".")):
                search.append(value.rstrip("."))
        for d in getattr(pushed, "search_domains", None) or []:
            if isinstance(d, str) and c.valid_domain(d.rstrip(".")):
                search.append(d.rstrip("."))
        self.search = list(dict.fromkeys(s.lower() for s in search))
        self.domain = domain or (self.search[0] if self.search else None)
        dns: list[IPv4Address] = []
        # Handed to LAN hosts only with the forwarder off, and then not one of our own addresses,
        # multicast or broadcast (pushed_dns.py, the forwarder's rule): a server pushing our
        # tunnel or LAN address sent every LAN host's queries to this host. Nor an address on the
        # LAN itself: a LAN host asks it directly, in clear on the LAN, the tunnel never used --
        # nor a link-local one (169.254/16: macOS and many Linux desktops route it on the link).
        ours = [str(self.server), *(pushed.ifconfig[:1] if pushed.ifconfig else [])]
        refused = 0
        for a in pushed.dns:
            if len(dns) >= MAX_DNS:
                break                          # (a push may name ~1000: no more looked at)
            try:
                ip = IPv4Address(a)
            except ValueError:
                continue                       # IPv6 servers are not DHCPv4's business
            why = None if self.dns_forwarder else not_through_the_tunnel(
                a, ours, [str(self.net.broadcast_address)], on_link=[self.net, LINK_LOCAL4])
            if why is not None:
                refused += 1
                if refused <= MAX_DNS:         # a line each for the first few, then their count
                    log.warning("DHCP: pushed DNS server %s is %s, not a server through the tunnel: not handed out",
                                a, why)
                continue
            dns.append(ip)
        if refused > MAX_DNS:
            log.warning("DHCP: %d more pushed DNS servers left out (not servers through the tunnel)",
                        refused - MAX_DNS)
        self.dns = dns
        self._fixed = self._search_option = None

    # ---------------------------------------------------------------- entry point
    def handle(self, data: bytes, now: float, source: IPv4Address | None = None,
               port: int | None = None) -> list[Reply]:
        """One datagram from the LAN (`source`, `port`: its IP source address and UDP source port,
        when the caller knows them): the replies to send (none for most drops). Never raises for
        any input (dhcp_codec.BadRequest is the only failure it expects, and it is counted).
        Beyond RATE messages a second (BURST at once) the rest are dropped unread: a LAN flood
        costs the pump the tunnel shares at most that much work (a real LAN needs a few a second).
        A message whose IP source is the address of a bound lease (a renewal, a rebinding, an
        INFORM or RELEASE from a configured client) is counted in that lease's own bucket
        first (CLIENT_RATE a second): one host flooding DISCOVERs from 0.0.0.0 -- it starves new
        clients, as on any shared segment -- must not also keep every configured client from
        renewing until its lease runs out. When that bucket is empty the message draws on the
        shared one, as any other: the source address is anyone's to forge, and a lease's own
        bucket alone let a host keep another from renewing with two forged datagrams a second
        (its renewals met an empty bucket of one a second); now that costs the flood that
        holds up every new client, as before these buckets. One dict lookup, before any decoding.
        A message from another address (0.0.0.0) whose chaddr, read undecoded, has an entry -- a
        client between its OFFER and its REQUEST, or one that held a lease and comes back
        (INIT-REBOOT, a DISCOVER after a reboot) -- counts in that entry's bucket the same way. A
        flood of DISCOVERs from random chaddrs empties the shared bucket, and a client that had
        its OFFER met it with its REQUEST (one of three lab runs: udhcpc's three REQUESTs all
        unanswered, no lease), as did a host coming back. A flood forging known chaddrs gains at
        most CLIENT_RATE a second per entry (the table is bounded), and drains that client's
        bucket only, as a forged source does. The own buckets together draw on KNOWN_RATE a
        second (KNOWN_BURST at once) besides: a DISCOVER flood of random MACs fills the table
        with entries whose MACs the flooder knows, and sending from each of them again was
        CLIENT_BURST messages an entry at once and CLIENT_RATE a second after -- with a /20 pool,
        32,000 handled at once (~40 us each: over a second of the pump) and 4,000 a second.
        Only a flood forging known chaddrs drains it (a random MAC's has no entry yet), and
        that could already hold up the client it forges (its own bucket, then the shared one)."""
        held = self.by_addr.get(int(source)) if source is not None and not source.is_unspecified else None
        if (held is None or not held.bound) and len(data) >= 34:
            held = self.by_mac.get(bytes(data[28:34]))          # chaddr: a client we know
        own = False                         # taken on its own bucket (the shared one untouched)
        if held is not None:
            last, self._known_refilled = self._known_refilled, now
            if last is not None:
                self._known = min(KNOWN_BURST, self._known + max(0.0, now - last) * KNOWN_RATE)
            if self._known >= 1.0 and held.take_token(now):
                self._known -= 1.0
                own = True
        if not own:
            last, self._refilled = self._refilled, now
            if last is not None:
                self._tokens = min(BURST, self._tokens + max(0.0, now - last) * RATE)
            if self._tokens < 1.0:
                self._drop("rate limited")
                return []
            self._tokens -= 1.0
        try:
            req = c.decode_request_untrusted(data)
        except c.BadRequest as e:
            self._drop(str(e))
            return []
        if port is not None and port != CLIENT_PORT:
            # Every DHCP client sends from port 68, where our replies go (RFC 2131 4.1) and where
            # only a privileged process can listen. From any other port the sender cannot even
            # read a reply: it is an unprivileged process on some LAN host (an app on a phone or
            # a TV), which could otherwise RELEASE or DECLINE another host's lease (chaddr and
            # ciaddr are visible on the LAN), bind the whole pool with REQUESTs, or take host
            # names -- what otherwise needs root (raw sockets) on a LAN host.
            self._drop("not from the DHCP client port 68")
            return []
        if req.kind == c.DISCOVER:
            r = self._discover(req, now)
        elif req.kind == c.REQUEST:
            r = self._request(req, now)
        elif req.kind == c.DECLINE:
            r = self._decline(req, now)
        elif req.kind == c.RELEASE:
            r = self._release(req)
        else:
            r = self._inform(req, source)
        if r is not None:
            name = c.TYPE_NAMES[r.kind]
            self.sent[name] = self.sent.get(name, 0) + 1
            return [r]
        return []

    def lease_count(self, now: float) -> int:
        """Bound leases that have not expired (static ones included)."""
        return sum(1 for lease in self.by_mac.values() if lease.bound and lease.expires > now)

    def _drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1
        self.dropped += 1

    # ---------------------------------------------------------------- messages
    def _discover(self, req: c.Request, now: float) -> Reply | None:
        addr = self._pick(req.mac, req.requested, now)
        if addr is None:
            self._drop("pool exhausted")
            return None
        lease = self.by_mac.get(req.mac)
        if lease is None or lease.addr != addr or not lease.bound or lease.expires <= now:
            if not self._take(req.mac, addr, now + OFFER_HOLD, bound=False, now=now):
                self._drop("pool exhausted")
                return None
        return self._reply(req, c.OFFER, addr)

    def _request(self, req: c.Request, now: float) -> Reply | None:
        sid = req.server_id
        if sid is not None and sid != self.server:
            self._forget_offer(req.mac)        # the client took another server's offer
            self._drop("for another server")
            return None
        if sid is not None or req.ciaddr == IPv4Address(0):
            want = req.requested               # SELECTING or INIT-REBOOT
        else:
            want = req.ciaddr                  # RENEWING / REBINDING
        if want is None:
            self._drop("request without address")
            return None
        a = int(want)
        if self._allowed(req.mac, a, now):
            if not self._take(req.mac, a, now + self._lease_time(), bound=True, now=now):
                self._drop("pool exhausted")
                return None
            raw = req.options.get(c.O_HOSTNAME)
            if raw is not None:                # none given (some renewals): the lease keeps its name
                self._set_name(self.by_mac[req.mac], c.host_label(raw), now)
            return self._reply(req, c.ACK, a)
        return self._nak(req)

    # ---------------------------------------------------------------- host names (for DNS)
    def _set_name(self, lease: Lease, name: str | None, now: float) -> None:
        """The lease answers to `name` in the LAN's DNS from now on (None: to none). First come:
        a name another MAC's live lease holds stays that lease's (a host cannot take over the
        printer's name by asking for it; it ends with that lease's release or expiry)."""
        if name == lease.name:
            return
        self._drop_name(lease)
        if name is None:
            return
        holder = self.names.get(name)
        if holder is not None and self._live(holder, now):
            self.name_conflicts += 1
            n = self.name_conflicts
            if n <= 5 or n % 1000 == 0:
                log.info("DHCP: %s asked for the host name %r, which %s holds: not given (%d so far)",
                         mac_text(lease.mac), name, mac_text(holder.mac), n)
            return
        if holder is not None:
            holder.name = None
        lease.name = name
        self.names[name] = lease

    def _drop_name(self, lease: Lease) -> None:
        if lease.name is not None and self.names.get(lease.name) is lease:
            del self.names[lease.name]
        lease.name = None

    def _live(self, lease: Lease, now: float) -> bool:
        return lease.bound and lease.expires > now and self.by_mac.get(lease.mac) is lease

    def address_of(self, name: str, now: float) -> IPv4Address | None:
        """The address of the live lease that gave host name `name` (lower case), or None."""
        lease = self.names.get(name)
        return IPv4Address(lease.addr) if lease is not None and self._live(lease, now) else None

    def name_of(self, addr: IPv4Address, now: float) -> str | None:
        """The host name of the live lease of `addr`, or None."""
        lease = self.by_addr.get(int(addr))
        return lease.name if lease is not None and self._live(lease, now) else None

    def _decline(self, req: c.Request, now: float) -> Reply | None:
        a = req.requested
        lease = self.by_mac.get(req.mac)
        if (req.server_id not in (None, self.server) or a is None or lease is None or lease.addr != int(a)):
            self._drop("decline not ours")
            return None
        self._remove(lease)
        if int(a) not in self.static_addrs:
            if int(a) not in self.declined:
                self.taken.add(int(a))
            self.declined[int(a)] = now + DECLINE_HOLD
            if len(self.declined) > self.cap:          # bounded like the leases: the oldest rest ends
                self._end_rest(next(iter(self.declined)))
        self.declines += 1
        n = self.declines
        if n <= 5 or n % 1000 == 0:              # a LAN host can DECLINE in a loop: few lines
            log.info("DHCP: %s declined %s (in use by someone else?); not offered for %d s (%d declines so far)",
                     mac_text(req.mac), a, int(DECLINE_HOLD), n)
        return None

    def _release(self, req: c.Request) -> Reply | None:
        lease = self.by_mac.get(req.mac)
        if req.server_id not in (None, self.server) or lease is None or lease.addr != int(req.ciaddr):
            self._drop("release not ours")
            return None
        self._remove(lease)
        return None

    def _inform(self, req: c.Request, source: IPv4Address | None) -> Reply | None:
        """RFC 2131 4.3.5: the ACK goes unicast to ciaddr, which the client sets itself. So
        ciaddr must be a LAN host other than us, and the address the INFORM came from: a forged
        ciaddr (the LAN's broadcast or network address, 0.0.0.0, multicast, off-LAN, another
        host) would otherwise have us send to every LAN host, out of the LAN, or to a victim."""
        if not self._lan_host(req.ciaddr):
            self._drop("inform ciaddr not a LAN host")
            return None
        if source is not None and source != req.ciaddr:
            self._drop("inform ciaddr not its source")
            return None
        return self._reply(req, c.ACK, None, lease=False)

    def _lan_host(self, a: IPv4Address) -> bool:
        """`a` may be a unicast destination on the LAN: inside the LAN network, not its network or
        broadcast address (a /31 or /32 has neither), not ours, not 0.0.0.0 or multicast."""
        if a not in self.net or a == self.server or a.is_unspecified or a.is_multicast:
            return False
        return self.net.prefixlen >= 31 or a not in (self.net.network_address, self.net.broadcast_address)

    # ---------------------------------------------------------------- replies
    def _lease_time(self) -> int:
        return self.lease_time if self.pushed_seen else min(self.lease_time, PRE_TUNNEL_LEASE)

    def _reply(self, req: c.Request, kind: int, addr: int | None, lease: bool = True) -> Reply:
        opts: list[bytes] = []
        if lease:
            t = self._lease_time()
            opts.append(c.option(c.O_LEASE, t.to_bytes(4, "big")) + c.option(c.O_T1, (t // 2).to_bytes(4, "big"))
                        + c.option(c.O_T2, (t * 7 // 8).to_bytes(4, "big")))
        opts += self._fixed_options()
        if self.search and c.O_SEARCH in req.params:
            if self._search_option is None:
                self._search_option = c.option(c.O_SEARCH, c.encode_domain_list(self.search))
            opts.append(self._search_option)
        yiaddr = IPv4Address(addr) if addr is not None else None
        data = c.encode_reply(req, kind, yiaddr, self.server, opts, req.max_size(self.link_mtu))
        # RFC 2131 4.1: to ciaddr when the client has an address (renewal, INFORM); otherwise
        # broadcast (see DhcpService for why not a unicast to yiaddr).
        dest = str(req.ciaddr) if self._lan_host(req.ciaddr) else BROADCAST
        return Reply(data, dest, kind)

    def _fixed_options(self) -> list[bytes]:
        """Mask, router, broadcast, DNS, domain: encoded once per push, not once per reply."""
        if self._fixed is None:
            fixed = [c.option(c.O_MASK, self.net.netmask.packed) + c.option(c.O_ROUTER, self.server.packed)
                     + c.option(c.O_BROADCAST, self.net.broadcast_address.packed)]
            dns = [self.server] if self.dns_forwarder else self.dns
            if dns:
                fixed.append(c.option(c.O_DNS, b"".join(d.packed for d in dns)))
            if self.domain:
                fixed.append(c.option(c.O_DOMAIN, self.domain.encode("ascii")))
            self._fixed = fixed
        return self._fixed

    def _nak(self, req: c.Request) -> Reply:
        data = c.encode_reply(req, c.NAK, None, self.server, [], req.max_size(self.link_mtu))
        return Reply(data, BROADCAST, c.NAK)       # RFC 2131 4.3.2: NAKs are broadcast

    # ---------------------------------------------------------------- allocation
    def _in_pool(self, a: int) -> bool:
        return self.first <= a <= self.last and a != int(self.server)

    def _free_for(self, mac: bytes, a: int, now: float) -> bool:
        """`a` may go to `mac`: in the pool, nobody's static address, not resting after a
        DECLINE, and not held (offered or bound, unexpired) by another MAC."""
        if not self._in_pool(a) or a in self.static_addrs:
            return False
        until = self.declined.get(a)
        if until is not None:
            if until > now:
                return False
            self._end_rest(a)
        holder = self.by_addr.get(a)
        return holder is None or holder.mac == mac or holder.expires <= now

    def _allowed(self, mac: bytes, a: int, now: float) -> bool:
        """May `mac` have `a` (REQUEST)? Its static address, or a free pool address."""
        if mac in self.static:
            return a == self.static[mac]
        return self._free_for(mac, a, now)

    def _pick(self, mac: bytes, requested: IPv4Address | None, now: float) -> int | None:
        """The address to offer (RFC 2131 4.3.1's order): the static one; the one it holds or held;
        the one it asks for when free; else the first free address from the MAC's hash on (PROBES
        tried one by one, then runs of taken addresses skipped in O(log n): dhcp_pool.py says why);
        else the address of the oldest offer nobody requested."""
        if mac in self.static:
            return self.static[mac]
        lease = self.by_mac.get(mac)
        if lease is not None and self._free_for(mac, lease.addr, now):
            return lease.addr
        if requested is not None and self._free_for(mac, int(requested), now):
            return int(requested)
        start = int.from_bytes(hashlib.sha256(b"vpn-appliance dhcp " + mac).digest()[:8], "big") % self.size
        for i in range(min(self.size, PROBES)):
            a = self.first + (start + i) % self.size
            if self._free_for(mac, a, now):
                return a
        # Past them, an address not in `taken` is free; one held by an expired lease or rest
        # counts as taken until a sweep ends it, so with none free the sweep runs (when due).
        lo = self.first + start
        for _ in range(2):
            a = self.taken.first_free(lo, self.last)
            if a is None:
                a = self.taken.first_free(self.first, lo - 1)
            if a is not None:
                return a
            if not self._sweep(now):
                break
        for other in self.offered:             # all held: the oldest offer nobody requested goes
            if other != mac:
                lease = self.by_mac[other]
                self._remove(lease)
                return lease.addr
        return None

    def _take(self, mac: bytes, a: int, expires: float, bound: bool, now: float) -> bool:
        """Record `mac` holding `a` (replacing what it held and an expired holder of `a`); False
        when the table is full of live entries."""
        old = self.by_mac.get(mac)
        if old is not None and old.addr != a:
            self._remove(old)
            old = None
        holder = self.by_addr.get(a)
        if holder is not None and holder.mac != mac:
            self._remove(holder)
        static = mac in self.static
        if old is None:
            if not static and not self._make_room(now):
                return False
            old = Lease(mac, a, expires, bound)
            self.by_mac[mac] = old
            self.by_addr[a] = old
            self.taken.add(a)
            if not static:
                self.dynamic += 1
        old.expires, old.bound = expires, bound
        if not static:
            if bound:
                self.offered.pop(mac, None)
            else:
                self.offered[mac] = None
                self.offered.move_to_end(mac)
        return True

    def _remove(self, lease: Lease) -> None:
        self._drop_name(lease)
        if self.by_mac.get(lease.mac) is lease:
            del self.by_mac[lease.mac]
            if lease.mac not in self.static:
                self.dynamic -= 1
        if self.by_addr.get(lease.addr) is lease:
            del self.by_addr[lease.addr]
            self.taken.discard(lease.addr)
        self.offered.pop(lease.mac, None)

    def _end_rest(self, a: int) -> None:
        """A DECLINEd address rests no more."""
        del self.declined[a]
        self.taken.discard(a)

    def _forget_offer(self, mac: bytes) -> None:
        lease = self.by_mac.get(mac)
        if lease is not None and not lease.bound:
            self._remove(lease)

    def _sweep(self, now: float) -> bool:
        """End expired leases and rests: a full scan, at most every SWEEP_EVERY (False: not due)."""
        if now < self._next_sweep:
            return False
        self._next_sweep = now + SWEEP_EVERY
        for lease in [x for x in self.by_mac.values() if x.expires <= now and x.mac not in self.static]:
            self._remove(lease)
        for a in [a for a, until in self.declined.items() if until <= now]:
            self._end_rest(a)
        return True

    def _make_room(self, now: float) -> bool:
        """Room for one more dynamic entry: expired ones go first (a full scan at most every
        SWEEP_EVERY seconds), then the oldest offer nobody requested; bound leases stay."""
        if self.dynamic < self.cap:
            return True
        if self._sweep(now) and self.dynamic < self.cap:
            return True
        while self.offered and self.dynamic >= self.cap:
            mac = next(iter(self.offered))
            self._remove(self.by_mac[mac])
        return self.dynamic < self.cap


# ------------------------------------------------------------------ the socket on the pump
class DhcpService:
    """The DHCP server as a tunnel observer: a UDP socket on port 67 bound to the LAN NIC.

    Why a UDP socket is enough (no AF_PACKET): requests from clients without an address arrive as
    broadcasts from 0.0.0.0, which a socket bound to 0.0.0.0:67 with SO_BINDTODEVICE receives on
    that NIC only; replies to a client without an address go to 255.255.255.255 (RFC 2131 4.1
    allows broadcast when the server does not unicast to the hardware address), which the kernel
    sends out of the bound NIC with the LAN address as source; every stock client (udhcpc,
    dhclient, dhcpcd, systemd-networkd, Windows) listens with a raw/packet socket or takes the
    broadcast before it has an address. Renewals come from a configured client, so the reply is
    an ordinary unicast to ciaddr. A unicast to yiaddr would need an ARP entry injected per
    client (a netlink write per reply a flood could drive); broadcasting avoids that.
    """

    BATCH = 64                 # datagrams per wake-up; the rest next wake-up (the pump stays fair)
    LOG_EVERY = 30.0           # drop counters at most this often, only when they changed

    def __init__(self, server: DhcpServer, lan_if: str) -> None:
        self.server = server
        self.lan_if = lan_if
        self.sock: socket.socket | None = None
        self.pump: "Pump | None" = None
        self._logged = 0                # server.dropped when last logged
        self._next_log = 0.0

    @classmethod
    def from_config(cls, lan, lan_if: str, dns_forwarder: bool = True) -> "DhcpService":
        first, last = lan.dhcp_range
        return cls(DhcpServer(lan.address, first, last, lan.dhcp_lease_time, lan.static_leases or (),
                              dns_forwarder), lan_if)

    def attach(self, pump: "Pump", counters: Callable[[], "ClientCounters"]) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.lan_if.encode())
            s.bind(("0.0.0.0", SERVER_PORT))
            s.setblocking(False)
        except OSError as e:
            s.close()
            raise OSError(e.errno, f"DHCP server on {self.lan_if} port {SERVER_PORT}: {e.strerror or e}") from None
        self.sock, self.pump = s, pump
        pump.watch(s, self._on_read)
        srv = self.server
        self._read_mtu()
        log.info("DHCP server on %s: %s-%s, %d static, lease %d s, replies within its MTU %d",
                 self.lan_if, IPv4Address(srv.first), IPv4Address(srv.last), len(srv.static), srv.lease_time,
                 srv.link_mtu)

    def _read_mtu(self) -> None:
        """The LAN NIC's MTU caps every reply (one ioctl per wake-up: an admin or a VLAN's parent
        may change it while we run). Unreadable: the last one read (1500 at first)."""
        if self.sock is not None:
            mtu = nic_mtu(self.sock, self.lan_if)
            if mtu is not None:
                self.server.link_mtu = mtu

    def _on_read(self) -> None:
        s, pump = self.sock, self.pump
        if s is None or pump is None:
            return
        now = pump.clock()
        self._read_mtu()
        for _ in range(self.BATCH):
            try:
                data, src = s.recvfrom(c.MAX_LEN + 1)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.server._drop("receive error")
                break
            for r in self.server.handle(data, now, IPv4Address(src[0]), src[1]):
                try:
                    s.sendto(r.data, (r.dest, CLIENT_PORT))
                except OSError:
                    self.server._drop("send error")
        else:
            pump.again(s, self._on_read)
        if self.server.dropped != self._logged:
            self._log_drops()

    def _log_drops(self, final: bool = False) -> None:
        """The drop counters, when they moved, at most every LOG_EVERY seconds (a timer logs the
        last change of a burst): a flood costs one line per LOG_EVERY, not one per packet."""
        srv, pump = self.server, self.pump
        if srv.dropped == self._logged:
            return
        now = pump.clock() if pump is not None else 0.0
        if not final and now < self._next_log:
            if pump is not None:
                pump.timers.arm(("dhcp-log", id(self)), self._next_log, self._log_drops)
            return
        self._logged, self._next_log = srv.dropped, now + self.LOG_EVERY
        log.info("DHCP server drops: %s", ", ".join(f"{k}={v}" for k, v in sorted(srv.drops.items())))

    def log_counters(self) -> None:
        """SIGUSR2: the drop counters now, in the periodic line's words, changed or not."""
        srv = self.server
        self._logged = srv.dropped
        log.info("DHCP server drops: %s", ", ".join(f"{k}={v}" for k, v in sorted(srv.drops.items())) or "none")

    def tunnel_changed(self, state: "TunnelState") -> None:
        if state.dns_up:            # DNS options from tunnel-up, as 2.6's up script (gateway/observers.py)
            self.server.set_pushed(state.pushed)

    def lease_count(self) -> int:
        return self.server.lease_count(self.pump.clock() if self.pump is not None else 0.0)

    # The DNS forwarder's view of the leases (dns_local.LeaseNames): names of live leases only.
    def address_of(self, name: str) -> IPv4Address | None:
        return self.server.address_of(name, self.pump.clock() if self.pump is not None else 0.0)

    def name_of(self, addr: IPv4Address) -> str | None:
        return self.server.name_of(addr, self.pump.clock() if self.pump is not None else 0.0)

    def close(self) -> None:
        if self.sock is not None:
            if self.pump is not None:
                self.pump.unwatch(self.sock)
            self.sock.close()
            self.sock = None
            if self.pump is not None:
                self.pump.timers.cancel(("dhcp-log", id(self)))
            self._log_drops(final=True)
