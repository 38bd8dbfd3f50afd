"""vlan-tagging on the layer-2 server's switch (l2switch.py), as OpenVPN 2.6's vlan.c/multi.c:
each client on its VLAN (its ccd's vlan-pvid, else the server's), MACs learned per VLAN, no frame
between VLANs, and the TAP device's frames tagged or not as vlan-accept says."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.openvpn.l2switch import VLAN_INNER, VLAN_REFUSED, VLAN_TAGGED, SwitchDataPath, Vlans, mac_text
from tests.engine.test_l2switch import A_MAC, B_MAC, BCAST, HOST_MAC, Disp, frame, send

C_MAC = bytes.fromhex("02000000000c")


def tagged(dst: bytes, src: bytes, vid: int, pcp: int = 0, body: bytes = b"x" * 46, ethertype: int = 0x0806) -> bytes:
    return dst + src + struct.pack("!HHH", 0x8100, (pcp << 13) | vid, ethertype) + body


def world(accept: str = "all", pvid: int = 1, c2c: bool = True):
    """Clients A and B on the server's VLAN (no vlan-pvid of their own), C on VLAN 5."""
    d = Disp()
    d.st.vlan = (accept, pvid)
    a, b, c = d.add("A", "alice"), d.add("B", "bob"), d.add("C", "carol")
    a.vid = b.vid = None
    c.vid = 5
    return d, a, b, c, SwitchDataPath(d, lambda cipher, v2: 1300, c2c)


def test_clients_of_one_vlan_reach_each_other_and_no_other():
    d, a, b, c, sw = world()
    tun, sends = send(sw, "A", frame(BCAST, A_MAC))
    assert sorted(sends) == ["B"] and tun == [frame(BCAST, A_MAC)]       # the server's VLAN: untagged
    tun, sends = send(sw, "C", frame(BCAST, C_MAC))
    assert sends == {} and tun == [tagged(BCAST, C_MAC, 5)]              # alone on VLAN 5; tagged on the TAP
    # unicast to a MAC learned on another VLAN: not switched to that client (it goes to the TAP,
    # tagged with the sender's VLAN)
    tun, sends = send(sw, "C", frame(A_MAC, C_MAC, ethertype=0x0800))
    assert sends == {} and tun == [tagged(A_MAC, C_MAC, 5, ethertype=0x0800)]
    tun, sends = send(sw, "B", frame(A_MAC, B_MAC, ethertype=0x0800))
    assert list(sends) == ["A"] and tun == []
    assert mac_text(next(k for k, r in sw.macs.owner.items() if r is c)) == "02:00:00:00:00:0c@5"
    assert mac_text(next(k for k, r in sw.macs.owner.items() if r is a)) == "02:00:00:00:00:0a@1"


def test_one_mac_on_two_vlans_is_two_entries():
    """2.6 keys its table by MAC and VLAN: the same MAC on VLAN 5 is not the one on VLAN 1, so
    no client of one VLAN takes another's."""
    d, a, b, c, sw = world()
    send(sw, "A", frame(BCAST, A_MAC))
    send(sw, "C", frame(BCAST, A_MAC))
    assert sw.stats["frame from another client's MAC"] == 0 and len(sw.macs) == 2


def test_a_clients_tagged_frame_is_dropped_a_priority_tag_passes():
    d, a, b, c, sw = world()
    tun, sends = send(sw, "A", tagged(BCAST, A_MAC, 7))
    assert tun == [] and sends == {} and sw.stats[VLAN_TAGGED] == 1
    tun, sends = send(sw, "C", tagged(BCAST, C_MAC, 0, pcp=5))
    assert tun == [tagged(BCAST, C_MAC, 5, pcp=5)]                      # its priority kept, its VLAN set


def test_frames_from_the_tap_go_to_their_vlan_untagged():
    d, a, b, c, sw = world()
    send(sw, "A", frame(BCAST, A_MAC))
    send(sw, "C", frame(BCAST, C_MAC))
    sw.from_tun([tagged(BCAST, HOST_MAC, 5), frame(BCAST, HOST_MAC), tagged(C_MAC, HOST_MAC, 5),
                 tagged(A_MAC, HOST_MAC, 5), frame(C_MAC, HOST_MAC)], 1.0, {})
    assert c.session.sealed == [frame(BCAST, HOST_MAC), frame(C_MAC, HOST_MAC)]
    assert a.session.sealed == [frame(BCAST, HOST_MAC)] and b.session.sealed[-1] == frame(BCAST, HOST_MAC)
    assert sw.stats["no route"] == 2                 # A's MAC is not on VLAN 5, C's not on VLAN 1


