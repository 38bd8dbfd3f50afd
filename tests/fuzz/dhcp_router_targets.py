"""The "dhcp-router-area" fuzz target (beside control_targets.py's "dhcp-router": the same code,
another oracle -- what may change, and where): `route-gateway dhcp` on a tap client
(appliance/openvpn/dhcprouter.py, reading DHCP options with lan/dhcp_codec.walk_options), fed
frames a server -- or any host on its bridged LAN -- chose.

Contract, after each frame:
  - nothing raises; the result is None (dropped), the frame itself, or a copy of its length;
  - a copy differs from the frame only inside the BOOTP message's option areas (the options,
    sname, file) and the UDP checksum, which verifies when the frame's did;
  - a DHCP client reading the copy (its own reading here, independent of the product's) finds no
    Router option in the options, nor in sname/file when an option 52 gives them to options;
  - a router returned is an IPv4 address, and only with a copy;
  - a reply over the byte budget is dropped unread.
"""
from __future__ import annotations

import ipaddress
import struct

from appliance.openvpn.dhcprouter import extract_router

_SEP = b"\xff\xfe"
_ETH = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01"


def _sum16(b: bytes) -> int:
    if len(b) & 1:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _reply(opts: bytes, sname: bytes, file: bytes, vlan: bool) -> bytes:
    """A whole BOOTREPLY from 198.19.1.1:67 to 198.19.1.100:68 with these areas, checksums right."""
    bootp = (struct.pack("!BBBBIHH4s4s4s4s16s", 2, 1, 6, 0, 0x1234, 0, 0, bytes(4), bytes([198, 19, 1, 100]),
                         bytes(4), bytes(4), bytes.fromhex("020000000002").ljust(16, b"\0"))
             + sname[:64].ljust(64, b"\0") + file[:128].ljust(128, b"\0") + b"\x63\x82\x53\x63" + opts)
    src, dst = bytes([198, 19, 1, 1]), bytes([198, 19, 1, 100])
    ulen = 8 + len(bootp)
    udp = struct.pack("!HHHH", 67, 68, ulen, 0) + bootp
    c = (~_sum16(src + dst + bytes([0, 17]) + ulen.to_bytes(2, "big") + udp)) & 0xFFFF or 0xFFFF
    udp = udp[:6] + c.to_bytes(2, "big") + udp[8:]
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src, dst))
    ip[10:12] = ((~_sum16(bytes(ip))) & 0xFFFF).to_bytes(2, "big")
    tag = b"\x81\x00\x00\x05" if vlan else b""
    return _ETH + tag + b"\x08\x00" + bytes(ip) + udp


def _codes(area: bytes) -> list[tuple[int, bytes]]:
    """The options a DHCP client reads in `area`: to END or the end, PADs skipped; a cut one (no
    length byte, or a value past the area) is no option to a client (systemd-networkd and
    dhclient refuse such a message), so the reading stops there."""
    out, i = [], 0
    while i < len(area) and area[i] != 255:
        if area[i] == 0:
            i += 1
            continue
        if i + 1 >= len(area) or i + 2 + area[i + 1] > len(area):
            break
        ln = area[i + 1]
        out.append((area[i], area[i + 2:i + 2 + ln]))
        i += 2 + ln
    return out


def _client_sees_router(frame: bytes, at: int) -> bool:
    """Whether a client reading the BOOTP message at `at` (to the UDP length) finds a Router."""
    ulen = int.from_bytes(frame[at - 4:at - 2], "big")
    raw = frame[at:at - 8 + ulen]
    opts = _codes(raw[240:])
    overload = 0
    for code, v in opts:
        if code == 52 and len(v) == 1:
            overload |= v[0]
    areas = [opts] + ([_codes(raw[108:236])] if overload & 1 else []) + ([_codes(raw[44:108])] if overload & 2 else [])
    return any(code == 3 for a in areas for code, _v in a)


def make_dhcp_router():
    def one(data: bytes) -> None:
        if not data:
            return
        mode, rest = data[0], data[1:]
        built = bool(mode & 1)
        if built:
            parts = rest.split(_SEP)
            opts, sname, file = (parts + [b"", b""])[:3]
            frame = _reply(opts[:1200], sname, file, vlan=bool(mode & 4))
        else:
            frame = rest
        budget = (lambda n: False) if mode & 2 else None
        out, router = extract_router(frame, budget)
        if out is None:
            assert router is None
            return
        assert len(out) == len(frame), "the frame changed length"
        if out is frame:
            assert router is None
            return
        assert budget is None, "a reply over the byte budget was read"
        if router is not None:
            ipaddress.IPv4Address(router)
        if built:
            at = len(_ETH) + (4 if mode & 4 else 0) + 2 + 20 + 8       # the BOOTP message
            changed = {i for i in range(len(frame)) if frame[i] != out[i]}
            owned = set(range(at + 44, at + 236)) | set(range(at + 240, len(frame))) | {at - 2, at - 1}
            assert changed <= owned, f"bytes changed outside the option areas: {sorted(changed - owned)[:8]}"
            ip = at - 28
            pseudo = out[ip + 12:ip + 20] + bytes([0, 17]) + out[at - 4:at - 2]
            assert _sum16(pseudo + out[at - 8:]) == 0xFFFF, "the UDP checksum no longer verifies"
            assert not _client_sees_router(out, at), "a DHCP client still finds a Router option"
    return one


def seeds() -> list[bytes]:
    """ACKs and OFFERs with routers where clients look for them: the options, an overloaded
    sname/file, behind a tag, cut options, classless routes with a default; one raw frame."""
    r = bytes((3, 4, 198, 19, 1, 1))
    ack, offer = bytes((53, 1, 5)), bytes((53, 1, 2))
    cls = bytes((121, 10, 0, 198, 19, 1, 1, 24, 198, 18, 7, 198))[:12]
    out = [b"\x01" + ack + r + b"\xff", b"\x01" + offer + r + r + b"\xff", b"\x05" + ack + r + b"\xff",
           b"\x01" + ack + bytes((52, 1, 3)) + b"\xff" + _SEP + r + b"\xff" + _SEP + r + b"\xff",
           b"\x01" + ack + bytes((3, 200)) + r, b"\x01" + ack + cls + b"\xff", b"\x01" + bytes((3, 0)) * 40 + ack,
           b"\x03" + ack + r + b"\xff"]
    out.append(b"\x00" + _reply(ack + r + b"\xff", b"", b"", False))
    return out
