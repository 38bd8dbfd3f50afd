"""A small DHCP client for the WAN NIC (RFC 2131: DISCOVER, OFFER, REQUEST, ACK; RENEWING at T1,
REBINDING at T2, INIT after a NAK or when the lease has run out).

Why our own: the image has no shell and no dhclient/udhcpc; this runs inside the appliance process
(a daemon thread keeps the lease). The codec is pure and unit-tested; the client uses a UDP socket
bound to the interface (SO_BINDTODEVICE) with the broadcast flag set, so offers reach us before the
interface has an address. The same socket sends the RENEWING request unicast to the server: once
the NIC has its address the kernel picks it as the source, and the server's unicast ACK to that
address reaches the socket bound to 0.0.0.0:68 (the kill switch lets udp 68 -> 67 out).

At boot the client asks until a lease comes (`Policy`: rounds of DISCOVERs, pauses doubling to a
minute, jittered), as dhclient and systemd-networkd do: a router VM back from a power cut before
the modem's DHCP server is up must not power itself off for good (it gave up after 5 tries of 3 s,
and PID 1 powered the VM off). SIGTERM still stops it at once (a host's service stop).

Whatever answers on the WAN segment is untrusted (a rogue DHCP server races the real one): an
offer or ACK is used only when `check_reply_untrusted` finds everything we apply usable (address,
netmask, router); anything else -- another transaction, another client's hardware address, an
answer from a server other than the one we asked, an unusable field -- is dropped, counted in
`Drops` and logged at a limited rate, and the client keeps waiting for a usable one. A NAK never
ends a wait by itself (anyone can NAK in the server's name): an ACK that follows it wins. A
renewal that gets the address the NIC already has changes nothing on it: removing the NIC's last
address makes the kernel drop every route through it, the tunnel's host route to the VPN server
among them. And while the lease holds, a REQUEST's answer is taken only for that address (and
prefix): another server's faster answer with another usable address -- a rogue's, anyone's on the
segment -- is dropped ("another address while the lease holds"); an ACK of our address from a
server other than the lease's keeps the lease's router and is no longer than the lease
(held_terms: a rogue answering REBINDING first moved the default route, or held the address for
good with an 'infinite' lease). A NAK that no ACK followed starts one round of DISCOVERs at once,
at most one per `Policy.nak_every`, the address and routes kept until a lease is bound: the real
server offers the same address again after a forged NAK (it wins over any other offer in the
round: _choose_offer), and a renumbering ISP's new address replaces the old in seconds, not at the
lease's expiry. At expiry (no server answered since T1) one more round of DISCOVERs runs with the
address still in place; then the address goes (RFC 2131: a lease that ran out is not used) and
the client asks on.

An orderly stop (Lease.stop, the undo at shutdown) sends a DHCPRELEASE unicast to the lease's
server (RFC 2131 4.4.6), bounded by RELEASE_WAIT, and removes the address. A NIC that loses the
lease's address while it holds (a link flap that takes it, `ip addr flush`) gets it back within
moments of the link or address event (the relink thread: _Client.watch_link), not at T1.
"""
from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import random
import select
import signal
import socket
import struct
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from pyroute2 import IPRoute

from ..transport import sockfilter
from ..tun.rtnl import whole_dump
from ..logpace import NoteLimit, times

if TYPE_CHECKING:
    from ..router.nics import Undo

log = logging.getLogger("vpn-appliance")
# A flood of replies (anyone on the WAN can broadcast to port 68): past MAX_REPLIES datagrams in one
# wait, at most FLOOD_BURST more per FLOOD_PAUSE are read, so the renewal thread takes a few percent
# of a core, not all of it, while the wait still lasts its time and still takes a usable reply.
# (Ending the wait at the count instead let ~1,300 junk datagrams end a boot's 5 tries at once: PID
# 1 gave up and powered the VM off.) Paced reading alone let a flood keep the socket's queue full and
# the server's reply out of it: the kernel filters what is for another transaction first (only_ours),
# and a source of replies we cannot use is kept out after a few (Transaction).
MAX_REPLIES = 256
FLOOD_BURST, FLOOD_PAUSE = 32, 0.01
MIN_RENEW, MAX_RENEW = 30, 12 * 3600   # T1 (renewal), whatever the server says, within these bounds (s)
RETRY_MIN = 60.0                       # RENEWING/REBINDING retransmit at least this far apart (RFC 2131 4.4.5)
NAK_EVERY = 300.0                      # at most one round of DISCOVERs per this many seconds after NAKs
DEFAULT_PREFIX = 24                    # no netmask option: what this client always assumed
MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE = 1, 2, 3, 4, 5, 6, 7
RELEASE_WAIT = 0.4                     # stop() waits at most this long for the RELEASE to leave (ARP)
RELINK_TICK = 10.0                     # the lease's address and route are checked at least this often
RELINK_SETTLE = 0.1                    # after a link/address event, this long for the rest of a burst


def build_message(kind: int, xid: int, mac: bytes, requested: str | None = None, server: str | None = None,
                  ciaddr: str = "0.0.0.0") -> bytes:
    """A client message. With `ciaddr` (RENEWING, REBINDING: we have the address) the broadcast
    flag is off: the server answers unicast to ciaddr (RFC 2131 4.1), as it does anyway."""
    flags = 0x8000 if ciaddr == "0.0.0.0" else 0
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, flags, socket.inet_aton(ciaddr),
                      bytes(4), bytes(4), bytes(4), mac.ljust(16, b"\0"), b"", b"")
    opts = bytes([53, 1, kind]) + bytes([55, 7, 1, 3, 6, 51, 54, 58, 59]) + bytes([61, 7, 1]) + mac
    if requested:
        opts += bytes([50, 4]) + socket.inet_aton(requested)
    if server:
        opts += bytes([54, 4]) + socket.inet_aton(server)
    return hdr + MAGIC + opts + b"\xff"


def build_release(xid: int, mac: bytes, ciaddr: str, server: str) -> bytes:
    """A DHCPRELEASE (RFC 2131 4.4.6, table 5): ciaddr the released address, flags 0, the
    server identifier (MUST), our client identifier (MAY: the same one our DISCOVER and REQUEST
    carried, so the server finds the lease by it), and nothing else -- no requested address, no
    parameter request list."""
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0, socket.inet_aton(ciaddr),
                      bytes(4), bytes(4), bytes(4), mac.ljust(16, b"\0"), b"", b"")
    opts = bytes([53, 1, RELEASE]) + bytes([54, 4]) + socket.inet_aton(server) + bytes([61, 7, 1]) + mac
    return hdr + MAGIC + opts + b"\xff"


@dataclass
class Reply:
    kind: int
    xid: int
    yiaddr: str
    options: dict[int, bytes] = field(default_factory=dict)
    chaddr: bytes = b""

    def address_option(self, code: int) -> str | None:
        v = self.options.get(code, b"")
        return socket.inet_ntoa(v[:4]) if len(v) >= 4 else None

    @property
    def server_id(self) -> str | None:
        return socket.inet_ntoa(self.options[54]) if len(self.options.get(54, b"")) == 4 else None


