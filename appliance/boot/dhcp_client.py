"""A small DHCP client for the WAN NIC (RFC 2131: DISCOVER, OFFER, REQUEST, ACK; renewal at T1).

Why our own: the image has no shell and no dhclient/udhcpc; this is ~150 lines and runs inside the
appliance process (a daemon thread renews the lease). The codec is pure and unit-tested; the client
uses a UDP socket bound to the interface (SO_BINDTODEVICE) with the broadcast flag set, so offers
reach us before the interface has an address.

Whatever answers on the WAN segment is untrusted (a rogue DHCP server races the real one): an
offer or ACK is used only when `check_reply_untrusted` finds everything we apply usable (address,
netmask, router); anything else -- another transaction, another client's hardware address, an
answer from a server other than the one we asked, an unusable field -- is dropped, counted in
`Drops` and logged at a limited rate, and the client keeps waiting for a usable one. So one bad
reply can neither stop PID 1 (an exception at boot powers the VM off) nor leave the WAN without
its address. A renewal that gets the address the NIC already has changes nothing on it: removing
the NIC's last address makes the kernel drop every route through it, the tunnel's host route to
the VPN server among them. And while the lease holds, a renewal takes only that address (and
prefix): it asks for it (option 50), and another server's faster offer of another usable address
-- a rogue's, anyone's on the segment -- is dropped ("another address while the lease holds"),
where before it moved the WAN at every renewal, its routes with it. Only a lease that has run
out is replaced by whatever usable lease comes.
"""
from __future__ import annotations

import ctypes
import ipaddress
import logging
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

from pyroute2 import IPRoute

log = logging.getLogger("vpn-appliance")
# A flood of replies (anyone on the WAN can broadcast to port 68): past MAX_REPLIES datagrams in one
# wait, at most FLOOD_BURST more per FLOOD_PAUSE are read, so the renewal thread takes a few percent
# of a core, not all of it, while the wait still lasts its time and still takes a usable reply.
# (Ending the wait at the count instead let ~1,300 junk datagrams end a boot's 5 tries at once: PID
# 1 gave up and powered the VM off.) Paced reading alone let a flood keep the socket's queue full and
# the server's reply out of it: the kernel filters what is for another transaction first (only_ours).
MAX_REPLIES = 256
FLOOD_BURST, FLOOD_PAUSE = 32, 0.01
MIN_RENEW, MAX_RENEW = 30, 12 * 3600   # renewal at half the lease time, within these bounds (s)
DEFAULT_PREFIX = 24                    # no netmask option: what this client always assumed
MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK = 1, 2, 3, 4, 5, 6


def build_message(kind: int, xid: int, mac: bytes, requested: str | None = None, server: str | None = None,
                  ciaddr: str = "0.0.0.0") -> bytes:
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, socket.inet_aton(ciaddr),
                      bytes(4), bytes(4), bytes(4), mac.ljust(16, b"\0"), b"", b"")
    opts = bytes([53, 1, kind]) + bytes([55, 5, 1, 3, 6, 51, 54]) + bytes([61, 7, 1]) + mac
    if requested:
        opts += bytes([50, 4]) + socket.inet_aton(requested)
    if server:
        opts += bytes([54, 4]) + socket.inet_aton(server)
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


