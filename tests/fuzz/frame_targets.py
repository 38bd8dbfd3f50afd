"""The "client-nat" and "tap-client" fuzz targets: what a client rewrites inside the packets and
Ethernet frames it carries (appliance/openvpn/clientnat.py, datapath.py's MSS clamp, ethernet.py).

Why invariants and not only "nothing escapes": these paths edit bytes a peer chose and hand them
on to the TUN/TAP device or the tunnel. A wrong checksum there is silent (the receiver drops the
packet), so each target checks, after every rewrite:
  - the length is the same, and no byte changed outside the fields the rewrite owns (the
    addresses and the IPv4 header checksum, the TCP/UDP checksum, the MSS option's value);
  - the IPv4 header checksum, and the TCP/UDP checksum over the bytes present, verify whenever
    the input's did (a UDP checksum of 0, "none", stays 0);
  - a frame that carries no IP packet (ARP, a double tag, a runt) passes unchanged;
  - an immutable input is never edited in place.
"""
from __future__ import annotations

from appliance.openvpn.clientnat import ClientNat, NatRule
from appliance.openvpn.datapath import ClientDataPath
from appliance.openvpn.ethernet import ip_offset, is_ipv6_frame
from appliance.openvpn.opcodes import OCC_MAGIC, PING_MAGIC

from . import harness as h

_SEP = b"\xff\xfe"