@dataclass(frozen=True)
class Offer:
    """What an offer or ACK gives, checked (check_reply_untrusted): all of it can be applied."""
    address: str
    prefixlen: int
    router: str | None
    dns: tuple[str, ...]
    server: str | None
    lease_time: int
    renew: int | None = None        # T1 and T2 as the server sent them (options 58, 59): lease_timing checks
    rebind: int | None = None


class Drops:
    """Replies dropped, by reason, logged at most every LOG_EVERY seconds (a rogue server or a
    flood of broadcasts costs a few lines, not one per packet)."""
    LOG_EVERY = 30.0

    def __init__(self, ifname: str, clock=time.monotonic) -> None:
        self.ifname = ifname
        self.clock = clock
        self.counts: dict[str, int] = {}
        self._next_log = 0.0

    def drop(self, reason: str, n: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + n
        now = self.clock()
        if now >= self._next_log:
            self._next_log = now + self.LOG_EVERY
            log.info("%s: DHCP replies dropped: %s", self.ifname,
                     ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())))


def _unicast(a: ipaddress.IPv4Address) -> bool:
    """An address a host may have or route through: not 0.0.0.0/8, loopback, link-local,
    multicast, 240/4 or the limited broadcast."""
    return not (a.is_unspecified or int(a) >> 24 == 0 or a.is_loopback or a.is_link_local or a.is_multicast
                or a.is_reserved)


