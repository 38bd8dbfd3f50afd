"""`route-gateway dhcp` on a tap client (openvpn/dhcprouter.py): the Router option padded out of a
server's DHCP OFFER/ACK, the UDP checksum right again, an ACK's router read -- as OpenVPN 2.6's
dhcp.c -- and hostile frames never raising, growing or being changed when they are no DHCP reply."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from appliance.openvpn.dhcprouter import extract_router


def reply(kind: str = "ack", routers=("198.19.1.1",), vlan: bool = False, sport: int = 67, op: int = 2,
          extra=()) -> bytes:
    opts = [("message-type", kind), ("server_id", "198.19.1.1"), ("subnet_mask", "255.255.255.0")]
    if routers:
        opts.append(("router", *routers))
    opts += [*extra, ("lease_time", 3600), "end"]
    l2 = Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01")
    if vlan:
        l2 = l2 / Dot1Q(vlan=5)
    return bytes(l2 / IP(src="198.19.1.1", dst="198.19.1.100") / UDP(sport=sport, dport=68)
                 / BOOTP(op=op, yiaddr="198.19.1.100", chaddr=b"\x02\0\0\0\0\x02") / DHCP(options=opts))


def options(frame: bytes) -> list:
    return [o for o in Ether(frame)[DHCP].options if isinstance(o, tuple)]


def checksum_ok(frame: bytes) -> bool:
    udp = Ether(frame)[UDP]
    got = udp.chksum
    del udp.chksum
    return UDP(bytes(udp)).chksum == got


def test_ack_router_read_and_padded_out():
    out, router = extract_router(reply("ack"))
    assert router == "198.19.1.1"
    names = [o[0] for o in options(out)]
    assert "router" not in names and names[:3] == ["message-type", "server_id", "subnet_mask"]
    assert "lease_time" in names              # what followed moved down over it
    assert len(out) == len(reply("ack")) and checksum_ok(out)


def test_offer_padded_out_but_no_router_taken():
    out, router = extract_router(reply("offer"))
    assert router is None and "router" not in [o[0] for o in options(out)] and checksum_ok(out)


def test_first_of_several_routers_every_router_option_removed():
    f = reply("ack", routers=("198.19.1.254", "198.19.1.253"), extra=[("router", "10.0.0.1")])
    out, router = extract_router(f)
    assert router == "198.19.1.254"
    assert "router" not in [o[0] for o in options(out)] and checksum_ok(out)


def test_behind_an_8021q_tag():
    out, router = extract_router(reply("ack", vlan=True))
    assert router == "198.19.1.1" and checksum_ok(out)


def test_not_a_server_reply_is_left_alone():
    for f in (reply("ack", op=1), reply("ack", routers=())):
        out, router = extract_router(f)
        assert out is f and router is None
    # a server's reply of another type than OFFER/ACK: its routers out too (2.6 leaves them: a
    # client may read another message type than 2.6's), no router taken
    for f in (reply("request"), reply("nak")):
        out, router = extract_router(f)
        assert "router" not in [o[0] for o in options(out)] and router is None and checksum_ok(out)


def test_ack_without_router():
    out, router = extract_router(reply("ack", routers=()))
    assert router is None and checksum_ok(out)


def test_truncated_udp_length_is_left_alone():
    f = bytearray(reply("ack"))
    f[14 + 20 + 4:14 + 20 + 6] = (len(f) + 100).to_bytes(2, "big")     # UDP length past the frame
    out, router = extract_router(bytes(f))
    assert router is None and out == bytes(f)


_ACK_HEAD = reply("ack")[:14 + 20 + 8 + 240] + bytes((53, 1, 5))     # an ACK's headers, then anything


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 60))
def test_hostile_options_never_raise_and_never_grow(tail, cut):
    head = _ACK_HEAD
    f = bytearray(head + tail)
    u = 14 + 20
    f[u + 4:u + 6] = (len(f) - u).to_bytes(2, "big")
    frame = bytes(f[:len(f) - cut]) if cut < len(tail) else bytes(f)
    out, router = extract_router(frame)
    assert out is None or len(out) == len(frame)
    assert router is None or router.count(".") == 3


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700))
def test_any_bytes(frame):
    out, _ = extract_router(frame)
    assert out is None or len(out) == len(frame)


class _Session:
    """Just what ClientDataPath.open touches: the plaintexts out of receive."""
    send_key = None
    frag = None
    stats: dict = {}

    def __init__(self, frames: list) -> None:
        self.frames = frames

    def receive(self, packet, now):
        return list(self.frames)


def test_the_client_data_path_reads_replies_only_while_set():
    from appliance.openvpn.datapath import ClientDataPath
    ack = reply("ack")
    dp = ClientDataPath(_Session([ack, b"\xff" * 60]), lambda c, v2: None, tap=True)
    plain_open = type(dp).open
    assert dp.open(b"wire", 0.0)[0] == ack                    # off: the frame as it came
    seen: list = []
    dp.set_dhcp_router(seen.append)
    out = dp.open(b"wire", 0.0)
    assert seen == ["198.19.1.1"] and "router" not in [o[0] for o in options(out[0])] and out[1] == b"\xff" * 60
    dp.set_dhcp_router(None)
    assert dp.open.__func__ is plain_open


def test_thousands_of_empty_router_options_cost_one_pass():
    """A hostile server's reply (over TCP a packet may hold ~64 KiB): every empty Router option
    taken out in one pass -- 2.6 moves the rest down once per option."""
    base = reply("ack", routers=())
    head, tail = base[:14 + 20 + 8 + 240], base[14 + 20 + 8 + 240:]
    f = bytearray(head + bytes((3, 0)) * 12000 + tail)
    f[14 + 2:14 + 4] = (len(f) - 14).to_bytes(2, "big")
    f[14 + 20 + 4:14 + 20 + 6] = (len(f) - 14 - 20).to_bytes(2, "big")
    out, router = extract_router(bytes(f))
    assert router is None and len(out) == len(f)
    assert out[14 + 20 + 8 + 240:].startswith(tail) and checksum_ok(out)


# ---- a hostile server hiding a router from the stripping (atk31a). What a DHCP client on the
# tap reads: the options, then -- when an option 52 says so -- the file and sname fields (RFC
# 2131; dhclient, systemd-networkd, busybox udhcpc all do); a message type that may come twice
# (systemd keeps the last) or not at all (a BOOTP reply, which dhclient takes as an offer);
# frames whose one 802.1Q or 802.1ad tag the kernel takes off before a packet socket sees them;
# and over a UDP socket (a renewal), a datagram the kernel put together from fragments.
COOKIE = b"\x63\x82\x53\x63"
ROUTER = bytes((3, 4, 198, 19, 1, 66))


def raw_reply(opts: bytes, sname: bytes = b"", file: bytes = b"", ethertype: int | None = None,
              ip_options: bytes = b"", frag: int = 0) -> bytes:
    """A server's reply with options `opts` (then END) and the sname/file fields as given; behind
    a tag of `ethertype` (VID 5) if any; IP options and the fragment field as given."""
    dhcp = bytes(BOOTP(op=2, yiaddr="198.19.1.100", chaddr=b"\x02\0\0\0\0\x02", sname=sname, file=file,
                       options=COOKIE + opts + b"\xff"))
    ip = IP(src="198.19.1.1", dst="198.19.1.100", options=ip_options, frag=frag & 0x1FFF,
            flags="MF" if frag & 0x2000 else 0)
    f = bytes(Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01") / ip / UDP(sport=67, dport=68) / dhcp)
    if ethertype is not None:
        f = f[:12] + ethertype.to_bytes(2, "big") + b"\x00\x05" + f[12:]
    return f


def _options(area: bytes) -> list[int]:
    """The option codes a client reads in `area` (to END, past PADs)."""
    codes, i = [], 0
    while i < len(area) and area[i] != 255:
        if area[i] == 0:
            i += 1
            continue
        codes.append(area[i])
        i += 2 + (area[i + 1] if i + 1 < len(area) else 0)
    return codes


def routers_seen(frame: bytes) -> bool:
    """Whether a client reading `frame` finds a Router option anywhere it looks."""
    off = 18 if frame[12:14] in (b"\x81\x00", b"\x88\xa8") else 14
    u = off + (frame[off] & 15) * 4
    raw = frame[u + 8:u + int.from_bytes(frame[u + 4:u + 6], "big")]      # the BOOTP message, as a client reads it
    opts = raw[240:]
    overload, i = 0, 0
    while i < len(opts) and opts[i] != 255:
        if opts[i] == 52 and opts[i + 1] == 1:
            overload |= opts[i + 2]
        i += 1 if opts[i] == 0 else 2 + opts[i + 1]
    areas = [opts] + ([raw[108:236]] if overload & 1 else []) + ([raw[44:108]] if overload & 2 else [])
    return any(3 in _options(a) for a in areas)


def _udp_checksum_ok(frame: bytes) -> bool:
    off = 18 if frame[12:14] in (b"\x81\x00", b"\x88\xa8") else 14
    return checksum_ok(frame[:12] + b"\x08\x00" + frame[off:])


def test_the_reply_helpers_see_what_a_client_sees():
    assert routers_seen(raw_reply(bytes((53, 1, 5)) + ROUTER))
    assert not routers_seen(raw_reply(bytes((53, 1, 5)), file=ROUTER + b"\xff"))      # no overload: a file name
    assert routers_seen(raw_reply(bytes((53, 1, 5, 52, 1, 1)), file=ROUTER + b"\xff"))


@pytest.mark.parametrize("overload, where", [(1, "file"), (2, "sname"), (3, "file"), (3, "sname")])
def test_a_router_in_an_overloaded_sname_or_file_is_padded_out(overload, where):
    f = raw_reply(bytes((53, 1, 5, 52, 1, overload)), **{where: ROUTER + b"\xff"})
    out, router = extract_router(f)
    assert out is not None and not routers_seen(out) and _udp_checksum_ok(out)


def test_without_overload_sname_and_file_are_left_as_they_are():
    f = raw_reply(bytes((53, 1, 5)), sname=ROUTER, file=ROUTER)
    out, _ = extract_router(f)
    assert out is f


@pytest.mark.parametrize("name, opts, file", [
    ("message type only in the overloaded file", bytes((52, 1, 1)) + ROUTER, bytes((53, 1, 5, 255))),
    ("a REQUEST type first, an ACK type after (systemd keeps the last)", bytes((53, 1, 3, 53, 1, 5)) + ROUTER, b""),
    ("no message type: a BOOTP reply (dhclient takes it as an offer)", ROUTER, b""),
    ("a NAK", bytes((53, 1, 6)) + ROUTER, b""),
], ids=lambda v: v if isinstance(v, str) and " " in v else "")
def test_every_server_reply_loses_its_routers_whatever_type_it_says(name, opts, file):
    out, router = extract_router(raw_reply(opts, file=file))
    assert out is not None and not routers_seen(out) and _udp_checksum_ok(out), name
    assert router is None        # (the VPN gateway is read from an ACK only, as 2.6 reads it)


@pytest.mark.parametrize("ethertype", [0x8100, 0x88A8])
def test_behind_one_tag_of_either_vlan_protocol(ethertype):
    """A packet socket on the tap (every DHCP client's, before it has a lease) sees a frame with
    one 802.1Q or 802.1ad tag as untagged: the kernel took the tag off."""
    out, router = extract_router(raw_reply(bytes((53, 1, 5)) + ROUTER, ethertype=ethertype))
    assert out is not None and not routers_seen(out) and router == "198.19.1.66" and _udp_checksum_ok(out)


def test_with_ip_options():
    out, router = extract_router(raw_reply(bytes((53, 1, 5)) + ROUTER, ip_options=b"\x01\x01\x01\x00"))
    assert out is not None and not routers_seen(out) and router == "198.19.1.66" and _udp_checksum_ok(out)


def test_a_fragmented_reply_never_reaches_the_tap():
    """A renewing client reads a UDP socket: the kernel reassembles fragments the stripping never
    saw whole. No DHCP server fragments its replies (576 bytes and less), so the first fragment
    of a datagram from port 67 to 68 is dropped -- without it nothing is reassembled."""
    whole = raw_reply(bytes((53, 1, 5)) + bytes((0,)) * 300 + ROUTER)
    first = raw_reply(bytes((53, 1, 5)), frag=0x2000)            # MF, offset 0: the ports are in it
    assert extract_router(first)[0] is None
    later = raw_reply(bytes((53, 1, 5)) + ROUTER, frag=40)       # not the first: passed as it is
    assert extract_router(later)[0] is later
    other = bytearray(raw_reply(bytes((53, 1, 5)), frag=0x2000))
    other[14 + 22:14 + 24] = (5353).to_bytes(2, "big")          # to another port: not ours to judge
    assert extract_router(bytes(other))[0] == bytes(other)
    tiny = bytearray(first)
    tiny[14 + 2:14 + 4] = (20 + 2).to_bytes(2, "big")           # too short to show its ports
    assert extract_router(bytes(tiny))[0] is None
    assert extract_router(whole)[0] is not None


def test_the_client_data_path_drops_a_replys_first_fragment_and_counts_it():
    from appliance.openvpn.datapath import ClientDataPath
    from appliance.openvpn.dhcprouter import FRAGMENTED_REPLY
    first = raw_reply(bytes((53, 1, 5)), frag=0x2000)
    s = _Session([first, b"\xff" * 60])
    s.stats = {}
    dp = ClientDataPath(s, lambda c, v2: None, tap=True)
    dp.set_dhcp_router(lambda r: None)
    assert dp.open(b"wire", 0.0) == [b"\xff" * 60] and s.stats == {FRAGMENTED_REPLY: 1}


def _classless(code: int, *routes: tuple[int, bytes, bytes]) -> bytes:
    body = b"".join(bytes((w,)) + dest + gw for w, dest, gw in routes)
    return bytes((code, len(body))) + body


def _option(frame: bytes, code: int) -> bytes | None:
    opts = bytes(Ether(frame)[BOOTP])[240:]
    i = 0
    while i < len(opts) and opts[i] != 255:
        if opts[i] == 0:
            i += 1
            continue
        if opts[i] == code:
            return opts[i + 2:i + 2 + opts[i + 1]]
        i += 2 + opts[i + 1]
    return None


LAN_ROUTE = (8, b"\x0a", b"\xc6\x13\x01\x01")           # 10.0.0.0/8 via 198.19.1.1
DEFAULT = (0, b"", b"\xc6\x13\x01\x42")                 # 0.0.0.0/0 via 198.19.1.66


@pytest.mark.parametrize("code", [121, 249])
def test_a_default_route_among_classless_static_routes_is_taken_out(code):
    """RFC 3442: a client given option 121 ignores the Router option and installs its routes --
    a 0.0.0.0/0 among them is the default route through the tunnel that route-gateway dhcp keeps
    from the tap (2.6 leaves 121 and Microsoft's 249 as they are). The other routes stay."""
    f = raw_reply(bytes((53, 1, 5)) + _classless(code, LAN_ROUTE, DEFAULT) + ROUTER)
    out, router = extract_router(f)
    assert router == "198.19.1.66" and _udp_checksum_ok(out) and not routers_seen(out)
    assert _option(out, code) == bytes((8, 10, 198, 19, 1, 1))
    only = raw_reply(bytes((53, 1, 5)) + _classless(code, DEFAULT) + bytes((51, 4, 0, 0, 14, 16)))
    out, _ = extract_router(only)
    assert _option(out, code) is None and _option(out, 51) == bytes((0, 0, 14, 16)) and _udp_checksum_ok(out)


def test_classless_routes_without_a_default_are_left_as_they_are():
    f = raw_reply(bytes((53, 1, 5)) + _classless(121, LAN_ROUTE))
    assert extract_router(f)[0] is f


def test_a_malformed_classless_route_option_goes_whole():
    """A width past 32 or a route running past the option: some clients read the routes before
    it, a default among them -- the option is taken out."""
    for body in (bytes((0, 198, 19, 1, 66, 33)) + bytes(8), bytes((0, 198, 19, 1, 66, 24, 10, 0))):
        f = raw_reply(bytes((53, 1, 5)) + bytes((121, len(body))) + body)
        out, _ = extract_router(f)
        assert _option(out, 121) is None and _udp_checksum_ok(out)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([121, 249]), st.binary(max_size=60))
def test_hostile_classless_routes_never_raise_grow_or_keep_a_default(code, body):
    f = raw_reply(bytes((53, 1, 5, code, len(body))) + body + ROUTER)
    out, _ = extract_router(f)
    assert out is not None and len(out) == len(f)
    kept = _option(out, code) if out is not f else None
    i = 0
    while kept is not None and i < len(kept):       # what stays is well formed and has no 0/0
        assert 0 < kept[i] <= 32
        i += 1 + (kept[i] + 7) // 8 + 4
    assert kept is None or i == len(kept)


def test_hostile_replies_beyond_a_byte_rate_are_dropped_not_read():
    """Any host on the server's bridged LAN may send replies full of options, each read option by
    option (~a microsecond per byte here): beyond REPLY_RATE bytes a second (REPLY_BURST at
    once) they are dropped and counted, so they cost a bounded share of a core; other frames and
    a later legitimate reply pass."""
    from appliance.openvpn.datapath import ClientDataPath
    from appliance.openvpn.dhcprouter import OVER_RATE, REPLY_BURST, REPLY_RATE
    hostile = raw_reply(bytes((53, 1, 5)) + bytes((1, 0)) * 600)
    n = REPLY_BURST // (len(hostile) - 42) + 5
    s = _Session([hostile] * n + [b"\xff" * 60])
    s.stats = {}
    dp = ClientDataPath(s, lambda c, v2: None, tap=True)
    dp.set_dhcp_router(lambda r: None)
    out = dp.open(b"wire", 0.0)
    assert out[-1] == b"\xff" * 60 and 0 < s.stats[OVER_RATE] <= 5 + 1 and len(out) == n + 1 - s.stats[OVER_RATE]
    s.frames = [reply("ack")]
    assert len(dp.open(b"wire", 1.0)) == 1 and len(reply("ack")) < REPLY_RATE


def test_a_reply_from_another_source_port_loses_its_routers_too():
    """dhclient, systemd-networkd and busybox udhcpc check a reply's destination port (68), not
    its source: 2.6 (and ours before) stripped replies from port 67 only."""
    out, router = extract_router(reply("ack", sport=1067))
    assert out is not None and not routers_seen(out) and checksum_ok(out)
    assert router == "198.19.1.1"
    frag = bytearray(raw_reply(bytes((53, 1, 5)), frag=0x2000))
    frag[14 + 20:14 + 22] = (1067).to_bytes(2, "big")
    assert extract_router(bytes(frag))[0] is None


def test_a_cut_router_at_the_end_is_not_completed_by_the_padding():
    """A Router option cut short by the end of the reply (its value runs past it) behind one
    that is taken out: moved down over it, the padding would complete it -- `3 4 198 19` then
    zeros is the Router 198.19.0.0 to a client. It goes with the rest instead."""
    cut = bytes((3, 4, 198, 19))
    f = bytearray(raw_reply(bytes((53, 1, 5)) + ROUTER + cut)[:-1])    # no END: the cut option ends it
    ip, u = 14, 34
    f[u + 4:u + 6] = (len(f) - u).to_bytes(2, "big")
    f[ip + 2:ip + 4] = (len(f) - ip).to_bytes(2, "big")
    out, router = extract_router(bytes(f))
    assert router == "198.19.1.66"
    area = bytes(out)[u + 8 + 240:]
    assert area[:3] == bytes((53, 1, 5)) and set(area[3:]) == {0}, area.hex()


# ---- a cut-off option at the very end, completed by the padding (fuzz32: the dhcp-router fuzz
# target's oracle, tests/fuzz/control_targets.py). Stripping moves what follows a Router option
# down and pads the tail; a truncated option left at the end is then followed by the padding,
# which completes it: a client would read it whole.
def unterminated(opts: bytes) -> bytes:
    """A server's reply whose options end with `opts` (no END, nothing after: the UDP datagram
    ends there), as a hostile server may send it."""
    f = bytearray(raw_reply(opts)[:-1])
    ip = 14
    u = ip + 20
    f[ip + 2:ip + 4] = (len(f) - ip).to_bytes(2, "big")
    f[u + 4:u + 6] = (len(f) - u).to_bytes(2, "big")
    f[u + 6:u + 8] = b"\0\0"                                  # no UDP checksum
    return bytes(f)


def _options_read(frame: bytes) -> list[tuple[int, bytes]]:
    """(code, body) of the options a client reads, to END; a truncated last one is not read."""
    u = 14 + (frame[14] & 15) * 4
    opts = frame[u + 8 + 240:u + int.from_bytes(frame[u + 4:u + 6], "big")]
    out, i = [], 0
    while i < len(opts) and opts[i] != 255:
        if opts[i] == 0:
            i += 1
            continue
        if i + 1 >= len(opts) or i + 2 + opts[i + 1] > len(opts):
            break
        out.append((opts[i], opts[i + 2:i + 2 + opts[i + 1]]))
        i += 2 + opts[i + 1]
    return out


def test_a_cut_off_router_option_at_the_end_is_not_completed_into_a_router():
    f = unterminated(bytes((53, 1, 5)) + ROUTER + bytes((3, 4, 198, 19, 1)))
    assert [c for c, _ in _options_read(f)] == [53, 3]           # the cut-off one is no option
    out, router = extract_router(f)
    assert router == "198.19.1.66"
    assert out is not None and len(out) == len(f) and checksum_ok(out)
    assert [c for c, _ in _options_read(out)] == [53], "a Router option appeared out of the cut-off one"


def test_a_cut_off_classless_route_option_is_not_completed_into_a_default_route():
    # 121, length 10: the default route via 198.19.1.66 and five bytes the sender does not send.
    f = unterminated(bytes((53, 1, 5)) + ROUTER + bytes((121, 10, 0, 198, 19, 1, 66)))
    assert [c for c, _ in _options_read(f)] == [53, 3]
    out, _ = extract_router(f)
    assert out is not None and checksum_ok(out)
    assert [c for c, _ in _options_read(out)] == [53], "a classless route option appeared out of the cut-off one"


def test_a_lone_type_byte_at_the_end_does_not_become_an_option():
    f = unterminated(bytes((53, 1, 5)) + ROUTER + bytes((121,)))
    out, _ = extract_router(f)
    assert [c for c, _ in _options_read(out)] == [53]


@pytest.mark.parametrize("halves", [
    (bytes((8, 10, 198, 19, 1, 1, 0, 198, 19)), bytes((1, 66))),     # the default's entry cut across two
    (bytes((0,)), bytes((198, 19, 1, 66))),                          # its width alone, then its router
    (bytes((8, 10, 198, 19, 1, 1)), bytes((0, 198, 19, 1, 66))),     # whole entries, the default in the second
])
def test_a_default_route_split_across_option_instances_does_not_survive(halves):
    """atk50: RFC 3396 -- a client joins the instances of an option (121 over 255 bytes is sent in
    pieces) before reading it, so a hostile reply can cut the default route's entry across two.
    Each instance is read alone here: a cut one is malformed and goes whole, whole entries read
    the same alone as joined. Whatever is left, joined, holds no 0.0.0.0/0."""
    a, b = halves
    f = raw_reply(bytes((53, 1, 5, 121, len(a))) + a + bytes((121, len(b))) + b)
    out, _ = extract_router(f)
    opts = bytes(Ether(out)[BOOTP])[240:]
    joined, i = b"", 0
    while i < len(opts) and opts[i] != 255:
        if opts[i] == 0:
            i += 1
            continue
        if opts[i] == 121:
            joined += opts[i + 2:i + 2 + opts[i + 1]]
        i += 2 + opts[i + 1]
    i = 0
    while i < len(joined):
        assert joined[i] != 0, f"a default route left: {joined.hex()}"
        i += 1 + (joined[i] + 7) // 8 + 4
    assert i == len(joined) and _udp_checksum_ok(out)
