"""`client-nat snat|dnat NETWORK NETMASK ALIAS`: OpenVPN 2.6's stateless 1:1 NAT of inner IPv4
addresses on the client (clinat.c), for site-to-site links whose subnets overlap.

What 2.6 does, and so what this does:
- Packets read from the TUN, going into the tunnel ("outgoing"): an `snat` rule rewrites a
  source address inside NETWORK/NETMASK to the same host in ALIAS; a `dnat` rule rewrites a
  destination address inside NETWORK to ALIAS.
- Packets out of the tunnel, written to the TUN ("incoming"): the reverse -- `snat` maps a
  destination inside ALIAS back to NETWORK; `dnat` maps a source inside ALIAS back to NETWORK.
- Rules are tried in order (the profile's, then the pushed ones); the first matching rule for the
  source and the first for the destination apply, each address is rewritten at most once. The new
  address is (address & ~NETMASK) | target, as 2.6 computes it. Ports are never touched.
- Checksums are adjusted incrementally (RFC 1624): the IPv4 header's, TCP's and UDP's (their
  pseudo-header holds the addresses). ICMP's covers no addresses, so it stays as it is (2.6 does
  the same; the IP header quoted inside an ICMP error is not rewritten, as there).
- At most MAX_ENTRIES rules; further ones are dropped with a warning, as 2.6 (add_entry).

Where we differ from 2.6, on hostile or unusual packets only: 2.6 finds the TCP/UDP checksum at a
fixed offset (20 bytes in) and adjusts it in every fragment; here the header length (IHL) is
honoured and only a first fragment's TCP/UDP checksum is adjusted (a later fragment holds payload
there, which 2.6 corrupts), and a UDP checksum of 0 (none) stays 0. A packet too short for a header
has that header left alone; nothing here reads past the packet or raises on its bytes.
"""
from __future__ import annotations

import ipaddress
import re

from ..frozen_record import FrozenRecord
from .ethernet import ip_offset

MAX_ENTRIES = 64                 # OpenVPN 2.6's MAX_CLIENT_NAT
SNAT, DNAT = 0, 1
OUTGOING, INCOMING = 0, 1        # TUN -> tunnel, tunnel -> TUN (clinat.h CN_OUTGOING/CN_INCOMING)
_SRC, _DST = 12, 16              # offsets of the IPv4 source and destination addresses
_TCP, _UDP = 6, 17


class NatRule(FrozenRecord):
    kind: int                    # SNAT or DNAT
    network: int                 # the local view (NETWORK), as a 32-bit integer
    netmask: int
    alias: int                   # the remote view (ALIAS)

    def __str__(self) -> str:
        return (f"{'snat' if self.kind == SNAT else 'dnat'} {ipaddress.IPv4Address(self.network)} "
                f"{ipaddress.IPv4Address(self.netmask)} {ipaddress.IPv4Address(self.alias)}")


# One part of an inet_aton address: hexadecimal (0x...), octal (0...) or decimal.
_PART = re.compile(r"0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*")


def _inet_aton(text: str) -> int:
    """glibc's inet_aton, which 2.6's getaddr uses for a numeric address: 1 to 4 parts, the
    last filling the remaining bytes (`10.1` is 10.0.0.1, `0x0a000001` too). ValueError else.
    (Here, not socket.inet_aton: the engine imports no I/O module.)"""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_PART.fullmatch(p) for p in parts):
        raise ValueError(text)
    vals = [int(p[2:], 16) if p[:2] in ("0x", "0X") else int(p, 8 if p[0] == "0" else 10) for p in parts]
    last = 32 - 8 * (len(vals) - 1)
    if any(v > 255 for v in vals[:-1]) or vals[-1] >= 1 << last:
        raise ValueError(text)
    n = 0
    for v in vals[:-1]:
        n = n << 8 | v
    return n << last | vals[-1]


def _addr(text: str, what: str) -> int:
    """An address as 2.6 reads it (getaddr without resolving: inet_aton's forms); no names."""
    try:
        return _inet_aton(text)
    except ValueError:
        raise ValueError(f"bad {what}: {text}") from None


def parse_rule(words: list[str] | tuple[str, ...]) -> NatRule:
    """`snat|dnat NETWORK NETMASK ALIAS` -> NatRule; ValueError naming the bad word (2.6's
    messages: "type must be 'snat' or 'dnat'", "bad network: X", ...)."""
    if len(words) != 4:
        raise ValueError("needs 4 arguments: snat|dnat NETWORK NETMASK ALIAS")
    kind = {"snat": SNAT, "dnat": DNAT}.get(words[0])
    if kind is None:
        raise ValueError("type must be 'snat' or 'dnat'")
    return NatRule(kind, _addr(words[1], "network"), _addr(words[2], "netmask"),
                   _addr(words[3], "foreign network"))