def check_reply_untrusted(r: Reply, avoid: Sequence[ipaddress.IPv4Network] = ()) -> Offer | str:
    """The lease an OFFER/ACK gives, or why it is not usable (the drop counter's reason). Every
    field we apply is checked here, so applying it cannot fail on what the server sent: yiaddr a
    unicast address, not its subnet's network or broadcast address; the netmask (option 1)
    contiguous and /8../32, the subnet overlapping none of `avoid` (the LAN's networks: the
    kernel would route the LAN's packets out of the WAN, as the config refuses for a static WAN
    address); the router (option 3, its first address) unicast, inside the subnet, not yiaddr.
    The lease, T1 and T2 times are kept as sent (lease_timing bounds them); DNS servers that are
    not unicast are left out (only shown: the tunnel's DNS comes from the VPN server); a server id
    that is not a unicast address other than ours is no server id (a RENEWING request goes
    unicast to it: not to the loopback, a broadcast or ourselves)."""
    addr = ipaddress.IPv4Address(r.yiaddr)
    if not _unicast(addr):
        return "unusable address"
    prefix = DEFAULT_PREFIX
    mask = r.options.get(1)
    if mask is not None:
        if len(mask) != 4:
            return "bad netmask"
        m = int.from_bytes(mask, "big")
        prefix = bin(m).count("1")
        if m != (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF or prefix < 8:
            return "bad netmask"
    net = ipaddress.IPv4Interface(f"{addr}/{prefix}").network
    if net.prefixlen <= 30 and addr in (net.network_address, net.broadcast_address):
        return "unusable address"
    if any(net.overlaps(n) for n in avoid):
        return "overlaps the LAN"
    router = r.address_option(3)       # shorter than 4 bytes: no router, as before (on-link only)
    if router is not None:
        gw = ipaddress.IPv4Address(router)
        if (not _unicast(gw) or gw == addr or gw not in net
                or (net.prefixlen <= 30 and gw in (net.network_address, net.broadcast_address))):
            return "bad router"
    raw_dns = r.options.get(6, b"")
    dns = tuple(str(d) for d in (ipaddress.IPv4Address(raw_dns[i:i + 4]) for i in range(0, len(raw_dns) - 3, 4))
                if _unicast(d))[:8]
    lease_time, t1, t2 = (struct.unpack("!I", r.options[c])[0] if len(r.options.get(c, b"")) == 4 else None
                          for c in (51, 58, 59))
    server = r.server_id
    if server is not None and (not _unicast(ipaddress.IPv4Address(server)) or server == str(addr)):
        server = None
    return Offer(str(addr), prefix, router, dns, server, 3600 if lease_time is None else lease_time, t1, t2)


@dataclass(frozen=True)
class Policy:
    """The client's times, in seconds: the appliance's defaults; tests shorten them.

    INIT (boot, or a lease gone): rounds of `tries` DISCOVERs, each waiting `reply_wait` for an
    offer (and its REQUEST as long for the ACK), then a pause before the next round: `pause_first`,
    doubling up to `pause_max`, +-`jitter` (VMs booting together do not ask in step). With the
    defaults: 15 s of asking, then pauses of 5, 10, 20, 40, 60, 60... s -- a modem's DHCP server up
    1-3 minutes after the router is answered within a minute, and the WAN segment sees 5 small
    broadcasts a minute meanwhile. A line is logged for each try of the first round, then at most
    every `log_every` (with the drop counters). RENEWING/REBINDING: REQUESTs `retry_min` (RFC 2131
    4.4.5's 60 s) to `max_renew` apart (retransmit_at); T1 within `min_renew`..`max_renew` (lease_timing).
    A NAK to one of those REQUESTs starts a round of DISCOVERs at most every `nak_every`."""
    reply_wait: float = 3.0
    tries: int = 5
    pause_first: float = 5.0
    pause_max: float = 60.0
    jitter: float = 0.1
    log_every: float = 60.0
    retry_min: float = RETRY_MIN
    min_renew: float = MIN_RENEW
    max_renew: float = MAX_RENEW
    nak_every: float = NAK_EVERY

    def pause(self, rounds: int, rand: float) -> float:
        """The pause after `rounds` (>= 1) unanswered rounds; `rand` in [0, 1) (random.random())."""
        base = min(self.pause_max, self.pause_first * 2 ** min(rounds - 1, 30))
        return base * (1 + self.jitter * (2 * rand - 1))


@dataclass(frozen=True)
class Timing:
    """When to renew (T1), rebind (T2) and give up the address (the lease), in seconds from the
    moment the REQUEST that got the lease was sent (RFC 2131 4.4.1)."""
    t1: float
    t2: float
    lease: float


def lease_timing(lease_time: int, t1: int | None = None, t2: int | None = None,
                 policy: Policy = Policy()) -> Timing:
    """T1 and T2 as the server sent them (options 58, 59) when 0 < T1 < T2 < lease, else the RFC's
    defaults (half the lease, 7/8 of it); bounded: a lease under 2 x min_renew (a minute) is taken as that long,
    so a lease of 0 s does not make the client ask in a loop; T1 within min_renew..max_renew, so an
    'infinite' lease (0xffffffff) does not keep a changed network unnoticed either (the renewal
    comes at least every 12 h; the lease itself never runs out)."""
    lease = float(max(lease_time, 2 * policy.min_renew))
    d1, d2 = lease / 2, lease * 7 / 8
    if t1 is not None and t2 is not None and 0 < t1 < t2 < lease:
        r1, r2 = float(t1), float(t2)
    elif t1 is not None and 0 < t1 < d2:
        r1, r2 = float(t1), d2
    elif t2 is not None and d1 < t2 < lease:
        r1, r2 = d1, float(t2)
    else:
        r1, r2 = d1, d2
    r1 = max(policy.min_renew, min(policy.max_renew, r1))
    if r2 <= r1:                         # T1 raised to min_renew past the server's T2
        r2 = max(d2, r1)
    return Timing(r1, r2, lease)


def renew_after(lease_time: int) -> int:
    """Seconds until the renewal (T1) of a lease without options 58/59."""
    return int(lease_timing(lease_time).t1)


BOUND, RENEWING, REBINDING, EXPIRED = "bound", "renewing", "rebinding", "expired"


def phase(now: float, renew_at: float, rebind_at: float, expires: float) -> str:
    """The RFC 2131 state a lease is in at `now` (monotonic times): BOUND before T1, RENEWING
    (unicast to its server) until T2, REBINDING (broadcast, any server) until it expires."""
    if now < renew_at:
        return BOUND
    if now < rebind_at:
        return RENEWING
    return REBINDING if now < expires else EXPIRED


def retransmit_at(sent: float, end: float, retry_min: float = RETRY_MIN, retry_max: float = MAX_RENEW) -> float:
    """When to send the next RENEWING/REBINDING REQUEST after one sent at `sent` went
    unanswered: after half the time left until `end` (T2, or the expiry), at least `retry_min`
    later (RFC 2131 4.4.5), at most `retry_max` (an 'infinite' lease's T2 is a century away: its
    renewal must not wait half of that), never past `end` (then the next state's REQUEST goes)."""
    return min(end, sent + min(retry_max, max(retry_min, (end - sent) / 2)))


def parse_reply_untrusted(data: bytes) -> Reply | None:
    """A BOOTREPLY with DHCP options, or None for anything else (never raises)."""
    if len(data) < 240 or data[0] != 2 or data[236:240] != MAGIC:
        return None
    xid = struct.unpack_from("!I", data, 4)[0]
    yiaddr = socket.inet_ntoa(data[16:20])
    parts: dict[int, list[bytes]] = {}     # repeated options are joined (RFC 3396)
    i = 240
    while i < len(data):
        code = data[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(data) or i + 2 + data[i + 1] > len(data):
            return None
        parts.setdefault(code, []).append(bytes(data[i + 2:i + 2 + data[i + 1]]))
        i += 2 + data[i + 1]
    opts = {code: b"".join(v) for code, v in parts.items()}
    if 53 not in opts or len(opts[53]) != 1:
        return None
    return Reply(opts[53][0], xid, yiaddr, opts, bytes(data[28:34]))


@dataclass
class Lease:
    """The lease the WAN holds, kept current by the renewal thread (times: time.monotonic())."""
    ifname: str
    address: str
    prefixlen: int
    router: str | None
    dns: list[str]
    server: str | None
    lease_time: int
    expires: float = 0.0            # the lease runs out
    renew_at: float = 0.0           # T1: RENEWING (unicast to `server`)
    rebind_at: float = 0.0          # T2: REBINDING (broadcast, any server)
    on_nic: bool = True             # False once the address of a lease that ran out was removed
    mac: bytes = field(default=b"", repr=False)    # our hardware address: the RELEASE at stop() (none without)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    # stop() against the renewal thread's changes to the NIC: nothing is added after stop() removed it
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __str__(self) -> str:
        return (f"{self.address}/{self.prefixlen} router {self.router} dns {','.join(self.dns) or '-'} "
                f"lease {self.lease_time}s from {self.server}")

    def stop(self) -> None:
        """End the lease (the undo at an orderly stop): the renewal thread stops, a DHCPRELEASE
        goes to the lease's server while the lease holds (RFC 2131 4.4.6: a client that no longer
        needs its address SHOULD release it; dhclient -r and systemd-networkd's SendRelease=yes
        do), and the address leaves the NIC. The release is best effort and bounded (release()):
        never more than RELEASE_WAIT of the shutdown, skipped without a route to the server."""
        with self._lock:
            self._stop.set()
            if self.on_nic:
                why = ("no server id in the lease" if self.server is None
                       else "the lease ran out" if time.monotonic() >= self.expires else None)
                if why is not None:
                    log.info("%s: no DHCPRELEASE of %s: %s", self.ifname, self.address, why)
                elif self.mac:
                    release(self.ifname, self.mac, self.address, self.server)
                _remove(self.ifname, self.address, self.prefixlen)


NUD_INCOMPLETE = 0x01                  # linux/neighbour.h: address resolution (ARP) still under way


def release(ifname: str, mac: bytes, address: str, server: str, wait: float = RELEASE_WAIT) -> bool:
    """Send one DHCPRELEASE of `address` unicast to `server` (True: it left, as far as we can
    tell). From `address`, port 68, on `ifname` (SO_BINDTODEVICE), so the server sees ciaddr as
    the source; no answer is expected (none comes: RFC 2131). Skipped (False, logged) when the
    NIC or a route to the server over it is missing, or the send fails. Why the wait: a
    next hop not yet in the ARP table gets the datagram queued by the kernel until it answers,
    and the address, removed right after, is then no longer ours to ask ARP from -- so up to
    `wait` seconds for the next hop's resolution, never more (a shutdown must not hang on a
    silent server)."""
    end = time.monotonic() + wait
    try:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=ifname)
            if not found:
                log.info("%s: no DHCPRELEASE of %s: the NIC is gone", ifname, address)
                return False
            idx = found[0]
            try:
                hop = ipr.route("get", dst=server)[0]
                why = None if hop.get_attr("RTA_OIF") == idx else "it is routed through another interface"
            except Exception as e:  # noqa: BLE001 - no route (ENETUNREACH): nothing to send
                why = str(e)
            if why is not None:
                # (Not asked with the NIC as oif: the kernel then takes any destination as on-link.)
                log.info("%s: no DHCPRELEASE of %s: no route to the server %s (%s)", ifname, address, server, why)
                return False
            nexthop = hop.get_attr("RTA_GATEWAY") or server
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.setblocking(False)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
                s.bind((address, 68))
                s.sendto(build_release(random.getrandbits(32), mac, address, server), (server, 67))
            finally:
                s.close()
            while time.monotonic() < end:
                states = [n["state"] for n in ipr.get_neighbours(ifindex=idx, dst=nexthop)]
                if states and not any(st & NUD_INCOMPLETE for st in states):
                    break
                time.sleep(0.02)
    except Exception as e:  # noqa: BLE001 - best effort: the address goes anyway
        log.info("%s: DHCPRELEASE of %s to %s not sent: %s", ifname, address, server, e)
        return False
    log.info("%s: DHCP lease of %s released (DHCPRELEASE to %s)", ifname, address, server)
    return True


def _remove(ifname: str, address: str, prefixlen: int) -> None:
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if idx:
            try:
                ipr.addr("del", index=idx[0], address=address, prefixlen=prefixlen)
            except Exception:  # noqa: BLE001 - already gone
                pass


SKF_NET_OFF = -0x100000                # linux/filter.h: a load relative to the IP header
# A source (address and port) that sent BLOCK_AFTER replies for our transaction we could not use is
# kept out by the kernel for the rest of the transaction (at most MAX_BLOCKED; PER_SOURCE_TRACKED counted).
BLOCK_AFTER, MAX_BLOCKED, PER_SOURCE_TRACKED = 4, 8, 256
DRAIN_MAX = 1 << 16                    # datagrams discarded at most when a transaction begins


Source = tuple[str, int]                # a datagram's IPv4 source address and UDP port


def only_ours(s: socket.socket, xid: int, mac: bytes, refused: Sequence[Source] = ()) -> bool:
    """Have the kernel queue on `s` only replies (BOOTREPLY) to transaction `xid` for hardware
    address `mac`, from none of the sources `refused`: a classic BPF socket filter, looked at from
    the UDP header (the source port at 0, the payload at 8; the IP header's source address through
    SKF_NET_OFF).
    Why: the paced reading of a flood (above) frees room in the socket's queue for ~3,000
    datagrams a second, and a flood of 5,000 a second (12 Mbit/s of junk from any WAN host) kept
    the queue full, so the kernel dropped the real server's OFFER and ACK -- the boot ended
    without a lease, a renewal failed until the lease ran out. What the filter refuses takes no
    room and no reading; a flood of replies to our own transaction (the DISCOVER is broadcast,
    its xid seen) is read paced until its source is refused (Transaction). False, the Python
    checks alone, if it cannot be set."""
    mac_hi, mac_lo = int.from_bytes(mac[:4], "big"), int.from_bytes(mac[4:6], "big")
    ld_b, ld_h, ld_w, jeq, ret = sockfilter.LD_B, sockfilter.LD_H, sockfilter.LD_W, sockfilter.JEQ, sockfilter.RET
    # Each jeq's false branch goes to the last instruction (reject) for the header checks; for a
    # refused source, the address's jeq goes on to its port's when equal (else past it), the
    # port's to reject when equal. Jumps count from the next instruction.
    checks = [(ld_b, 8, 2), (ld_w, 12, xid), (ld_w, 36, mac_hi), (ld_h, 40, mac_lo)]
    n = 2 * len(checks) + 4 * len(refused) + 2       # the last two: accept, reject
    insns: list[tuple[int, int, int, int]] = []
    for code, off, want in checks:
        insns.append((code, 0, 0, off))
        insns.append((jeq, 0, n - 1 - (len(insns) + 1), want))
    for address, port in refused:
        insns.append((ld_w, 0, 0, (SKF_NET_OFF + 12) & 0xFFFFFFFF))
        insns.append((jeq, 0, 2, int.from_bytes(socket.inet_aton(address), "big")))
        insns.append((ld_h, 0, 0, 0))
        insns.append((jeq, n - 1 - (len(insns) + 1), 0, port))
    insns += [(ret, 0, 0, sockfilter.ACCEPT), (ret, 0, 0, sockfilter.DROP)]   # whole datagram / none
    assert len(insns) == n
    try:
        sockfilter.attach(s, insns)
    except OSError as e:
        log.warning("DHCP: no socket filter (%s): a flood of replies may hide the server's", e)
        return False
    return True


class Transaction:
    """One DHCP transaction on a socket: its xid, our hardware address, the drop counters, and
    the sources the kernel keeps out for it.

    Why: a rogue that sees our broadcast DISCOVER (or REQUEST) floods replies for its xid; the
    socket filter lets those in, and however deep the queue, a flood faster than the paced
    reading keeps it full, so the kernel dropped the server's OFFER or ACK when it came (the CI
    machine: an OFFER read, its ACK lost behind 9,000 offers, then four tries lost behind the
    first try's flood still queued). Two things end that: `begin` discards what a previous
    transaction left queued, unread, before anything is sent for this one (nothing queued then
    can be an answer to it); and a source (address and port: a rogue beside the server shares its
    address) that sent BLOCK_AFTER replies we could not use is added to the filter, so nothing
    more of it takes room in the queue, and what it had queued is skipped without parsing. A real
    server sends one or two replies a transaction. A rogue that changes its source each time is
    read paced, as before, and keeps only PER_SOURCE_TRACKED counters. One that sends its junk
    in the name of a server we know -- the one we asked (its id), the one our lease is from
    (`spare`) -- does not get it refused: four such datagrams did, so the ACK behind a forged NAK
    was skipped and the NAK won, a lease dropped for four datagrams a try. That rogue must flood
    to keep the queue full, as before the filter. Another source in the server's name (one we
    never heard of: plain INIT) is refused for the transaction: no more than a rogue has anyway
    -- on the segment it can answer first with an offer we take."""

    def __init__(self, s: socket.socket, xid: int, mac: bytes, drops: Drops) -> None:
        self.s, self.xid, self.mac, self.drops = s, xid, mac, drops
        self.refused: list[Source] = []
        self._unusable: dict[Source, int] = {}
        self._filtered = False
        self._spared: set[Source] = set()

    def spare(self, server: str | None) -> None:
        """`server` (an address: its port 67) is never refused in this transaction."""
        if server is not None:
            self._spared.add((server, 67))

    def begin(self) -> None:
        """Filter for this transaction, then discard what is queued (bounded: the filter keeps
        anything else out until our message goes)."""
        self._filtered = only_ours(self.s, self.xid, self.mac)
        stale = 0
        buf = bytearray(1)
        self.s.setblocking(False)
        try:
            while stale < DRAIN_MAX:
                self.s.recv_into(buf, 1)
                stale += 1
        except (BlockingIOError, InterruptedError):
            pass
        if stale:
            self.drops.drop("another transaction", stale)

    def unusable(self, source: Source) -> None:
        """A reply from `source` for this transaction was dropped: past BLOCK_AFTER of them, the
        kernel keeps `source` out (if the filter is set and there is room)."""
        if source in self._spared:
            return
        n = self._unusable.get(source)
        if n is None and len(self._unusable) >= PER_SOURCE_TRACKED:
            return
        n = (n or 0) + 1
        self._unusable[source] = n
        if n == BLOCK_AFTER and self._filtered and len(self.refused) < MAX_BLOCKED:
            self.refused.append(source)
            if only_ours(self.s, self.xid, self.mac, self.refused):
                self.drops.drop("flood: source refused")
            else:
                self.refused.pop()


def _replies(tx: Transaction, kinds: set[int], timeout: float, avoid: Sequence[ipaddress.IPv4Network] = (),
             server: str | None = None) -> Iterator[tuple[Reply, Offer | None]]:
    """Each reply of `kinds` for our transaction and hardware address (from `server`, the one we
    asked, when known) until the timeout: an OFFER/ACK with its checked lease, a NAK with None.
    What fails a check is counted, held against its source (Transaction.unusable) and skipped;
    what a refused source had queued is skipped unparsed and unpaced (the filter keeps more out).
    Bounded by time, its reading paced in a flood (above). A NAK must carry `server`'s id when
    that is known (RFC 2131 4.3.2: a NAK names its server; one without an id could be anyone's)."""
    s, drops = tx.s, tx.drops
    tx.spare(server)
    end = time.monotonic() + timeout
    count = 0
    while True:
        left = end - time.monotonic()
        if left > 0 and count >= MAX_REPLIES and count % FLOOD_BURST == 0:
            if count == MAX_REPLIES:
                drops.drop("flood: reading paced")
            time.sleep(min(FLOOD_PAUSE, left))
            left = end - time.monotonic()
        if left <= 0:
            return
        s.settimeout(left)
        try:
            data, source = s.recvfrom(4096)
        except (TimeoutError, socket.timeout):
            return
        if source in tx.refused:
            drops.drop("flood: source refused")
            continue
        count += 1
        r = parse_reply_untrusted(data)
        why = _unwanted(tx, r, kinds, server)
        if why is None:
            assert r is not None
            if r.kind == NAK:
                yield r, None
                continue
            checked = check_reply_untrusted(r, avoid)
            if not isinstance(checked, str):
                yield r, checked
                continue
            why = checked
        drops.drop(why)
        tx.unusable(source)


def _unwanted(tx: Transaction, r: Reply | None, kinds: set[int], server: str | None) -> str | None:
    """Why `r` is no answer to `tx` (the drop counter's name), or None."""
    if r is None:
        return "malformed"
    if r.xid != tx.xid:
        return "another transaction"
    if r.chaddr != tx.mac:
        return "another client"
    if r.kind not in kinds:
        return "unexpected message type"
    if server is not None and r.server_id is not None and r.server_id != server:
        return "another server"
    if r.kind == NAK and server is not None and r.server_id is None:
        return "NAK without server id"
    return None


RECV_QUEUE = 4 << 20                   # bytes of the DHCP socket's receive queue (see _big_queue)


def _big_queue(s: socket.socket) -> None:
    """Give the socket a receive queue of RECV_QUEUE bytes (SO_RCVBUFFORCE: PID 1 is root; else
    what rmem_max allows). Why: a rogue that sees our broadcast DISCOVER floods answers for its
    transaction (the socket filter lets those in), and with the default queue (~200 small
    datagrams) the flood filled it within milliseconds, before the real server's OFFER came: the
    kernel dropped the OFFER (in the lab, whole rounds of five tries lost: 20 s to a lease). A
    queue of thousands holds the server's OFFER behind the flood's first tens of milliseconds,
    and the paced reading gets to it within the wait."""
    for opt in (33, socket.SO_RCVBUF):          # SO_RCVBUFFORCE (asm-generic/socket.h), SO_RCVBUF
        try:
            s.setsockopt(socket.SOL_SOCKET, opt, RECV_QUEUE)
            return
        except OSError:
            continue


def _wait(tx: Transaction, kinds: set[int], timeout: float,
          avoid: Sequence[ipaddress.IPv4Network] = (), server: str | None = None,
          keep: tuple[str, int] | None = None) -> tuple[Reply, Offer | None] | None:
    """The first reply of `kinds` for our transaction and hardware address (from `server`, the
    one we asked, when known) whose lease is usable; None at the timeout. A NAK does not end the
    wait: anyone on the segment can send one with the server's id, so a rogue could otherwise
    make us drop every lease the real server ACKs (we would give up at boot); an ACK that
    follows wins, and a NAK alone is the answer at the end of the wait. Each reply dropped on
    the way is counted; the wait is bounded by time, and its reading paced in a flood (above)."""
    nak: Reply | None = None
    drops = tx.drops
    for r, checked in _replies(tx, kinds, timeout, avoid, server):
        if checked is None:
            if nak is not None:
                drops.drop("repeated NAK")
            nak = nak or r
        elif keep is not None and (checked.address, checked.prefixlen) != keep:
            drops.drop("another address while the lease holds")
        else:
            return r, checked
    return (nak, None) if nak is not None else None


def _choose_offer(tx: Transaction, timeout: float, avoid: Sequence[ipaddress.IPv4Network],
                  held: tuple[str, int], held_server: str | None,
                  nak_server: str | None = None) -> Offer | None:
    """After a NAK, while the lease `held` (address, prefix length) still holds: the OFFER to
    take, of all that come within `timeout`. An offer of the held address ends the wait at once,
    whoever sends it: after a forged NAK the real server offers the same address again and
    nothing changes. Otherwise, at the end of the wait, the first offer of `held_server` (the
    server that gave the lease: the ISP renumbered), else of `nak_server` (the one that sent the
    NAK: a renumbered segment's server may have a new address, hence a new id), else the first
    offer at all (RFC 2131's INIT takes any). Waiting out the whole time, not taking the first,
    is what lets the real server's offer of our own address beat a faster rogue's; three slots,
    whatever a flood of offers for our transaction brings (later offers of a server already
    heard from do not replace its first). The rest is counted (`another address while the lease
    holds`)."""
    firsts: dict[str | None, Offer] = {}
    first: Offer | None = None
    others = 0
    chosen: Offer | None = None
    drops = tx.drops
    for _r, offer in _replies(tx, {OFFER}, timeout, avoid):
        assert offer is not None
        if (offer.address, offer.prefixlen) == held:
            chosen = offer
            break
        others += 1
        first = first or offer
        if offer.server is not None and offer.server in (held_server, nak_server):
            firsts.setdefault(offer.server, offer)
    else:
        chosen = next((firsts[t] for t in (held_server, nak_server) if t is not None and t in firsts), first)
    for _ in range(others - (chosen is not None and (chosen.address, chosen.prefixlen) != held)):
        drops.drop("another address while the lease holds")
    return chosen


def held_terms(lease: "Lease", offer: Offer) -> Offer:
    """What an ACK of the lease's own address is acted on with when it does not come from the
    server that gave the lease (REBINDING, where any server may answer, or a round after a NAK):
    the lease's router, DNS and server id stay, and the lease is no longer than the one we hold.
    Why: a rogue that answers the broadcast REQUEST first with our own address (the check of the
    address lets it through) would otherwise move the default route to its own router -- every
    packet of the WAN, the tunnel's included, through it -- or hand out an 'infinite' lease, so
    the address were never given up however long the real server stays silent. A real second
    server that takes over still keeps the address renewed (each REBINDING) on the old terms."""
    if offer.address != lease.address or (lease.server is not None and offer.server == lease.server):
        return offer
    return replace(offer, router=lease.router, dns=tuple(lease.dns), server=lease.server,
                   lease_time=min(offer.lease_time, lease.lease_time))


def _apply(ifname: str, offer: Offer) -> None:
    """Give the NIC the lease's address and default route. An address the NIC has already (a
    renewal) is left in place: removing the NIC's last address makes the kernel drop every
    route through it, the tunnel's host route to the VPN server too."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            # The NIC is gone (unplugged, hot-removed): said so, not as an IndexError; the
            # renewal thread logs it and tries again after retry_min.
            raise OSError(errno.ENODEV, f"{ifname}: no such interface (gone?)")
        idx = found[0]
        have = [(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                for a in whole_dump(lambda: ipr.get_addr(index=idx, family=socket.AF_INET), "address")]
        if have != [(offer.address, offer.prefixlen)]:
            ipr.flush_addr(index=idx, family=socket.AF_INET)
            ipr.addr("add", index=idx, address=offer.address, prefixlen=offer.prefixlen)
        ipr.link("set", index=idx, state="up")
        if offer.router:
            try:
                ipr.route("replace", dst="0.0.0.0/0", gateway=offer.router, oif=idx)
            except Exception as e:  # noqa: BLE001 - report, keep the address
                log.warning("%s: default route via %s: %s", ifname, offer.router, e)


@dataclass(frozen=True)
class Nak:
    """_Client.request's answer when a NAK came and no ACK after it; `server`: the NAK's server id."""
    server: str | None = None


NAKED = Nak()


class _Client:
    """The DHCP client of one NIC: its hardware address, the LAN networks no lease may overlap
    (`avoid`), its drop counters and times (`policy`). `stop` ends every wait (Lease.stop);
    `clock` and `rand` are time.monotonic and random.random, apart from in tests."""

    def __init__(self, ifname: str, mac: bytes, avoid: Sequence[ipaddress.IPv4Network], policy: Policy,
                 stop: threading.Event, clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        self.ifname, self.mac, self.avoid, self.policy, self.stop = ifname, mac, tuple(avoid), policy, stop
        self.clock, self.rand = clock, rand
        self.drops = Drops(ifname, clock)
        self._nak_round_at: float | None = None     # when the last round of DISCOVERs after a NAK began
        self.notes = NoteLimit()                    # reapply's "added again": not one per check of a flapping link

    def _socket(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
            s.bind(("0.0.0.0", 68))
        except OSError:
            s.close()
            raise
        _big_queue(s)
        return s

    def _sleep(self, seconds: float) -> bool:
        """Wait (True: stopped). Interruptible: a signal handler's exception ends it at boot."""
        return self.stop.wait(seconds) if seconds > 0 else self.stop.is_set()

    def _dropped(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.drops.counts.items())) or "none"

    def _round(self, keep: tuple[str, int] | None, say: bool, held: Lease | None = None,
               nak_server: str | None = None, keep_server: str | None = None) -> tuple[Offer, float] | None:
        """Up to `policy.tries` DISCOVER, OFFER, REQUEST, ACK exchanges: the checked lease of the
        first usable offer that is ACKed and when its REQUEST was sent, or None. `keep`: the
        (address, prefix length) of a lease still running: asked for, and the only lease taken.
        `held`: the lease a NAK (from `nak_server`) questioned, still on the NIC: its address asked
        for, the offer chosen by _choose_offer (its own address, else a new one). `say`: log each
        unanswered try (the first round's). A socket or send that fails (the NIC down, gone) is
        an unanswered try, waited out like one: nothing here spins or raises. The lease's server
        (`held`'s, or `keep_server`) is never refused as a flood's source (Transaction)."""
        p = self.policy
        try:
            s = self._socket()
        except OSError as e:
            if say:
                log.info("%s: no DHCP socket: %s", self.ifname, e)
            self._sleep(p.reply_wait * p.tries)
            return None
        try:
            for attempt in range(p.tries):
                if self.stop.is_set():
                    return None
                xid = random.getrandbits(32)
                tx = Transaction(s, xid, self.mac, self.drops)
                tx.spare(held.server if held is not None else keep_server if keep else None)
                why = "no usable DHCP offer"
                try:
                    tx.begin()
                    ask = held.address if held is not None else keep[0] if keep else None
                    s.sendto(build_message(DISCOVER, xid, self.mac, ask), ("255.255.255.255", 67))
                    if held is not None:
                        offer = _choose_offer(tx, p.reply_wait, self.avoid,
                                              (held.address, held.prefixlen), held.server, nak_server)
                    else:
                        got = _wait(tx, {OFFER}, p.reply_wait, self.avoid, keep=keep)
                        offer = got[1] if got is not None else None
                    if offer is not None:
                        sent = self.clock()
                        s.sendto(build_message(REQUEST, xid, self.mac, offer.address, offer.server),
                                 ("255.255.255.255", 67))
                        got = _wait(tx, {ACK, NAK}, p.reply_wait, self.avoid,
                                    offer.server, (offer.address, offer.prefixlen) if held is not None else keep)
                        if got is not None and got[1] is not None:
                            return got[1], sent
                        why = "DHCP request " + ("refused (NAK)" if got else "unanswered")
                except OSError as e:
                    why = f"DHCP send failed ({e})"
                    self._sleep(p.reply_wait)
                if say:
                    log.info("%s: %s (try %d of %d)", self.ifname, why, attempt + 1, p.tries)
            return None
        finally:
            s.close()

    def acquire(self, lease: Lease | None = None) -> tuple[Offer, float] | None:
        """INIT: rounds of DISCOVERs with growing pauses (Policy) until a usable lease is ACKed;
        None only once stopped. `lease`: the one the NIC holds (run out, or removed): while it
        holds, only its own address is taken; once it has run out and one more round got nothing,
        its address is removed from the NIC (_expire) and any usable lease is taken. (A NAK is
        _after_nak's: one round, not this wait.)"""
        p = self.policy
        start = next_log = self.clock()
        rounds = 0
        while not self.stop.is_set():
            holds = lease is not None and lease.on_nic and self.clock() < lease.expires
            got = self._round((lease.address, lease.prefixlen) if holds else None, say=rounds == 0,
                              keep_server=lease.server if holds else None)
            if got is not None:
                return got
            rounds += 1
            now = self.clock()
            if lease is not None and lease.on_nic and not holds:
                self._expire(lease)
            pause = p.pause(rounds, self.rand())
            if lease is not None and lease.on_nic:
                pause = min(pause, max(0.0, lease.expires - now))   # the address goes at expiry, not a pause later
            if now >= next_log:
                next_log = now + p.log_every
                log.warning("%s: no DHCP lease yet: %d tries in %.0f s (replies dropped: %s); asking again in %.0f s",
                            self.ifname, rounds * p.tries, now - start, self._dropped(), pause)
            if self._sleep(pause):
                break
        return None

    def request(self, lease: Lease, state: str) -> Offer | Nak | None:
        """One RENEWING or REBINDING REQUEST (RFC 2131 4.3.2: ciaddr our address, no requested
        address, no server id): unicast to the lease's server when RENEWING (broadcast when it
        gave no usable server id), broadcast when REBINDING, where any server may answer. The
        checked ACK of our own address and prefix; a Nak for a NAK no ACK followed; None when
        unanswered. Every reply goes through _wait's checks (another server's when RENEWING)."""
        unicast = lease.server if state == RENEWING else None
        try:
            s = self._socket()
        except OSError as e:
            log.info("%s: no DHCP socket: %s", self.ifname, e)
            return None
        try:
            xid = random.getrandbits(32)
            tx = Transaction(s, xid, self.mac, self.drops)
            tx.spare(lease.server)                  # REBINDING too: its ACK is likeliest
            tx.begin()
            s.sendto(build_message(REQUEST, xid, self.mac, ciaddr=lease.address),
                     (unicast or "255.255.255.255", 67))
            got = _wait(tx, {ACK, NAK}, self.policy.reply_wait, self.avoid, unicast,
                        (lease.address, lease.prefixlen))
        except OSError as e:
            log.info("%s: DHCP %s request not sent: %s", self.ifname, state, e)
            return None
        finally:
            s.close()
        if got is None:
            return None
        return got[1] if got[1] is not None else Nak(got[0].server_id)

    def bind(self, lease: Lease, offer: Offer, sent: float, how: str) -> None:
        """Apply `offer` (got by a REQUEST sent at `sent`) and make it `lease`'s, unless stopped."""
        t = lease_timing(offer.lease_time, offer.renew, offer.rebind, self.policy)
        with lease._lock:
            if self.stop.is_set():
                return
            _apply(self.ifname, offer)
            (lease.address, lease.prefixlen, lease.router, lease.dns, lease.server, lease.lease_time,
             lease.renew_at, lease.rebind_at, lease.expires, lease.on_nic) = (
                offer.address, offer.prefixlen, offer.router, list(offer.dns), offer.server, offer.lease_time,
                sent + t.t1, sent + t.t2, sent + t.lease, True)
        log.info("%s: DHCP lease %s (%s; renewal in %.0f s, rebinding in %.0f s)", self.ifname, lease, how,
                 t.t1, t.t2)

    def _expire(self, lease: Lease) -> None:
        with lease._lock:
            if self.stop.is_set() or not lease.on_nic:
                return
            _remove(self.ifname, lease.address, lease.prefixlen)
            lease.on_nic = False
        log.warning("%s: DHCP lease of %s/%d ran out, no server answered: address removed (RFC 2131); "
                    "still asking", self.ifname, lease.address, lease.prefixlen)

    def keep_renewed(self, lease: Lease) -> None:
        """The renewal thread: BOUND until T1; RENEWING (a unicast REQUEST to the lease's server,
        again after half the time left to T2, at least retry_min later) until T2; REBINDING
        (broadcast, the same spacing to the expiry); then INIT (acquire). A NAK no ACK followed
        starts a round of DISCOVERs at once (_after_nak), the address kept meanwhile. An
        unexpected error is logged and retried after retry_min: the thread never dies."""
        while not self.stop.is_set():
            try:
                self._step(lease)
            except Exception as e:  # noqa: BLE001 - keep the address, try again later
                log.warning("%s: DHCP renewal failed: %s", self.ifname, e)
                self._sleep(self.policy.retry_min)

    def _step(self, lease: Lease) -> None:
        state = phase(self.clock(), lease.renew_at, lease.rebind_at, lease.expires)
        if state == BOUND:
            self._sleep(lease.renew_at - self.clock())
            return
        if state == EXPIRED or not lease.on_nic:
            got = self.acquire(lease)
            if got is not None:
                self.bind(lease, *got, "init")
            return
        sent = self.clock()
        answer = self.request(lease, state)
        if isinstance(answer, Offer):
            self.bind(lease, held_terms(lease, answer), sent, state)
            return
        if isinstance(answer, Nak) and self._after_nak(lease, state, answer.server):
            return
        end = lease.rebind_at if state == RENEWING else lease.expires
        nxt = retransmit_at(sent, end, self.policy.retry_min, self.policy.max_renew)
        log.info("%s: DHCP %s request %s (replies dropped: %s); next in %.0f s", self.ifname, state,
                 "refused (NAK)" if isinstance(answer, Nak) else "unanswered", self._dropped(),
                 max(0.0, nxt - self.clock()))
        self._sleep(nxt - self.clock())

    def _after_nak(self, lease: Lease, state: str, nak_server: str | None = None) -> bool:
        """A NAK to our RENEWING/REBINDING REQUEST that passed _wait's checks (our transaction and
        hardware address; the lease's server id when RENEWING) and that no ACK followed: RFC 2131
        4.4.5 sends the client back to INIT. One round of DISCOVERs at once, the address and the
        routes kept until a lease is bound (True): a forged NAK gets the same address offered
        again by the real server and changes nothing; a real one (the ISP renumbered) gets the
        server's new address, which replaces the old now, not at the lease's expiry (a day, for
        some ISPs). No usable offer: False, the REQUESTs go on as when unanswered. At most one
        round per `nak_every`: a NAK storm (anyone's to send in REBINDING, where the REQUEST's
        transaction is broadcast) is not turned into a storm of DISCOVERs."""
        now = self.clock()
        if self._nak_round_at is not None and now < self._nak_round_at + self.policy.nak_every:
            log.warning("%s: DHCP %s refused (NAK) again within %.0f s of the last round of DISCOVERs: "
                        "none now; %s stays", self.ifname, state, self.policy.nak_every, lease.address)
            return False
        self._nak_round_at = now
        log.warning("%s: DHCP %s refused (NAK): asking anew (DISCOVER); %s stays until a lease is bound",
                    self.ifname, state, lease.address)
        got = self._round(None, say=False, held=lease, nak_server=nak_server)
        if got is None:
            log.warning("%s: no usable DHCP offer after the NAK; %s stays while its lease holds",
                        self.ifname, lease.address)
            return False
        offer, sent = got
        if offer.address != lease.address:
            log.warning("%s: DHCP server %s renumbered the WAN: %s/%d -> %s/%d", self.ifname, offer.server,
                        lease.address, lease.prefixlen, offer.address, offer.prefixlen)
        self.bind(lease, held_terms(lease, offer), sent, "init after a NAK")
        return True


    def reapply(self, lease: Lease, link_back: bool = False) -> bool:
        """Give the NIC the lease's address again if it lost it while the lease holds (True: it
        was added again); with `link_back` (the link just came up again) the default route too
        when there is none. Nothing while the link is down (an operator's `ip link set down` is
        theirs) or once stopped, expired or removed (RFC 2131). Why: a link flap that takes the
        address away (a driver's reset, a hypervisor's NIC reconnect, an `ip addr flush`) left
        the WAN without its address until T1 -- up to half the lease, 12 h at the most --,
        and the kernel drops the IPv4 routes of a NIC set down, the default route among them."""
        added: list[str] = []
        with lease._lock:
            if self.stop.is_set() or not lease.on_nic or self.clock() >= lease.expires:
                return False
            with IPRoute() as ipr:
                found = ipr.link_lookup(ifname=self.ifname)
                if not found:
                    return False
                idx = found[0]
                links = ipr.get_links(idx)
                if not links or not links[0]["flags"] & IFF_UP:
                    return False
                have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                        for a in whole_dump(lambda: ipr.get_addr(index=idx, family=socket.AF_INET), "address")}
                if (lease.address, lease.prefixlen) not in have:
                    ipr.addr("add", index=idx, address=lease.address, prefixlen=lease.prefixlen)
                    added.append(f"{lease.address}/{lease.prefixlen}")
                if lease.router and (added or link_back) and not any(
                        r["dst_len"] == 0
                        for r in whole_dump(lambda: ipr.get_routes(family=socket.AF_INET, table=254), "route")):
                    ipr.route("add", dst="0.0.0.0/0", gateway=lease.router, oif=idx)
                    added.append(f"default via {lease.router}")
        now = self.clock()
        if added:
            held = self.notes.due(now)
            if held is not None:
                log.warning("%s: the DHCP lease's %s was gone from the NIC (link down/up, flushed): added again%s",
                            self.ifname, " and ".join(added), times(held))
        elif held := self.notes.summary(now):     # a storm over: its count said, not left for the next flap
            log.warning("%s: the DHCP lease's address or default route gone and added again %d more time%s since "
                        "the last such line: the link keeps flapping or being flushed", self.ifname, held,
                        "s" if held != 1 else "")
        return bool(added)

    def watch_link(self, lease: Lease) -> None:
        """The relink thread: keep_on_link with reapply() (the lease's address and route)."""
        keep_on_link(self.ifname, self.stop, lambda back: self.reapply(lease, link_back=back),
                     "the DHCP lease's address")