@pytest.mark.parametrize("accept, own_vlan, other_vlan", [
    ("all", "untagged", "tagged"), ("tagged", "tagged", "tagged"), ("untagged", "untagged", None)])
def test_vlan_accept_on_the_tap(accept, own_vlan, other_vlan):
    d, a, b, c, sw = world(accept)
    tun, _ = send(sw, "A", frame(BCAST, A_MAC))
    assert tun == [frame(BCAST, A_MAC) if own_vlan == "untagged" else tagged(BCAST, A_MAC, 1)]
    tun, _ = send(sw, "C", frame(BCAST, C_MAC))
    assert tun == ([] if other_vlan is None else [tagged(BCAST, C_MAC, 5)])
    sw.from_tun([frame(BCAST, HOST_MAC), tagged(BCAST, HOST_MAC, 5)], 1.0, {})
    want_a = [] if accept == "tagged" else [frame(BCAST, HOST_MAC)]
    want_c = [] if accept == "untagged" else [frame(BCAST, HOST_MAC)]
    assert a.session.sealed == want_a and c.session.sealed == want_c
    assert sw.stats[VLAN_REFUSED] == (2 if accept == "untagged" else 1 if accept == "tagged" else 0)


def test_the_taps_own_mac_is_no_clients_on_any_vlan():
    d, a, b, c, sw = world()
    sw.server_mac = HOST_MAC
    tun, sends = send(sw, "C", frame(BCAST, HOST_MAC))
    assert tun == [] and sw.stats["frame from a MAC of the server's side"] == 1


def test_without_vlan_tagging_nothing_changes():
    d, a, b, c, sw = world()
    d.st.vlan = None
    sw = SwitchDataPath(d, lambda cipher, v2: 1300, True)
    tun, sends = send(sw, "C", tagged(BCAST, C_MAC, 7))
    assert tun == [tagged(BCAST, C_MAC, 7)] and sorted(sends) == ["A", "B"]
    assert mac_text(C_MAC) == "02:00:00:00:00:0c@0"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.sampled_from(["all", "tagged", "untagged"]), st.integers(1, 4094))
def test_hostile_frames_never_raise(p, accept, vid):
    v = Vlans(accept, 1)
    got = v.from_tap(p)
    assert got is None or (len(got[0]) in (len(p), len(p) - 4) and 1 <= got[1] <= 4095)
    out = v.to_tap(p, vid)
    assert out is None or len(out) in (len(p), len(p) + 4)
    d, a, b, c, sw = world(accept)
    send(sw, "C", p)
    sw.from_tun([p], 0.0, {})


def qinq(dst: bytes, src: bytes, outer: int, inner_vid: int, outer_vid: int = 0, inner: int = 0x8100) -> bytes:
    """A frame with two tags: the outer TPID `outer` (with `outer_vid` when it is 802.1Q, then a
    tag `inner` of `inner_vid`), or an S-tag of `inner_vid` alone -- the tags of VLAN hopping."""
    head = dst + src + struct.pack("!H", outer)
    if outer == 0x8100:
        return head + struct.pack("!HHHH", outer_vid, inner, inner_vid, 0x0806) + b"x" * 46
    return head + struct.pack("!HHH", inner_vid, 0x0806, 0) + b"x" * 44


