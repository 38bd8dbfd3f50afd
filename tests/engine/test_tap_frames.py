"""A `dev tap` client's data path: Ethernet frames as the data channel's payload both ways, the OCC
options string 2.6's tap client sends, and MSS clamping inside a frame (behind its Ethernet header
or one 802.1Q tag, as OpenVPN 2.6's mss.c) -- with any frame a hostile server may send passing
through without an exception and with bounded work."""
from __future__ import annotations

import struct
from types import SimpleNamespace

from hypothesis import given, settings, strategies as st

from appliance.openvpn.datapath import ClientDataPath
from appliance.openvpn.ethernet import ip_offset, is_ipv6_frame
from tests.engine.test_memory_link import Link, make_pair, pki, up  # noqa: F401 - pki is a fixture

MACS = bytes.fromhex("ffffffffffff" "020000000001")


def _syn4(mss: int) -> bytes:
    ip = bytes([0x45, 0, 0, 44]) + bytes(4) + bytes([64, 6, 0, 0]) + bytes([198, 19, 0, 2, 198, 19, 0, 1])
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 6 << 4, 0x02, 64240, 0, 0) + struct.pack("!BBH", 2, 4, mss)
    return ip + tcp


def _syn6(mss: int) -> bytes:
    ip = bytes([0x60, 0, 0, 0]) + struct.pack("!HBB", 24, 6, 64) + bytes(32)
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 6 << 4, 0x02, 64240, 0, 0) + struct.pack("!BBH", 2, 4, mss)
    return ip + tcp


def _mss_at(frame, off: int, ip_len: int) -> int:
    return struct.unpack("!H", bytes(frame[off + ip_len + 22:off + ip_len + 24]))[0]


class _Session:
    """What the data path asks of a Session: the send key's cipher and format, receive/encrypt."""
    send_key = SimpleNamespace(cipher="AES-256-GCM", hlen=4)
    frag = None

    def __init__(self, inbound: list | None = None) -> None:
        self.inbound = inbound or []
        self.sealed: list = []

    def receive(self, packet, now):
        return self.inbound

    def encrypt(self, p):
        self.sealed.append(bytes(p))
        return b"w"

    def encrypt_many(self, ps):
        return [self.encrypt(p) for p in ps]

    def note_sent(self, now):
        pass


def _dp(inbound=None) -> tuple[ClientDataPath, _Session]:
    s = _Session(inbound)
    return ClientDataPath(s, lambda cipher, v2: 1368, tap=True), s


def test_the_options_string_is_2_6s_tap_clients(pki):
    """Without a `cipher` line (as these sessions are made; auth SHA256): 2.6's BF-CBC figures, tap 32 above tun."""
    c, _s, _ = make_pair(pki, dev_type="tap", tun_mtu_extra=32)
    assert c._options_string().startswith("V4,dev-type tap,link-mtu 1585,tun-mtu 1500,proto UDPv4,")
    t, _s, _ = make_pair(pki)
    assert t._options_string().startswith("V4,dev-type tun,link-mtu 1553,tun-mtu 1500,proto UDPv4,")


def test_frames_cross_the_data_channel_both_ways_unchanged(pki):
    c, s, _ = make_pair(pki, dev_type="tap", tun_mtu_extra=32)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    assert up(c, s)
    arp = MACS + b"\x08\x06" + bytes(28)
    frames = [arp, MACS + b"\x08\x00" + _syn4(1460), MACS + b"\x81\x00\x00\x05\x86\xdd" + _syn6(1440),
              MACS + b"\x08\x00" + bytes(1500)]
    assert link.send(c, s, frames) == frames
    assert link.send(s, c, frames) == frames


def test_syn_clamped_behind_the_ethernet_header_both_ways():
    out4 = bytearray(MACS + b"\x08\x00" + _syn4(1460))
    dp, s = _dp(inbound=[bytes(out4)])
    dp.seal_batch([out4], 0.0)
    assert _mss_at(s.sealed[0], 14, 20) == 1368                 # to the server
    got = dp.open(b"x", 0.0)[0]
    assert _mss_at(got, 14, 20) == 1368                         # from the server (a copy: bytes in)
    tagged = bytearray(MACS + b"\x81\x00\x00\x07\x86\xdd" + _syn6(1440))
    dp.seal_batch([tagged], 0.0)
    assert _mss_at(s.sealed[1], 18, 40) == 1348                 # IPv6: 20 less, as mss.c
    small = bytearray(MACS + b"\x08\x00" + _syn4(1200))
    dp.seal_batch([small], 0.0)
    assert _mss_at(s.sealed[2], 14, 20) == 1200                 # never raised


def test_frames_without_an_ip_packet_pass_as_they_are():
    for f in (MACS + b"\x08\x06" + bytes(28),                           # ARP
              MACS + b"\x08\x00" + b"\x65" + _syn4(1460)[1:],           # version 6 under IPv4's type
              MACS + b"\x81\x00\x00\x01\x81\x00\x00\x02\x08\x00" + _syn4(1460),   # two tags: 2.6 reads one
              _syn4(1460) + bytes(20)):                                 # an IP packet, no Ethernet header
        dp, s = _dp()
        dp.seal_batch([bytearray(f)], 0.0)
        assert s.sealed == [f]
    assert ip_offset(MACS + b"\x08\x00" + bytes(10)) is None            # a runt
    assert is_ipv6_frame(MACS + b"\x86\xdd" + _syn6(1))
    assert not is_ipv6_frame(MACS + b"\x08\x00" + _syn4(1))


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=0, max_size=80), st.integers(0, 3), st.integers(0, 1600))
def test_any_frame_from_a_hostile_server_passes_without_an_exception(head, kind, pad):
    """Runts, oversize frames, tags, broadcasts, truncated or lying IP headers: each frame costs
    a bounded look at its first bytes and comes out whole (same length)."""
    types = (b"\x08\x00", b"\x86\xdd", b"\x81\x00\x00\x01\x08\x00", b"\x81\x00\x00\x01\x86\xdd")
    frame = (b"\xff" * 12 + types[kind] + head + bytes(pad)) if head[:1] != b"\x00" else head
    dp, _s = _dp(inbound=[frame])
    out = dp.open(b"x", 0.0)
    assert len(out) == 1 and len(out[0]) == len(frame)