def keep_on_link(ifname: str, stop: threading.Event, reapply: Callable[[bool], object], what: str) -> None:
    """A relink thread's loop: `reapply(link_back)` at once when the kernel says a link changed
    or the NIC lost an address, IPv4 or IPv6 (rtnetlink multicast, RELINK_GROUPS: only the kernel
    sends there, and an event is only a hint -- what the NIC holds is asked afresh; _is_hint
    says which are), after RELINK_SETTLE for the rest of the
    burst, and every RELINK_TICK anyway (a lost event, no netlink socket); `link_back`: the
    link was seen down since the last call (its IPv4 routes are gone). Nothing while the link
    is down. A flapping link costs a check per RELINK_SETTLE at most; an error is logged at
    most once per RELINK_TICK. Ends when `stop` is set. The one loop for the WAN's DHCP lease
    (wan38) and its static address and routes (router/nics.py keep_static)."""
    def sleep(seconds: float) -> bool:
        return stop.wait(seconds) if seconds > 0 else stop.is_set()
    nl: socket.socket | None = None
    try:
        nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        nl.bind((0, RELINK_GROUPS))
        nl.setblocking(False)
    except OSError as e:
        log.info("%s: no link events (%s): %s is checked every %.0f s", ifname, e, what, RELINK_TICK)
        if nl is not None:
            nl.close()
        nl = None
    was_up = True
    next_check = time.monotonic() + RELINK_TICK
    next_log = 0.0
    try:
        while not stop.is_set():
            try:
                woke = went_down = False
                if nl is not None:
                    ready, _, _ = select.select([nl], [], [], 0.5)
                    if ready:
                        woke, went_down = _drain(nl, ifname)
                    if woke:
                        if sleep(RELINK_SETTLE):
                            break
                        went_down = _drain(nl, ifname)[1] or went_down
                elif sleep(0.5):
                    break
                now = time.monotonic()
                if not woke and now < next_check:
                    continue
                next_check = now + RELINK_TICK
                up = _link_up(ifname)
                if up:
                    reapply(went_down or not was_up)
                was_up = up
            except Exception as e:  # noqa: BLE001 - the NIC gone, netlink busy: try again, never spin
                now = time.monotonic()
                if now >= next_log:
                    next_log = now + RELINK_TICK
                    log.info("%s: checking %s failed: %s", ifname, what, e)
                if sleep(0.5):
                    break
    finally:
        if nl is not None:
            nl.close()