class Drops:
    """Replies dropped, by reason, logged at most every LOG_EVERY seconds (a rogue server or a
    flood of broadcasts costs a few lines, not one per packet)."""
    LOG_EVERY = 30.0

    def __init__(self, ifname: str, clock=time.monotonic) -> None:
        self.ifname = ifname
        self.clock = clock
        self.counts: dict[str, int] = {}
        self._next_log = 0.0

    def drop(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
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
    The lease time is kept as sent (renewal bounds it); DNS servers that are not unicast are left
    out (only shown: the tunnel's DNS comes from the VPN server)."""
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
    lease_time = struct.unpack("!I", r.options[51])[0] if len(r.options.get(51, b"")) == 4 else 3600
    return Offer(str(addr), prefix, router, dns, r.server_id, lease_time)


def renew_after(lease_time: int) -> int:
    """Seconds until the renewal (T1, half the lease), bounded: a lease of 0 s must not make the
    client ask in a loop, nor an 'infinite' one (0xffffffff) keep a changed network unnoticed."""
    return max(MIN_RENEW, min(MAX_RENEW, lease_time // 2))


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
    ifname: str
    address: str
    prefixlen: int
    router: str | None
    dns: list[str]
    server: str | None
    lease_time: int
    expires: float = 0.0            # time.monotonic() when the lease runs out
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def __str__(self) -> str:
        return (f"{self.address}/{self.prefixlen} router {self.router} dns {','.join(self.dns) or '-'} "
                f"lease {self.lease_time}s from {self.server}")

    def stop(self) -> None:
        self._stop.set()
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=self.ifname)
            if idx:
                try:
                    ipr.addr("del", index=idx[0], address=self.address, prefixlen=self.prefixlen)
                except Exception:  # noqa: BLE001 - already gone
                    pass


def _exchange(ifname: str, mac: bytes, drops: Drops, avoid: Sequence[ipaddress.IPv4Network] = (),
              timeout: float = 3.0, tries: int = 5, keep: tuple[str, int] | None = None) -> Offer:
    """DISCOVER, OFFER, REQUEST, ACK: the checked lease of the first usable offer that is ACKed.
    `keep`: the (address, prefix length) the NIC holds under a lease still running: asked for,
    and the only lease taken."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        s.bind(("0.0.0.0", 68))
        for attempt in range(tries):
            xid = random.getrandbits(32)
            only_ours(s, xid, mac)
            s.sendto(build_message(DISCOVER, xid, mac, keep[0] if keep else None), ("255.255.255.255", 67))
            got = _wait(s, xid, mac, {OFFER}, timeout, drops, avoid, keep=keep)
            if got is None:
                log.info("%s: no usable DHCP offer (try %d of %d)", ifname, attempt + 1, tries)
                continue
            offer = got[1]
            assert offer is not None
            s.sendto(build_message(REQUEST, xid, mac, offer.address, offer.server), ("255.255.255.255", 67))
            got = _wait(s, xid, mac, {ACK, NAK}, timeout, drops, avoid, offer.server, keep)
            if got is not None and got[1] is not None:
                return got[1]
            log.info("%s: DHCP request %s", ifname, "refused (NAK)" if got else "unanswered")
        dropped = ", ".join(f"{k}={v}" for k, v in sorted(drops.counts.items())) or "none"
        raise RuntimeError(f"{ifname}: no DHCP lease after {tries} tries (replies dropped: {dropped})")
    finally:
        s.close()


SO_ATTACH_FILTER = 26                  # asm-generic/socket.h (x86_64)


def only_ours(s: socket.socket, xid: int, mac: bytes) -> bool:
    """Have the kernel queue on `s` only replies (BOOTREPLY) to transaction `xid` for hardware
    address `mac`: a classic BPF socket filter, looked at from the UDP header (the payload at 8).
    Why: the paced reading of a flood (above) frees room in the socket's queue for ~3,000
    datagrams a second, and a flood of 5,000 a second (12 Mbit/s of junk from any WAN host) kept
    the queue full, so the kernel dropped the real server's OFFER and ACK -- the boot ended
    without a lease, a renewal failed until the lease ran out. What the filter refuses takes no
    room and no reading; a flood of replies to our own transaction (the DISCOVER is broadcast,
    its xid seen) is still read paced. False, the Python checks alone, if it cannot be set."""
    mac_hi, mac_lo = int.from_bytes(mac[:4], "big"), int.from_bytes(mac[4:6], "big")
    ld_b, ld_h, ld_w, jeq, ret = 0x30, 0x28, 0x20, 0x15, 0x06
    insns = [(ld_b, 0, 0, 8), (jeq, 0, 7, 2),              # op: BOOTREPLY
             (ld_w, 0, 0, 12), (jeq, 0, 5, xid),           # xid
             (ld_w, 0, 0, 36), (jeq, 0, 3, mac_hi),        # chaddr
             (ld_h, 0, 0, 40), (jeq, 0, 1, mac_lo),
             (ret, 0, 0, 0xFFFFFFFF), (ret, 0, 0, 0)]      # whole datagram / none
    code = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *i) for i in insns))
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                     struct.pack("@HP", len(insns), ctypes.addressof(code)))
    except OSError as e:
        log.warning("DHCP: no socket filter (%s): a flood of replies may hide the server's", e)
        return False
    return True


def _wait(s: socket.socket, xid: int, mac: bytes, kinds: set[int], timeout: float, drops: Drops,
          avoid: Sequence[ipaddress.IPv4Network] = (), server: str | None = None,
          keep: tuple[str, int] | None = None) -> tuple[Reply, Offer | None] | None:
    """The first reply of `kinds` for our transaction and hardware address (from `server`, the
    one we asked, when known) whose lease is usable; None at the timeout. A NAK does not end the
    wait: anyone on the segment can send one with the server's id, so a rogue could otherwise
    make us drop every lease the real server ACKs (we would give up at boot); an ACK that
    follows wins, and a NAK alone is the answer at the end of the wait. Each reply dropped on
    the way is counted; the wait is bounded by time, and its reading paced in a flood (above)."""
    end = time.monotonic() + timeout
    nak: Reply | None = None
    count = 0
    while True:
        left = end - time.monotonic()
        if left > 0 and count >= MAX_REPLIES and count % FLOOD_BURST == 0:
            if count == MAX_REPLIES:
                drops.drop("flood: reading paced")
            time.sleep(min(FLOOD_PAUSE, left))
            left = end - time.monotonic()
        if left <= 0:
            return (nak, None) if nak is not None else None
        count += 1
        s.settimeout(left)
        try:
            data = s.recv(4096)
        except (TimeoutError, socket.timeout):
            return (nak, None) if nak is not None else None
        r = parse_reply_untrusted(data)
        if r is None:
            drops.drop("malformed")
        elif r.xid != xid:
            drops.drop("another transaction")
        elif r.chaddr != mac:
            drops.drop("another client")
        elif r.kind not in kinds:
            drops.drop("unexpected message type")
        elif server is not None and r.server_id is not None and r.server_id != server:
            drops.drop("another server")
        elif r.kind == NAK:
            if nak is not None:
                drops.drop("repeated NAK")
            nak = nak or r
        else:
            checked = check_reply_untrusted(r, avoid)
            if isinstance(checked, str):
                drops.drop(checked)
            elif keep is not None and (checked.address, checked.prefixlen) != keep:
                drops.drop("another address while the lease holds")
            else:
                return r, checked


def _apply(ifname: str, offer: Offer) -> Lease:
    """Give the NIC the lease's address and default route. An address the NIC has already (a
    renewal) is left in place: removing the NIC's last address makes the kernel drop every
    route through it, the tunnel's host route to the VPN server too."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        have = [(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=socket.AF_INET)]
        if have != [(offer.address, offer.prefixlen)]:
            ipr.flush_addr(index=idx, family=socket.AF_INET)
            ipr.addr("add", index=idx, address=offer.address, prefixlen=offer.prefixlen)
        ipr.link("set", index=idx, state="up")
        if offer.router:
            try:
                ipr.route("replace", dst="0.0.0.0/0", gateway=offer.router, oif=idx)
            except Exception as e:  # noqa: BLE001 - report, keep the address
                log.warning("%s: default route via %s: %s", ifname, offer.router, e)
    return Lease(ifname, offer.address, offer.prefixlen, offer.router, list(offer.dns), offer.server,
                 offer.lease_time, time.monotonic() + offer.lease_time)


def dhcp_configure(ifname: str, avoid: Sequence[ipaddress.IPv4Network] = ()) -> Lease:
    """Get a lease, configure the interface, and renew at half the lease time in a daemon thread.
    `avoid`: the LAN's networks, which no lease may overlap."""
    with open(f"/sys/class/net/{ifname}/address") as f:
        mac = bytes.fromhex(f.read().strip().replace(":", ""))
    drops = Drops(ifname)
    lease = _apply(ifname, _exchange(ifname, mac, drops, avoid))
    log.info("%s: DHCP lease %s", ifname, lease)

    def renew() -> None:
        while not lease._stop.wait(renew_after(lease.lease_time)):
            try:
                renew_once(lease, mac, drops, avoid)
            except Exception as e:  # noqa: BLE001 - keep the old address and try again later
                log.warning("%s: DHCP renewal failed: %s", ifname, e)
    threading.Thread(target=renew, name="dhcp-renew", daemon=True).start()
    return lease


def renew_once(lease: Lease, mac: bytes, drops: Drops, avoid: Sequence[ipaddress.IPv4Network] = (),
               timeout: float = 3.0, tries: int = 5) -> None:
    """One renewal of `lease` (the renewal thread's step), applied and written into it. While the
    lease holds, only its own address and prefix are taken (see the module's note); raises as
    _exchange when no such lease comes, and the NIC keeps what it has."""
    keep = (lease.address, lease.prefixlen) if time.monotonic() < lease.expires else None
    new = _apply(lease.ifname, _exchange(lease.ifname, mac, drops, avoid, timeout, tries, keep))
    (lease.address, lease.prefixlen, lease.router, lease.dns, lease.server, lease.lease_time,
     lease.expires) = (new.address, new.prefixlen, new.router, new.dns, new.server, new.lease_time, new.expires)
    log.info("%s: DHCP lease renewed: %s", lease.ifname, new)