def _add(s: int, old: int, new: int) -> int:
    """Ones'-complement running difference of two 32-bit addresses (~old + new, both halves)."""
    return s + (0xFFFF - (old >> 16)) + (0xFFFF - (old & 0xFFFF)) + (new >> 16) + (new & 0xFFFF)


def _fix(p, at: int, delta: int, udp: bool = False) -> None:
    """The checksum at p[at:at+2] updated by `delta` (RFC 1624 eqn 3: HC' = ~(~HC + ~m + m'))."""
    c = (p[at] << 8) | p[at + 1]
    if udp and c == 0:
        return                   # a UDP datagram sent without a checksum stays without one
    s = (0xFFFF - c) + delta
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    c = 0xFFFF - s
    if udp and c == 0:
        c = 0xFFFF               # UDP sends a computed 0 as 0xFFFF (0 means "none")
    p[at], p[at + 1] = c >> 8, c & 0xFF


class ClientNat:
    """The rules of one connection, compiled for each direction."""

    def __init__(self, rules: list[NatRule], frames: bool = False) -> None:
        self.rules = list(rules[:MAX_ENTRIES])
        if frames:
            # dev tap: the packets are Ethernet frames, and 2.6 rewrites the IPv4 packet inside
            # (proto.c is_ipv4 skips the header for process_ip_header), never the frame's bytes.
            self.outgoing = lambda p: self._frame(p, self.tables[OUTGOING])    # type: ignore[method-assign]
            self.incoming = lambda p: self._frame(p, self.tables[INCOMING])    # type: ignore[method-assign]
        # Per direction, (address offset, netmask, from, to) in rule order, as clinat.c decides:
        # the destination when the rule's type differs from the direction, else the source;
        # outgoing maps NETWORK -> ALIAS, incoming ALIAS -> NETWORK.
        self.tables: tuple[tuple[tuple[int, int, int, int], ...], ...] = tuple(
            tuple((_DST if r.kind ^ d else _SRC, r.netmask,
                   r.alias if d else r.network, r.network if d else r.alias) for r in self.rules)
            for d in (OUTGOING, INCOMING))

    def outgoing(self, p):
        """A packet from the TUN, rewritten (in place when writable, else a copy)."""
        return self._rewrite(p, self.tables[OUTGOING])

    def incoming(self, p):
        """A packet out of the tunnel, rewritten (in place when writable, else a copy)."""
        return self._rewrite(p, self.tables[INCOMING])

    def _frame(self, p, table):
        """_rewrite for the IPv4 packet inside an Ethernet frame (after its header or one 802.1Q
        tag); another frame passes as it is. A read-only frame is copied only when rewritten."""
        off = ip_offset(p)
        if off is None:
            return p
        v = memoryview(p)[off:]
        r = self._rewrite(v, table)
        return p if r is v else bytearray(p[:off]) + r

    @staticmethod
    def _rewrite(p, table):
        n = len(p)
        if n < 20 or p[0] >> 4 != 4:
            return p             # not IPv4, or shorter than its fixed header: as 2.6 (is_ipv4)
        old = {_SRC: int.from_bytes(p[12:16], "big"), _DST: int.from_bytes(p[16:20], "big")}
        new: dict[int, int] = {}
        for off, mask, frm, to in table:
            if off not in new and old[off] & mask == frm:
                new[off] = (old[off] & ~mask & 0xFFFFFFFF) | to
                if len(new) == 2:
                    break
        if not new:
            return p
        if isinstance(p, (bytes, memoryview)) and (isinstance(p, bytes) or p.readonly):
            p = bytearray(p)     # a plaintext view into the session's buffer: not ours to edit
        delta = 0
        for off, a in new.items():
            delta = _add(delta, old[off], a)
            p[off:off + 4] = a.to_bytes(4, "big")
        _fix(p, 10, delta)
        ihl = (p[0] & 15) * 4
        if ihl < 20 or (p[6] & 0x1F) or p[7]:
            return p             # a bad header length, or a later fragment: no TCP/UDP header here
        proto = p[9]
        if proto == _TCP and n >= ihl + 18:
            _fix(p, ihl + 16, delta)
        elif proto == _UDP and n >= ihl + 8:
            _fix(p, ihl + 6, delta, udp=True)
        return p


def combined(profile: list[NatRule], pushed: list[NatRule]) -> tuple[list[NatRule], int]:
    """The profile's rules then the pushed ones, at most MAX_ENTRIES (as 2.6 adds pushed entries
    to the pre-pull list); -> (rules, how many were dropped for the limit)."""
    allr = [*profile, *pushed]
    return allr[:MAX_ENTRIES], max(0, len(allr) - MAX_ENTRIES)
