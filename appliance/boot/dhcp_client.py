"""A small DHCP client for the WAN NIC (RFC 2131: DISCOVER, OFFER, REQUEST, ACK; renewal at T1).

Why our own: the image has no shell and no dhclient/udhcpc; this is ~150 lines and runs inside the
appliance process (a daemon thread renews the lease). The codec is pure and unit-tested; the client
uses a UDP socket bound to the interface (SO_BINDTODEVICE) with the broadcast flag set, so offers
reach us before the interface has an address.
"""
from __future__ import annotations

import ipaddress
import logging
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from pyroute2 import IPRoute

log = logging.getLogger("vpn-appliance")
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


def parse_reply_untrusted(data: bytes) -> Reply | None:
    """A BOOTREPLY with DHCP options, or None for anything else (never raises)."""
    if len(data) < 240 or data[0] != 2 or data[236:240] != MAGIC:
        return None
    xid = struct.unpack_from("!I", data, 4)[0]
    yiaddr = socket.inet_ntoa(data[16:20])
    opts: dict[int, bytes] = {}
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
        opts[code] = bytes(data[i + 2:i + 2 + data[i + 1]])
        i += 2 + data[i + 1]
    if 53 not in opts or len(opts[53]) != 1:
        return None
    return Reply(opts[53][0], xid, yiaddr, opts)


@dataclass
class Lease:
    ifname: str
    address: str
    prefixlen: int
    router: str | None
    dns: list[str]
    server: str | None
    lease_time: int
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


def _exchange(ifname: str, mac: bytes, timeout: float = 3.0, tries: int = 5) -> Reply:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        s.bind(("0.0.0.0", 68))
        for attempt in range(tries):
            xid = random.getrandbits(32)
            s.sendto(build_message(DISCOVER, xid, mac), ("255.255.255.255", 67))
            offer = _wait(s, xid, {OFFER}, timeout)
            if offer is None:
                log.info("%s: no DHCP offer (try %d of %d)", ifname, attempt + 1, tries)
                continue
            server = socket.inet_ntoa(offer.options[54]) if len(offer.options.get(54, b"")) == 4 else None
            s.sendto(build_message(REQUEST, xid, mac, offer.yiaddr, server), ("255.255.255.255", 67))
            ack = _wait(s, xid, {ACK, NAK}, timeout)
            if ack is not None and ack.kind == ACK:
                return ack
            log.info("%s: DHCP request %s", ifname, "refused (NAK)" if ack else "unanswered")
        raise RuntimeError(f"{ifname}: no DHCP lease after {tries} tries")
    finally:
        s.close()


def _wait(s: socket.socket, xid: int, kinds: set[int], timeout: float) -> Reply | None:
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return None
        s.settimeout(left)
        try:
            data = s.recv(4096)
        except (TimeoutError, socket.timeout):
            return None
        r = parse_reply_untrusted(data)
        if r is not None and r.xid == xid and r.kind in kinds:
            return r


def _apply(ifname: str, ack: Reply) -> Lease:
    mask = socket.inet_ntoa(ack.options[1]) if len(ack.options.get(1, b"")) == 4 else "255.255.255.0"
    prefix = ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
    router = socket.inet_ntoa(ack.options[3][:4]) if len(ack.options.get(3, b"")) >= 4 else None
    raw_dns = ack.options.get(6, b"")
    dns = [socket.inet_ntoa(raw_dns[i:i + 4]) for i in range(0, len(raw_dns) - 3, 4)]
    lease_time = struct.unpack("!I", ack.options[51])[0] if len(ack.options.get(51, b"")) == 4 else 3600
    server = socket.inet_ntoa(ack.options[54]) if len(ack.options.get(54, b"")) == 4 else None
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        ipr.flush_addr(index=idx)
        ipr.addr("add", index=idx, address=ack.yiaddr, prefixlen=prefix)
        ipr.link("set", index=idx, state="up")
        if router:
            try:
                ipr.route("replace", dst="0.0.0.0/0", gateway=router, oif=idx)
            except Exception as e:  # noqa: BLE001 - report, keep the address
                log.warning("%s: default route via %s: %s", ifname, router, e)
    return Lease(ifname, ack.yiaddr, prefix, router, dns, server, lease_time)


def dhcp_configure(ifname: str) -> Lease:
    """Get a lease, configure the interface, and renew at half the lease time in a daemon thread."""
    with open(f"/sys/class/net/{ifname}/address") as f:
        mac = bytes.fromhex(f.read().strip().replace(":", ""))
    lease = _apply(ifname, _exchange(ifname, mac))
    log.info("%s: DHCP lease %s", ifname, lease)

    def renew() -> None:
        while not lease._stop.wait(max(30, lease.lease_time // 2)):
            try:
                new = _apply(ifname, _exchange(ifname, mac))
                lease.address, lease.lease_time = new.address, new.lease_time
                log.info("%s: DHCP lease renewed: %s", ifname, new)
            except Exception as e:  # noqa: BLE001 - keep the old address and try again later
                log.warning("%s: DHCP renewal failed: %s", ifname, e)
    threading.Thread(target=renew, name="dhcp-renew", daemon=True).start()
    return lease