# rtnetlink(7): the multicast groups watched, the messages parsed
RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x1, 0x10, 0x100
# Links, and both families' addresses: an IPv6 address removed while the link stays up (`ip addr
# del`, a flush) woke the thread only at its RELINK_TICK before (flap40 found it), the IPv4 one at once.
RELINK_GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
RTM_NEWLINK = 16
RTM_NEWADDR, RTM_DELADDR = 20, 21
IFF_UP = 0x1
DRAIN_EVENTS = 256                     # netlink datagrams read at most per wake-up
_NLMSGHDR = struct.Struct("=IHHII")       # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")     # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")      # family, prefixlen, flags, scope, index


def _is_hint(kind: int, data: bytes, body: int, end: int, index: int) -> bool:
    """Whether one message (its body at data[body:end]) may mean something to reapply: the one
    place this is decided, for both families. An address message only when it is a removal
    from our NIC (`index`): additions and the lifetime refresh every router advertisement
    brings (RTM_NEWADDR) need nothing, and a WAN neighbour sending RAs by the thousand would
    otherwise pace a check every RELINK_SETTLE; another NIC's addresses are not ours to keep.
    Any link message, and anything else or too short to tell, is one (as before: a hint costs
    one paced check, a lost one a RELINK_TICK)."""
    if kind in (RTM_NEWADDR, RTM_DELADDR) and body + _IFADDRMSG.size <= end:
        return kind == RTM_DELADDR and _IFADDRMSG.unpack_from(data, body)[4] == index
    return True


