"""DNS rebinding protection for the LAN's DNS forwarder: answers from the VPN's DNS servers that
point a name at the LAN itself, at the appliance, or at loopback are not passed to LAN hosts.

The attack: a web page a LAN host visits has its browser resolve `attacker.example` first to the
attacker's server, then (TTL 0) to an address on the user's LAN -- the printer's, the NAS's, the
appliance's, 127.0.0.1 -- and the page's scripts, same-origin with `attacker.example`, read from
that device through the browser. Home routers strip such answers (dnsmasq's `stop-dns-rebind`,
OpenWrt's `rebind_protection`), but with a blanket rule -- every private address -- that would
break the VPN's main use here: its resolver answers intranet names with 10.x addresses behind the
tunnel. So the rule is narrow, the addresses a resolver on the far side of a tunnel has no
business handing out, because no host behind the tunnel can be reached at them from the LAN:

- the LAN's own networks (its IPv4 network, its IPv6 prefix, `[lan] routes`): the LAN's
  connected routes win over any pushed route, so such an answer reaches a LAN device, never
  the VPN's;
- the appliance's own addresses (tunnel, LAN, WAN, any of the host's) -- its services;
- loopback (127.0.0.0/8, ::1), "this network" (0.0.0.0/8, ::: browsers connect 0.0.0.0 to the
  local host), link-local (169.254.0.0/16, fe80::/10: the LAN's own link), and each of these as
  an IPv4-mapped IPv6 address (`::ffff:192.168.1.1`: a dual-stack socket connects over IPv4).

Checked: A and AAAA records of class IN in every section (so a CNAME chain ending in one, or a
mixed answer of a public address and a LAN one -- the browser falls back to the second -- is
caught as a whole), and the ipv4hint/ipv6hint of SVCB and HTTPS records (browsers connect to
hints). The forwarder's own answers (single-label names, leases, LAN reverse zones: dns_local.py)
never pass here.

What the LAN host gets for a blocked answer: NODATA -- the same RCODE (NOERROR), header and
question, no records, TC and AA and AD cleared; with an EDNS OPT record carrying Extended DNS
Error 15 ("Blocked", RFC 8914) when the upstream answer had EDNS -- as dnsmasq answers. Why not
the alternatives: SERVFAIL or REFUSED make stub resolvers (glibc, systemd-resolved, browsers'
own) try the next configured server, perhaps one outside the tunnel; NXDOMAIN claims the name
does not exist for any type and is cached that way (RFC 8020: nothing below it either). NODATA
without an SOA is for this type only and is not cached (RFC 2308 section 5): the browser gets
"no address" and nothing lingers.

An answer whose records cannot be walked (a name or a length past the end) is treated as the
forwarder treats a malformed answer: dropped, the query waiting for a good one (then the next
server, then SERVFAIL); a truncated (TC) one reaches a UDP client as header and question with TC,
so it asks again over TCP, whose answer is checked whole.

The walk is bounded by MAX_RECORDS, not by the message: an answer whose header counts more
records than that is not read at all and the query is answered SERVFAIL at once (fail closed:
it never passes unchecked). Why: a hostile VPN resolver answering TCP queries with 64 KiB of
4,000 addresses cost the pump 3-6 ms per answer (twice that when blocked: the OPT walk again)
at a LAN host's query rate -- 200 a second took the pump, and every tunnel packet waited behind
it. A UDP answer a client takes (at most 1,232 bytes) holds at most ~110 records, so 128 makes
no TCP answer cost more to check than the largest UDP one (~0.1 ms); only a TCP answer of more
than 128 records is refused, which no name a LAN host looks up has (the largest real answers
are round-robin, DNSSEC and TXT sets of tens).

Pure functions and one small class; tests/unit/test_dns_rebind.py (hypothesis).
"""
from __future__ import annotations

import ipaddress
import struct
from typing import Iterable

from . import dns_wire as w

