"""The layer-2 server's download path (SwitchDataPath.from_tun) decides frame by frame and seals
each client's share of a TAP batch in one Session.encrypt_many call. What must not change with the
batching: the same frames reach the same clients in the same order as when the frames come one by
one, with every layer-2 rule applied to each frame (vlan-accept and the tag checks, the server
side's MACs taken back from a client mid-batch, unknown unicast dropped, a client not yet
established skipped, the MSS clamp) and the same counts and learn-address deletes.

Hypothesis draws TAP batches from a small alphabet of MACs, tags and payloads that exercises
each of those rules, and runs them through two identical switches: one whole batch at a time,
and one frame per call."""
from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.openvpn.l2switch import MOVE_IDLE, SwitchDataPath
from tests.engine.test_l2switch import A_MAC, B_MAC, BCAST, HOST_MAC, Disp, frame

C_MAC, D_MAC = bytes.fromhex("02000000000c"), bytes.fromhex("02000000000d")
LAN_MAC = bytes.fromhex("0200000000fe")      # held by client B until the TAP side sends from it
TAP_MAC = bytes.fromhex("020000000099")      # the TAP device's own
UNKNOWN = bytes.fromhex("020000000077")
MCAST = bytes.fromhex("01005e000001")
VLANS = [None, ("all", 1), ("tagged", 1), ("untagged", 1)]


class Sess:
    """A session that seals a frame as b"w" + the frame, and records each call."""

    def __init__(self) -> None:
        self.established, self.frag, self.not_traffic, self.framing = True, None, 0, 0
        self.send_key = SimpleNamespace(cipher="AES-256-GCM", hlen=4)
        self.sealed: list[bytes] = []
        self.many_calls = 0
        self.fail = False

    def encrypt(self, p):
        if self.fail:
            raise RuntimeError("seal failed")
        self.sealed.append(bytes(p))
        return b"w" + bytes(p)

    def encrypt_many(self, ps):
        self.many_calls += 1
        return [self.encrypt(p) for p in ps]


def _world(vlan):
    """Clients A and B on the server's VLAN, C on VLAN 5 (with vlan-tagging), D connected but not
    established; each has learned its MAC, B also the LAN's router's. learn-address deletes recorded."""
    d = Disp(quota=8)
    if vlan is not None:
        d.st.vlan = vlan
    recs = {}
    for addr, cn in (("A", "alice"), ("B", "bob"), ("C", "carol"), ("D", "dave")):
        rec = recs[addr] = d.add(addr, cn)
        rec.session = Sess()
        rec.vid = 5 if addr == "C" else None
    sw = SwitchDataPath(d, lambda cipher, v2: 1300, True)
    sw.server_mac = TAP_MAC
    deletes: list = []
    sw.unlearn = lambda rec, mac: deletes.append((rec.addr, mac))
    for addr, macs in (("A", [A_MAC]), ("B", [B_MAC, LAN_MAC]), ("C", [C_MAC]), ("D", [D_MAC])):
        for mac in macs:
            sw.from_link(frame(BCAST, mac), addr, 0.0, lambda p: None, {})
    recs["D"].session.established = False
    for rec in recs.values():
        rec.session.sealed.clear()
        rec.session.many_calls = 0      # (the set-up's broadcasts went to the others through it too)
    return sw, recs, deletes


def _syn_body(mss: int) -> bytes:
    ip = b"\x45\x00\x00\x2c" + b"\x00" * 4 + b"\x40\x06\x00\x00" + bytes([198, 18, 0, 2, 198, 18, 0, 1])
    return ip + struct.pack("!HHIIBBHHH", 80, 1234, 0, 0, 6 << 4, 0x02, 65535, 0, 0) + struct.pack("!BBH", 2, 4, mss)