def _drain(nl: socket.socket, ifname: str) -> tuple[bool, bool]:
    """Read what the netlink socket holds (at most DRAIN_EVENTS): (a hint there (_is_hint),
    `ifname`'s link seen down). Events lost (ENOBUFS: the queue overflowed) count as both: a
    down and up may be among them. Parsed with bounds checks; only the kernel sends to these
    groups. A datagram with no message to walk (too short) counts as a hint."""
    got = down = False
    try:
        index = socket.if_nametoindex(ifname)
    except OSError:
        index = -1                           # gone: no event can be its
    for _ in range(DRAIN_EVENTS):
        try:
            data = nl.recv(65536)
        except (BlockingIOError, InterruptedError):
            break
        except OSError as e:
            if e.errno != errno.ENOBUFS:
                raise
            got = down = True
            continue
        at = walked = 0
        while at + _NLMSGHDR.size <= len(data):
            length, kind = _NLMSGHDR.unpack_from(data, at)[:2]
            if length < _NLMSGHDR.size:
                break
            walked += 1
            body = at + _NLMSGHDR.size
            got = got or _is_hint(kind, data, body, min(at + length, len(data)), index)
            if kind == RTM_NEWLINK and body + _IFINFOMSG.size <= len(data):
                _fam, _type, idx, flags, _chg = _IFINFOMSG.unpack_from(data, body)
                if idx == index and not flags & IFF_UP:
                    down = True
            at += (length + 3) & ~3
        got = got or not walked
    return got, down