T_A, T_AAAA, T_SVCB, T_HTTPS = 1, 28, 64, 65
SVC_IPV4HINT, SVC_IPV6HINT = 4, 6
EDE_OPTION, EDE_BLOCKED = 15, 15
BLOCKED = "answer blocked: a LAN, own or loopback address (DNS rebinding)"
TOO_MANY = "answered SERVFAIL: more records than the rebinding check reads"
MAX_RECORDS = 128           # records in all three sections the check walks (see the module doc)
TooManyRecords = w.TooManyRecords
BLOCKED_NULL = "answer blocked: 0.0.0.0 or :: (a blocklist resolver's way to say no; not logged)"


def null_answer(raw: bytes) -> bool:
    """0.0.0.0 or :: exactly: what ad-blocking and filtering resolvers (Pi-hole, NextDNS, AdGuard)
    answer for a name they block. Still blocked (browsers have connected 0.0.0.0 to the host
    itself), but counted apart and never logged: a user of such a resolver would otherwise see
    a rebinding warning every 30 s for nothing but ads."""
    return not any(raw)
LOG_EVERY = 30.0            # the warning naming a blocked name, at most this often

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network
ALWAYS = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "0.0.0.0/8", "169.254.0.0/16", "::1/128", "::/128", "fe80::/10"))


def domain_wire(name: str) -> bytes:
    """A domain name as the lower-cased wire form the question parser gives (no final dot)."""
    labels = [x for x in name.strip().rstrip(".").lower().split(".") if x]
    return b"".join(bytes((len(x),)) + x.encode("ascii") for x in labels) + b"\0"


class RebindFilter:
    """Which answers carry an address a LAN host must not be given (see the module doc)."""

    def __init__(self, lan_networks: Iterable[IPNet] = (), allow_domains: Iterable[str] = ()) -> None:
        self.nets = [*ALWAYS, *lan_networks]
        self.allow = [domain_wire(d) for d in allow_domains]
        self.last_log = -LOG_EVERY
        self.unlogged = 0
        self.set_own(())

    def set_own(self, addresses: Iterable[str]) -> None:
        """The appliance's own addresses now (tunnel, LAN, WAN, the host's): at each tunnel change.

        Indexed for `protected`, which a 64 KiB answer asks some 4,000 times: a set of network
        numbers per prefix length in use (a handful), and the first bytes any of them can start
        with, so a public address costs one lookup -- a scan of the networks cost 3 us an address."""
        nets = list(self.nets)
        for a in addresses:
            try:
                ip = ipaddress.ip_address(a.partition("%")[0])
            except ValueError:
                continue
            nets.append(ipaddress.ip_network(ip))
        self.index: dict[int, tuple[frozenset[int], list[tuple[int, frozenset[int]]]]] = {}
        for version, bits in ((4, 32), (6, 128)):
            mine = [n for n in nets if n.version == version]
            first: set[int] = set()
            by_len: dict[int, set[int]] = {}
            for n in mine:
                top = int(n.network_address) >> (bits - 8)
                first.update(range(top, top + (1 << max(0, 8 - n.prefixlen))))
                by_len.setdefault(n.prefixlen, set()).add(int(n.network_address) >> (bits - n.prefixlen))
            self.index[bits // 8] = (
                frozenset(first), [(bits - p, frozenset(v)) for p, v in sorted(by_len.items())])

    def protected(self, raw: bytes) -> bool:
        """A 4- or 16-byte address a tunnel resolver has no business handing the LAN."""
        if len(raw) == 16 and raw[:12] == b"\0" * 10 + b"\xff\xff":    # ::ffff:a.b.c.d
            raw = raw[12:]
        first, by_len = self.index[len(raw)]
        if raw[0] not in first:
            return False
        v = int.from_bytes(raw, "big")
        return any(v >> shift in nets for shift, nets in by_len)

    def allowed(self, qname: bytes) -> bool:
        """The question's name is one of `allow_domains` or under one (label-wise)."""
        return any(qname == d or qname.endswith(d) and _label_boundary(qname, len(qname) - len(d))
                   for d in self.allow)

    def offending(self, data: bytes, msg: w.Message, limit: int | None = MAX_RECORDS,
                  records: list[tuple[int, int, int, int]] | None = None) -> bytes | None:
        """The first protected address in the answer (its raw bytes), or None. BadDns when the
        records cannot be walked, or an A/AAAA/SVCB/HTTPS record's RDATA is malformed;
        TooManyRecords (a BadDns) when the header counts more than `limit` records (None: no
        limit, for tests that check the answers let through). `records`: the message's
        `records_untrusted` when the caller walked them already (the walk is most of the cost)."""
        first4, first16 = self.index[4][0], self.index[16][0]
        for rtype, rclass, start, end in records if records is not None else w.records_untrusted(data, msg, limit):
            if rclass != w.CLASS_IN:
                continue
            if rtype in (T_A, T_AAAA):
                if end - start != (4 if rtype == T_A else 16):
                    raise w.BadDns("A/AAAA record of the wrong length")
                if data[start] in (first4 if rtype == T_A else first16) and self.protected(data[start:end]):
                    return data[start:end]
            elif rtype in (T_SVCB, T_HTTPS):
                for raw in _svcb_hints(data, start, end):
                    if self.protected(raw):
                        return raw
        return None

    def note(self, now: float) -> int | None:
        """Whether a block at `now` is logged: the count of blocks not logged before it (0 or
        more), or None to stay quiet (at most one line every LOG_EVERY seconds)."""
        if now - self.last_log < LOG_EVERY:
            self.unlogged += 1
            return None
        self.last_log, n, self.unlogged = now, self.unlogged, 0
        return n