@pytest.mark.parametrize("name, f", [
    # A priority tag (VID 0) around an 802.1Q tag: Linux's receive path (net/core/dev.c) strips
    # an outer VID-0 tag and hands the frame to the inner VLAN's device (tap0.5, a bridge port):
    # a VLAN-1 client's frame, untouched on the server's own VLAN, landed on VLAN 5.
    ("priority tag around an 802.1Q tag", qinq(BCAST, A_MAC, 0x8100, 5)),
    ("priority tag around an 802.1ad tag", qinq(BCAST, A_MAC, 0x8100, 5, inner=0x88A8)),
    ("802.1ad (QinQ) tag", qinq(BCAST, A_MAC, 0x88A8, 5)),      # the kernel's other VLAN protocol
    ("0x9100 (old QinQ) tag", qinq(BCAST, A_MAC, 0x9100, 5)),   # a switch's configurable S-tag
], ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("accept", ["all", "untagged"])
def test_a_client_hides_no_vlan_tag_behind_a_priority_tag_or_an_sTag(name, f, accept):
    """A VLAN-1 client (the server's VLAN: its frames reach the TAP untagged) may not reach VLAN
    5 with a second tag: 2.6 passes these (vlan_is_tagged looks at one 0x8100 tag only); here
    they are a client's tagged frames, dropped and counted."""
    d, a, b, c, sw = world(accept)
    tun, sends = send(sw, "A", f)
    assert tun == [] and sends == {} and sw.stats[VLAN_TAGGED] == 1, name


def test_a_plain_priority_tag_still_passes_on_the_servers_vlan():
    d, a, b, c, sw = world()
    f = tagged(BCAST, A_MAC, 0, pcp=3, ethertype=0x0800)
    tun, sends = send(sw, "A", f)
    assert tun == [f] and list(sends) == ["B"]


@pytest.mark.parametrize("name, f", [
    ("VLAN 5 around an 802.1Q tag", qinq(BCAST, HOST_MAC, 0x8100, 7, outer_vid=5)),
    ("VLAN 5 around an 802.1ad tag", qinq(BCAST, HOST_MAC, 0x8100, 7, outer_vid=5, inner=0x88A8)),
    ("priority tag around an 802.1Q tag", qinq(BCAST, HOST_MAC, 0x8100, 7)),
    ("untagged 802.1ad frame", qinq(BCAST, HOST_MAC, 0x88A8, 7)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_the_tap_side_puts_no_second_tag_into_a_client(name, f):
    """A client is an access port both ways: what reaches it from the TAP carries no VLAN tag but
    a priority tag, else a bridging client's kernel (or VLAN-aware bridge) took the inner tag as
    its own VLAN -- the TAP side's double-tagging hop into a client's site. 2.6 delivers these."""
    d, a, b, c, sw = world()
    sw.from_tun([f], 1.0, {})
    assert a.session.sealed == [] and b.session.sealed == [] and c.session.sealed == [], name
    assert sw.stats[VLAN_INNER] == 1


def test_a_mac_flood_on_one_vlan_evicts_nobody_on_another():
    """A VLAN-1 client sending from thousands of MACs, the VLAN-5 client's among them, holds its
    quota on VLAN 1 only: frames for the VLAN-5 client's MAC on VLAN 5 still reach it alone."""
    d, a, b, c, sw = world()
    send(sw, "C", frame(BCAST, C_MAC))
    for i in range(3000):
        send(sw, "A", frame(BCAST, bytes((2, 0, 0, 1)) + i.to_bytes(2, "big")), now=1.0)
    send(sw, "A", frame(BCAST, C_MAC), now=1.0)
    sw.from_tun([tagged(C_MAC, HOST_MAC, 5)], 2.0, {})
    assert c.session.sealed[-1] == frame(C_MAC, HOST_MAC) and len(sw.macs.macs_of(a)) <= d.st.max_routes_per_client


def test_vid_4095_and_short_tagged_frames_from_the_tap_reach_nobody():
    d, a, b, c, sw = world()
    send(sw, "C", frame(BCAST, C_MAC))
    sw.from_tun([tagged(BCAST, HOST_MAC, 4095), tagged(C_MAC, HOST_MAC, 4095), tagged(BCAST, HOST_MAC, 5)[:17]],
                1.0, {})
    assert a.session.sealed == b.session.sealed == c.session.sealed == []


def test_a_client_moving_vlan_at_reconnect_keeps_nothing_of_its_old_vlan():
    """carol (VLAN 5) comes back as a new session whose ccd now says VLAN 1, while learn-address
    still decides on her old session's MAC: the new session's MAC is asked as MAC@1, the old
    verdict (MAC@5) arriving after the old session left teaches nothing, and frames for her MAC
    on VLAN 5 reach nobody."""
    d, a, b, c, sw = world()
    asked: list = []
    unlearned: list = []
    sw.ask = lambda rec, mac: asked.append((rec, mac)) and False
    sw.unlearn = lambda rec, mac: unlearned.append((rec, mac))
    send(sw, "C", frame(BCAST, C_MAC))                       # asked about C_MAC@5, verdict pending
    c2 = d.add("C2", "carol")
    c2.vid = None                                            # the server's VLAN 1 now
    send(sw, "C2", frame(BCAST, C_MAC), now=0.5)
    assert [mac_text(m) for _, m in asked] == ["02:00:00:00:00:0c@5", "02:00:00:00:00:0c@1"]
    d.forget(c)
    sw.learn_result(c, C_MAC + b"\x00\x05", True, 1.0)       # the old session's late yes
    sw.learn_result(c2, C_MAC + b"\x00\x01", True, 1.0)
    assert C_MAC + b"\x00\x05" not in sw.macs.owner and sw.macs.owner[C_MAC + b"\x00\x01"] is c2
    sw.from_tun([tagged(C_MAC, HOST_MAC, 5), frame(C_MAC, HOST_MAC)], 2.0, {})
    assert c.session.sealed == [] and c2.session.sealed == [frame(C_MAC, HOST_MAC)]