def _link_up(ifname: str) -> bool:
    """Whether the NIC exists and is administratively up (IFF_UP)."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return False
        links = ipr.get_links(found[0])
        return bool(links) and bool(links[0]["flags"] & IFF_UP)


@contextlib.contextmanager
def _sigterm_stops(ifname: str) -> Iterator[None]:
    """SIGTERM stops the boot's wait for a lease (SystemExit(0), the status of a stop at
    SIGTERM), undoing what was set up on the way out (run_toml's finally). Why: the wait is
    unbounded now, and a host's process (`vpn-appliance run`, a service stop) dies of an
    unhandled SIGTERM without that; PID 1 ignores it, so the VM could not be stopped by it either.
    Only where no handler is set yet (the gateway sets its own later), and in the main thread."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def stop(_signum, _frame) -> None:
        log.warning("%s: SIGTERM while waiting for a DHCP lease: stopping", ifname)
        raise SystemExit(0)
    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def dhcp_configure(ifname: str, avoid: Sequence[ipaddress.IPv4Network] = (), policy: Policy = Policy(),
                   undo: "Undo | None" = None) -> Lease:
    """Get a lease -- asking until one comes --, configure the interface, and keep the lease
    renewed in a daemon thread (RFC 2131 states). `avoid`: the LAN's networks, which no lease may
    overlap. `undo` (run_toml's): the address applied and the lease's stop pushed as one step
    (Undo.step), the wait for a lease before it left outside, so a stop signal still ends that
    wait at once. Why (review46d): the push came after this returned, so a SIGTERM as the
    address went on left it, and its default route, on the WAN after the run, no DHCPRELEASE."""
    with open(f"/sys/class/net/{ifname}/address") as f:
        mac = bytes.fromhex(f.read().strip().replace(":", ""))
    client = _Client(ifname, mac, avoid, policy, threading.Event())
    with _sigterm_stops(ifname):
        got = client.acquire()
    assert got is not None                # the boot's client is stopped only by SIGTERM: SystemExit
    offer, sent = got
    lease = Lease(ifname, offer.address, offer.prefixlen, offer.router, list(offer.dns), offer.server,
                  offer.lease_time, _stop=client.stop)
    lease.mac = mac
    with undo.step() if undo is not None else contextlib.nullcontext():
        client.bind(lease, offer, sent, "boot")
        threading.Thread(target=client.keep_renewed, args=(lease,), name="dhcp-renew", daemon=True).start()
        threading.Thread(target=client.watch_link, args=(lease,), name="dhcp-relink", daemon=True).start()
        if undo is not None:
            undo.push(f"DHCP on {ifname}", lease.stop)
    return lease