# ------------------------------------------------------------------ checksums (independent of the product)
def _sum16(b) -> int:
    b = bytes(b)
    if len(b) & 1:
        b += b"\0"
    s = sum(int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def ip_header_ok(p) -> bool | None:
    """Whether the IPv4 header checksum verifies (None: no complete IPv4 header to check)."""
    if len(p) < 20 or p[0] >> 4 != 4:
        return None
    ihl = (p[0] & 15) * 4
    if ihl < 20 or len(p) < ihl:
        return None
    return _sum16(p[:ihl]) == 0xFFFF


def transport_ok(p) -> bool | None:
    """Whether the TCP/UDP checksum verifies over the bytes present, for an IPv4 packet or an
    IPv6 one (TCP/UDP right after the fixed header). None: nothing to check (not TCP/UDP, a later
    fragment, too short for the checksum field, or a UDP datagram sent without checksum)."""
    n = len(p)
    if n < 20:
        return None
    v = p[0] >> 4
    if v == 4:
        ihl = (p[0] & 15) * 4
        if ihl < 20 or (p[6] & 0x1F) or p[7]:
            return None
        proto, at, pseudo = p[9], ihl, bytes(p[12:20])
    elif v == 6 and n >= 40:
        proto, at, pseudo = p[6], 40, bytes(p[8:40])
    else:
        return None
    seg = bytes(p[at:])
    if proto == 6 and len(seg) >= 18:
        pass
    elif proto == 17 and len(seg) >= 8:
        if seg[6:8] == b"\0\0":
            return None
    else:
        return None
    ln = len(seg)
    return _sum16(pseudo + bytes([0, proto]) + ln.to_bytes(2 if v == 4 else 4, "big") + seg) == 0xFFFF


def _changed(a, b) -> set[int]:
    return {i for i in range(len(a)) if a[i] != b[i]}


def _allowed_nat_bytes(p) -> set[int]:
    """Offsets client-nat may change in an IPv4 packet: the addresses, the header checksum, the
    TCP/UDP checksum."""
    ok = set(range(10, 20))
    ihl = (p[0] & 15) * 4
    if p[9] == 6:
        ok |= {ihl + 16, ihl + 17}
    elif p[9] == 17:
        ok |= {ihl + 6, ihl + 7}
    return ok


def _check_packet(before: bytes, after, allowed: set[int], what: str) -> None:
    after = bytes(after)
    if len(after) != len(before):
        raise AssertionError(f"{what}: length {len(before)} became {len(after)}")
    stray = _changed(before, after) - allowed
    if stray:
        raise AssertionError(f"{what}: bytes changed outside the rewritten fields at {sorted(stray)[:8]}")
    for name, check in (("IPv4 header", ip_header_ok), ("TCP/UDP", transport_ok)):
        if check(before) and check(after) is False:
            raise AssertionError(f"{what}: the {name} checksum verified before and not after")
    if transport_ok(before) is None and transport_ok(after) is not None and len(before) >= 28 \
            and before[9] == 17 and bytes(before[(before[0] & 15) * 4 + 6:][:2]) == b"\0\0":
        raise AssertionError(f"{what}: a UDP datagram without checksum got one")


def _rules(b: bytes) -> tuple[list[NatRule], bytes]:
    """Up to 4 rules from the input: a count byte, then 9 bytes each (bit 7: dnat; bit 6: network
    and alias as given, host bits and all, as 2.6 takes them; bits 0-5: the prefix length;
    network and alias as 4 bytes each)."""
    if not b:
        return [], b
    n, b = b[0] % 5, b[1:]
    rules = []
    for _ in range(n):
        if len(b) < 9:
            break
        bits = min(b[0] & 63, 32)
        mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
        keep = 0xFFFFFFFF if b[0] & 64 else mask
        rules.append(NatRule(b[0] >> 7, int.from_bytes(b[1:5], "big") & keep, mask,
                             int.from_bytes(b[5:9], "big") & keep))
        b = b[9:]
    return rules, b


def nat_model(rules: list[NatRule], incoming: bool, src: int, dst: int) -> tuple[int, int]:
    """The addresses OpenVPN 2.6's client_nat_transform (clinat.c) leaves, written from its loop:
    per rule, the destination when the rule's type differs from the direction, else the source;
    NETWORK -> ALIAS going out, ALIAS -> NETWORK coming in; each address at most once."""
    addrs, done = [src, dst], [False, False]
    for r in rules[:64]:
        i = 1 if r.kind ^ incoming else 0
        frm, to = (r.alias, r.network) if incoming else (r.network, r.alias)
        if not done[i] and addrs[i] & r.netmask == frm:
            addrs[i] = (addrs[i] & ~r.netmask & 0xFFFFFFFF) | to
            done[i] = True
    return addrs[0], addrs[1]


def _variant(p: bytes, how: int):
    """The packet as the data path may hold it: bytes, a bytearray, a read-only or a writable view."""
    return (p, bytearray(p), memoryview(p), memoryview(bytearray(p)))[how & 3]


# ------------------------------------------------------------------ client-nat
def make_client_nat():
    """First byte: bit 0 dev tap (Ethernet frames), bit 1 incoming, bits 2-3 the buffer kind
    (bytes, bytearray, read-only view, writable view). Then the rules (see _rules), then the
    packet or frame."""
    def one(data: bytes) -> None:
        if len(data) < 2:
            return
        sel = data[0]
        rules, pkt = _rules(data[1:])
        frames = bool(sel & 1)
        nat = ClientNat(rules, frames=frames)
        before = bytes(pkt)
        buf = _variant(before, sel >> 2)
        out = (nat.incoming if sel & 2 else nat.outgoing)(buf)
        if isinstance(buf, (bytes, memoryview)) and (isinstance(buf, bytes) or buf.readonly) and bytes(buf) != before:
            raise AssertionError("an immutable packet was edited in place")
        off = ip_offset(before) if frames else 0
        if off is None or (frames and before[off] >> 4 != 4):
            if bytes(out) != before:
                raise AssertionError("a frame without an IPv4 packet was rewritten")
            return
        if len(before) - off < 20 or before[off] >> 4 != 4:
            if bytes(out) != before:
                raise AssertionError("a packet that is not IPv4 was rewritten")
            return
        allowed = {off + i for i in _allowed_nat_bytes(before[off:])}
        _check_packet(before, out, allowed, "client-nat")
        inner = bytes(out)[off:]
        want = nat_model(rules, bool(sel & 2), int.from_bytes(before[off + 12:off + 16], "big"),
                         int.from_bytes(before[off + 16:off + 20], "big"))
        got = (int.from_bytes(inner[12:16], "big"), int.from_bytes(inner[16:20], "big"))
        if got != want:
            raise AssertionError(f"client-nat: addresses {got} where 2.6's rules give {want}")
        if frames:
            _check_packet(before[off:], inner, _allowed_nat_bytes(before[off:]), "client-nat (inner)")
    return one


# ------------------------------------------------------------------ the dev tap client's frame path
MSS = 1300


def _mss_values(p) -> list[int]:
    """The MSS options of a TCP SYN (IPv4 or IPv6 without extension headers), read with the
    usual option walk; [] for anything else."""
    n = len(p)
    if n < 40:
        return []
    if p[0] >> 4 == 4:
        t = (p[0] & 15) * 4
        if p[9] != 6 or (p[6] & 0x1F) or p[7]:
            return []
    elif p[0] >> 4 == 6 and p[6] == 6:
        t = 40
    else:
        return []
    if n < t + 20 or not p[t + 13] & 2:
        return []
    end = min(t + (p[t + 12] >> 4) * 4, n)
    i, out = t + 20, []
    while i < end:
        k = p[i]
        if k == 0:
            break
        if k == 1:
            i += 1
            continue
        if i + 1 >= end or p[i + 1] < 2:
            break
        if k == 2 and p[i + 1] == 4 and i + 4 <= end:
            out.append((p[i + 2] << 8) | p[i + 3])
        i += p[i + 1]
    return out


def _check_frame(before: bytes, after, nat: bool, what: str) -> None:
    """The tap client's rewrite of one frame: MSS clamp (and client-nat when `nat`)."""
    after = bytes(after)
    if len(after) != len(before):
        raise AssertionError(f"{what}: frame length {len(before)} became {len(after)}")
    off = ip_offset(before)
    if off is None:
        if after != before:
            raise AssertionError(f"{what}: a frame without an IP packet changed")
        return
    if after[:off] != before[:off]:
        raise AssertionError(f"{what}: the Ethernet header changed")
    inner_b, inner_a = before[off:], after[off:]
    for name, check in (("IPv4 header", ip_header_ok), ("TCP/UDP", transport_ok)):
        if check(inner_b) and check(inner_a) is False:
            raise AssertionError(f"{what}: the {name} checksum verified before and not after")
    mb, ma = _mss_values(inner_b), _mss_values(inner_a)
    limit = MSS - (20 if inner_b[0] >> 4 == 6 else 0)
    if len(mb) == len(ma):
        # As 2.6's mss_fixup_dowork: every MSS option above the bound is lowered (a receiver
        # takes the last one it reads: Linux's tcp_parse_options), none is raised.
        if any(a > b for b, a in zip(mb, ma)):
            raise AssertionError(f"{what}: an MSS was raised {mb} -> {ma}")
        if any(a > limit for a in ma):
            raise AssertionError(f"{what}: a SYN's MSS options {mb} -> {ma}: one stayed above {limit}")
    if not nat:
        stray = _changed(inner_b, inner_a)
        t = (inner_b[0] & 15) * 4 if inner_b[0] >> 4 == 4 else 40
        stray -= set(range(t + 16, t + 18)) | set(range(t + 20, t + 60))
        if stray:
            raise AssertionError(f"{what}: bytes outside the TCP checksum and options changed {sorted(stray)[:8]}")


def make_tap_client():
    """A dev tap client's data path (ClientDataPath(tap=True)) over an established pair. First
    byte: bits 0-1 mode (0: the server seals the fuzzed frame and the client opens it; 1: the
    client seals the frame read from its TAP and the server opens it; 2: raw wire bytes to the
    client; 3: as 0 with the frame's TCP checksum fixed first, so SYNs that verify are common),
    bit 2 with client-nat (rules from the bytes after the frame's separator b"\\xff\\xfe"), bits
    3-4 the buffer kind of a frame read from the TAP. Also: block-ipv6's test agrees with
    ip_offset."""
    state: dict = {}

    def world():
        w = state.get("w")
        if w is None or w[0].closed or w[1].closed or not (w[0].established and w[1].established) or \
                state["n"] > 20000:
            c, s = h.established_pair("tls-crypt", "AES-256-GCM")
            w = state["w"] = (c, s, ClientDataPath(c, lambda cipher, v2: MSS, tap=True))
            state["n"] = 0
        state["n"] += 1
        return w

    def one(data: bytes) -> None:
        if len(data) < 2:
            return
        sel = data[0]
        frame, _, tail = data[1:].partition(_SEP)
        c, s, dp = world()
        rules = _rules(tail)[0] if sel & 4 else []
        dp.set_nat(ClientNat(rules, frames=True) if rules else None)
        mode = sel & 3
        if mode == 3:
            frame = _fix_transport(frame)
        ipv6 = is_ipv6_frame(frame)
        off = ip_offset(frame)
        if ipv6 != (off is not None and frame[off] >> 4 == 6):
            raise AssertionError("is_ipv6_frame disagrees with ip_offset")
        what = f"tap {'nat ' if rules else ''}mode {mode}"
        if mode == 1:
            buf = _variant(frame, sel >> 3)
            wire = dp.seal_batch([buf], 1.0)
            if isinstance(buf, bytes) and bytes(buf) != frame:
                raise AssertionError("an immutable frame was edited in place")
            got = []
            for w in wire:
                got += s.receive(bytes(w), 1.0)
            # Opened and not written: the ping and OCC messages, and an empty frame (8815cdb8: a
            # zero-length TUN/TAP write is EINVAL, and 2.6 writes only a payload of length > 0;
            # bb341bad's oracle, older, expected it back -- fuzzfix41)
            eaten = not frame or frame == PING_MAGIC or (len(frame) >= 17 and frame[:16] == OCC_MAGIC)
            if wire and len(got) != (0 if eaten else 1):
                raise AssertionError(f"{what}: sealed one frame, the server opened {len(got)}")
            for g in got:
                _check_frame(frame, g, bool(rules), what)
        else:
            wire = frame if mode == 2 else s.encrypt(frame)
            if wire is None:
                return
            for g in dp.open(bytes(wire), 1.0):            # must never raise
                if mode != 2:
                    _check_frame(frame, g, bool(rules), what)
        c.take_outgoing()
        s.take_outgoing()
    return one


def _fix_transport(frame: bytes) -> bytes:
    """The frame with its IP packet's TCP/UDP checksum (and IPv4 header checksum) made valid."""
    off = ip_offset(frame)
    if off is None:
        return frame
    p = bytearray(frame[off:])
    if p[0] >> 4 == 4:
        ihl = (p[0] & 15) * 4
        if ihl < 20 or len(p) < ihl:
            return frame
        p[10:12] = b"\0\0"
        p[10:12] = (0xFFFF - _sum16(p[:ihl])).to_bytes(2, "big")
        proto, at, pseudo = p[9], ihl, bytes(p[12:20])
        if (p[6] & 0x1F) or p[7]:
            return frame[:off] + bytes(p)
    else:
        proto, at, pseudo = p[6], 40, bytes(p[8:40])
    ck = at + (16 if proto == 6 else 6 if proto == 17 else len(p))
    if ck + 2 > len(p):
        return frame[:off] + bytes(p)
    p[ck:ck + 2] = b"\0\0"
    ln = len(p) - at
    s = _sum16(pseudo + bytes([0, proto]) + ln.to_bytes(2 if p[0] >> 4 == 4 else 4, "big") + bytes(p[at:]))
    p[ck:ck + 2] = ((0xFFFF - s) or 0xFFFF).to_bytes(2, "big")
    return frame[:off] + bytes(p)


# ------------------------------------------------------------------ seeds
def _ipv4(proto: int, payload: bytes, src=b"\xc6\x12\x05\x02", dst=b"\xc6\x12\x06\x01", frag=0) -> bytes:
    hdr = bytearray(b"\x45\x00" + (20 + len(payload)).to_bytes(2, "big") + b"\x12\x34"
                    + frag.to_bytes(2, "big") + b"\x40" + bytes([proto]) + b"\0\0" + src + dst)
    return bytes(hdr) + payload


def _tcp_syn(mss: int = 1460) -> bytes:
    return (b"\x30\x39\x01\xbb" + bytes(8) + b"\x60\x02\xff\xff\0\0\0\0" + b"\x02\x04" + mss.to_bytes(2, "big"))


def _eth(pkt: bytes, ethertype: bytes = b"\x08\x00", vlan: bool = False) -> bytes:
    hdr = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02"
    if vlan:
        hdr += b"\x81\x00\x00\x05"
    return hdr + ethertype + pkt


def _valid(frame_or_packet: bytes, eth: bool) -> bytes:
    if eth:
        return _fix_transport(frame_or_packet)
    return _fix_transport(_eth(frame_or_packet))[14:]


def seeds() -> tuple[list[bytes], list[bytes]]:
    """(client-nat seeds, tap-client seeds): TCP SYNs, UDP with and without checksum, ICMP, a
    fragment, IPv6, ARP, VLAN-tagged frames; rules that match them."""
    tcp = _valid(_ipv4(6, _tcp_syn()), False)
    udp = _valid(_ipv4(17, b"\x00\x35\x00\x35\x00\x0c\x00\x00abcd"), False)
    udp0 = _ipv4(17, b"\x00\x35\x00\x35\x00\x0c\x00\x00abcd")
    icmp = _valid(_ipv4(1, b"\x08\x00\xf7\xff\x00\x00\x00\x00"), False)
    frag = _valid(_ipv4(6, bytes(24), frag=0x2003), False)
    v6 = (b"\x60\x00\x00\x00\x00\x18\x06\x40" + bytes(15) + b"\x01" + bytes(15) + b"\x02" + _tcp_syn())
    arp = bytes.fromhex("0001080006040001") + bytes(20)
    # snat 198.18.5.0/24 -> 198.18.9.0, dnat 198.18.6.1/32 -> 198.18.7.1
    rules = (b"\x02" + bytes([24]) + b"\xc6\x12\x05\x00" + b"\xc6\x12\x09\x00"
             + bytes([0x80 | 32]) + b"\xc6\x12\x06\x01" + b"\xc6\x12\x07\x01")
    rules_in = (b"\x02" + bytes([24]) + b"\xc6\x12\x09\x00" + b"\xc6\x12\x05\x00"
                + bytes([0x80 | 24]) + b"\xc6\x12\x05\x00" + b"\xc6\x12\x06\x00")
    nat = []
    for pkt in (tcp, udp, udp0, icmp, frag, v6):
        for sel in (0, 2, 4, 8, 12):
            nat.append(bytes([sel]) + (rules if sel != 2 else rules_in) + pkt)
    for f in (_valid(_eth(tcp), True), _eth(udp), _valid(_eth(tcp, vlan=True), True), _eth(arp, b"\x08\x06"),
              _eth(v6, b"\x86\xdd")):
        for sel in (1, 3, 5):
            nat.append(bytes([sel]) + rules + f)
    tap = []
    two_mss = _valid(_ipv4(6, b"\x30\x39\x01\xbb" + bytes(8) + b"\x70\x02\xff\xff\0\0\0\0"
                             + b"\x02\x04\x02\x18" + b"\x02\x04\x23\x28"), False)     # MSS 536, then 9000
    frames = [_valid(_eth(tcp), True), _valid(_eth(tcp, vlan=True), True), _eth(udp), _eth(icmp), _eth(two_mss),
              _valid(_eth(v6, b"\x86\xdd"), True), _eth(arp, b"\x08\x06"), _eth(frag), b"\x02" * 14,
              _eth(tcp, b"\x81\x00", vlan=True)]
    for f in frames:
        for sel in (0, 1, 3, 4, 5, 9, 17):
            tap.append(bytes([sel]) + f + (_SEP + rules if sel & 4 else b""))
    return nat, tap