@st.composite
def tap_frame(draw, serial: int) -> bytes:
    dst = draw(st.sampled_from([A_MAC, B_MAC, C_MAC, D_MAC, LAN_MAC, UNKNOWN, BCAST, MCAST]))
    src = draw(st.sampled_from([HOST_MAC, HOST_MAC, LAN_MAC, A_MAC, TAP_MAC]))
    tag = draw(st.sampled_from([None, None, 0, 1, 5, 7, "short", "inner"]))
    syn = draw(st.booleans())
    if draw(st.integers(0, 30)) == 0:
        return bytes(draw(st.integers(0, 13)))                       # shorter than a header
    body, etype = (_syn_body(1460), 0x0800) if syn else (serial.to_bytes(4, "big").ljust(46, b"."), 0x0806)
    if tag is None:
        return frame(dst, src, body, etype)
    if tag == "short":
        return dst + src + b"\x81\x00\x00"
    vid = 5 if tag == "inner" else tag
    inner = struct.pack("!HH", 0x8100, 6) if tag == "inner" else b""      # a second tag behind the first
    return dst + src + struct.pack("!HH", 0x8100, vid) + inner + struct.pack("!H", etype) + body


@st.composite
def batches(draw):
    out, serial = [], 0
    for _ in range(draw(st.integers(1, 4))):
        batch = []
        for _ in range(draw(st.integers(1, 24))):
            batch.append(draw(tap_frame(serial)))
            serial += 1
        # (times that cross REFRESH and MOVE_IDLE: the server side's MACs noted and expiring)
        out.append((draw(st.sampled_from([0.5, 2.0, MOVE_IDLE + 1])), batch))
    return out


def _state(sw, recs, deletes, sends):
    return ({a: r.session.sealed for a, r in recs.items()}, sends, dict(sw.stats), list(deletes),
            {m: r.addr for m, r in sw.macs.owner.items()}, sorted(sw.server_side))


@settings(max_examples=100, deadline=None)
@given(vlan=st.sampled_from(VLANS), plan=batches())
def test_a_batch_and_its_frames_one_by_one_reach_the_same_clients_in_the_same_order(vlan, plan):
    whole, one = _world(vlan), _world(vlan)
    sends_whole: dict = {}
    sends_one: dict = {}
    now = 0.0
    for dt, batch in plan:
        now += dt
        calls = {a: r.session.many_calls for a, r in whole[1].items()}
        whole[0].from_tun([bytearray(f) for f in batch], now, sends_whole)    # TUN buffers: writable
        for f in batch:
            one[0].from_tun([bytearray(f)], now, sends_one)
        # one seal call per client per batch at most
        assert all(r.session.many_calls - calls[a] <= 1 for a, r in whole[1].items())
    assert _state(whole[0], whole[1], whole[2], sends_whole) == _state(one[0], one[1], one[2], sends_one)
    assert not whole[1]["D"].session.sealed                     # not established: nothing sealed for it
    if vlan is not None:
        assert not any(f[12:14] == b"\x81\x00" and f[14:16] != b"\x00\x00"
                       for r in whole[1].values() for f in r.session.sealed)   # no VLAN tag reaches a client


def test_interleaved_frames_keep_each_clients_order_and_broadcasts_reach_each_once():
    sw, recs, _ = _world(None)
    a, b = (frame(A_MAC, HOST_MAC, bytes([i]) * 46) for i in (1, 2))
    bc = frame(BCAST, HOST_MAC, b"\x03" * 46)
    c, e = (frame(B_MAC, HOST_MAC, bytes([i]) * 46) for i in (4, 5))
    sends: dict = {}
    sw.from_tun([bytearray(x) for x in (a, c, bc, b, e)], 1.0, sends)
    assert recs["A"].session.sealed == [a, bc, b] and recs["B"].session.sealed == [c, bc, e]
    assert sends["A"] == [b"w" + x for x in (a, bc, b)] and sends["B"] == [b"w" + x for x in (c, bc, e)]
    assert recs["C"].session.sealed == [bc] and recs["D"].session.sealed == []
    assert recs["A"].session.many_calls == recs["B"].session.many_calls == 1