def _label_boundary(name: bytes, at: int) -> bool:
    """Whether offset `at` of wire name `name` starts a label (walked from the start)."""
    i = 0
    while i < at and i < len(name) and name[i]:
        i += 1 + name[i]
    return i == at


def _svcb_hints(data: bytes, start: int, end: int) -> list[bytes]:
    """The addresses of an SVCB/HTTPS record's ipv4hint and ipv6hint (RFC 9460): priority, an
    uncompressed target name, then (key, length, value) parameters, all inside the RDATA."""
    pos = start + 2
    while True:                                  # the target name: labels only (RFC 9460 2.2)
        if pos >= end:
            raise w.BadDns("SVCB target runs past its RDATA")
        ln = data[pos]
        if ln & 0xC0:
            raise w.BadDns("compressed SVCB target")
        pos += 1 + ln
        if ln == 0:
            break
    out: list[bytes] = []
    while pos < end:
        if pos + 4 > end:
            raise w.BadDns("SVCB parameter runs past its RDATA")
        key, ln = struct.unpack_from("!HH", data, pos)
        pos += 4
        if pos + ln > end:
            raise w.BadDns("SVCB parameter runs past its RDATA")
        if key in (SVC_IPV4HINT, SVC_IPV6HINT):
            size = 4 if key == SVC_IPV4HINT else 16
            if ln % size:
                raise w.BadDns("SVCB address hint of a wrong length")
            out += [data[i:i + size] for i in range(pos, pos + ln, size)]
        pos += ln
    return out


def has_opt(data: bytes, msg: w.Message, records: list[tuple[int, int, int, int]] | None = None) -> bool:
    """Whether the (walkable) answer carries an EDNS OPT record in its additional section
    (`records`: its `records_untrusted`, when walked already)."""
    an, ns = struct.unpack_from("!HH", data, 6)
    if records is None:
        records = w.records_untrusted(data, msg, MAX_RECORDS)
    return any(rtype == w.T_OPT for rtype, _c, _s, _e in records[an + ns:])


def blocked(data: bytes, msg: w.Message, edns: bool) -> bytes:
    """NODATA for a blocked answer: its header (RCODE kept; TC, AA, AD cleared) and question, no
    records; with `edns`, an OPT record (UDP size 1232) with Extended DNS Error 15, Blocked."""
    flags = msg.flags & ~(w.TC | 0x0400 | 0x0020)          # TC, AA, AD
    out = struct.pack("!HHHHHH", msg.id, flags, 1, 0, 0, 1 if edns else 0) + data[w.HEADER:msg.question_end]
    if edns:
        ede = struct.pack("!HHH", EDE_OPTION, 2, EDE_BLOCKED)
        out += b"\0" + struct.pack("!HHIH", w.T_OPT, w.UDP_MAX, 0, len(ede)) + ede
    return out