def test_a_mac_the_tap_side_takes_mid_batch_is_no_longer_the_clients_for_the_rest_of_it():
    """B holds the LAN router's MAC; the router speaks in the middle of a TAP batch: the frames to
    that MAC before it went to B (as one by one), the ones after it go nowhere."""
    sw, recs, deletes = _world(None)
    before, after = (frame(LAN_MAC, HOST_MAC, bytes([i]) * 46) for i in (1, 2))
    sw.from_tun([bytearray(before), bytearray(frame(BCAST, LAN_MAC)), bytearray(after)], 1.0, {})
    assert recs["B"].session.sealed == [before, frame(BCAST, LAN_MAC)]
    assert deletes == [("B", LAN_MAC)] and sw.stats["no route"] == 1


def test_a_client_whose_sealing_raises_is_reported_once_and_the_others_get_theirs():
    sw, recs, _ = _world(None)
    recs["A"].session.fail = True
    sends: dict = {}
    sw.from_tun([bytearray(frame(A_MAC, HOST_MAC)), bytearray(frame(BCAST, HOST_MAC)),
                 bytearray(frame(A_MAC, HOST_MAC))], 1.0, sends)
    assert [r.addr for r, _e in sw.failed] == ["A"]
    assert sends["B"] == [b"w" + frame(BCAST, HOST_MAC)] and "A" not in sends


@pytest.mark.parametrize("accept", ["all", "tagged"])
def test_a_vlans_broadcast_reaches_only_that_vlans_clients_within_a_batch(accept):
    sw, recs, _ = _world((accept, 1))
    on5 = BCAST + HOST_MAC + struct.pack("!HH", 0x8100, 5) + struct.pack("!H", 0x0806) + b"5" * 46
    on1 = BCAST + HOST_MAC + struct.pack("!HH", 0x8100, 1) + struct.pack("!H", 0x0806) + b"1" * 46
    sw.from_tun([bytearray(on5), bytearray(on1), bytearray(on5)], 1.0, {})
    untag5, untag1 = on5[:12] + on5[16:], on1[:12] + on1[16:]
    assert recs["C"].session.sealed == [untag5, untag5]
    assert recs["A"].session.sealed == recs["B"].session.sealed == [untag1]


def _clamp_frame_slow(mss_policy, p, s):
    """MssPolicy.clamp_frame without its quick pass (the code as it was before it)."""
    from appliance.openvpn.datapath import _is_tcp_syn
    from appliance.openvpn.ethernet import ip_offset
    from appliance.openvpn.mss import clamp_mss
    off = ip_offset(p)
    if off is None or not _is_tcp_syn(memoryview(p)[off:]):
        return p
    q = bytearray(p)
    clamp_mss(memoryview(q)[off:], mss_policy.for_session(s))
    return q


def test_the_frame_clamps_quick_pass_decides_as_the_full_test():
    """MssPolicy.clamp_frame's quick pass (the bulk of a tap's frames) changes nothing it decides:
    every frame, SYN or not, tagged or not, short or not, comes out as the full test makes it
    (each combination of the bytes the two tests read, at the lengths where they change)."""
    import itertools

    from appliance.openvpn.datapath import MssPolicy
    pol, s = MssPolicy(lambda cipher, v2: 1300), Sess()
    clamped = 0
    for etype, first, proto, flags, size, mss in itertools.product(
            [0x0800, 0x86DD, 0x8100, 0x0806, 0x88A8], [0x45, 0x46, 0x60, 0x08], [6, 17],
            [0x00, 0x02, 0x12, 0x10, 0x04, 0x06], [0, 13, 53, 54, 57, 58, 61, 62, 120], [1200, 1460]):
        body = bytearray(_syn_body(mss)) + bytes(60)
        body[0], body[9], body[33] = first, proto, flags
        if etype == 0x8100:
            body = bytearray(b"\x00\x05\x08\x00") + body
        f = (B_MAC + A_MAC + etype.to_bytes(2, "big") + bytes(body))[:size]
        quick, full = bytes(pol.clamp_frame(bytearray(f), s)), bytes(_clamp_frame_slow(pol, bytearray(f), s))
        assert quick == full, (etype, first, proto, flags, size, mss)
        clamped += quick != f
    assert clamped                              # (SYNs among them were clamped)
