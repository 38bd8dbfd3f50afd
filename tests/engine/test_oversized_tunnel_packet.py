"""A decrypted tunnel packet larger than OpenVPN 2.6's frame allows is dropped, counted and logged
once per session, as 2.6 drops it (its buffers hold the frame's payload size: a bigger packet is
"tun packet too large on write", or cut by its read and refused as unauthentic). Ours wrote up to
65,507 bytes to the TUN unchanged. The limit follows tun-mtu / tun-mtu-max as 2.6's frame does,
so what 2.6 passes still passes (baby giants up to 1600 with the default tun-mtu)."""
from __future__ import annotations

import pytest

from appliance.openvpn import events as ev
from appliance.openvpn.session import TOO_LARGE, TUN_WRITE_SLACK
from tests.engine.test_memory_link import Link, make_pair, up
from tests.engine.test_memory_link import pki  # noqa: F401 - the fixture


def _packet(n: int) -> bytes:
    return b"\x45" + b"x" * (n - 1)


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_a_packet_over_the_frame_is_dropped_counted_and_logged_once(pki, proto):  # noqa: F811
    c, s, _ = make_pair(pki, proto=proto)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    limit = 1600 + TUN_WRITE_SLACK                 # the default tun-mtu 1500: 2.6's floor decides
    fits = [_packet(1400), _packet(1600), _packet(limit)]
    assert link.send(s, c, fits) == fits           # what 2.6 writes to its TUN passes
    for direction in ((s, c), (c, s)):
        c.events.clear(), s.events.clear()
        big = [_packet(limit + 1), _packet(9000), _packet(65_000)]
        assert link.send(*direction, big) == []
        receiver = direction[1]
        assert receiver.stats[TOO_LARGE] == 3
        warnings = [e for e in receiver.events if isinstance(e, ev.Warning) and "1769-byte" in e.message]
        assert len(warnings) == 1, list(receiver.events)
        assert [e for e in receiver.events if isinstance(e, ev.Warning)] == warnings   # once: the rest counted
        small = [_packet(100)]
        assert link.send(*direction, small) == small        # the session lives on


def test_a_larger_tun_mtu_passes_what_it_allows(pki):  # noqa: F811
    c, s, _ = make_pair(pki, tun_mtu=9000)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    jumbo = [_packet(9000), _packet(9000 + TUN_WRITE_SLACK)]
    assert link.send(c, s, jumbo) == jumbo and link.send(s, c, jumbo) == jumbo
    assert link.send(c, s, [_packet(9001 + TUN_WRITE_SLACK)]) == []
    assert s.stats[TOO_LARGE] == 1


def test_fragment_reassembles_up_to_the_frame(pki):  # noqa: F811
    """fragment 1300: a 1600-byte packet (2.6's floor) crosses in parts and is delivered whole."""
    c, s, _ = make_pair(pki, fragment_room=1300)
    link = Link(c, s)
    link.run(lambda: up(c, s))
    pkts = [_packet(1600), _packet(300)]
    for a, b in ((c, s), (s, c)):
        got = []
        for p in pkts:
            parts = a.encrypt(p)
            assert len(parts) >= (2 if len(p) > 1300 else 1)
            for w in parts:
                got += [bytes(x) for x in b.receive(bytes(w), link.now)]
        assert got == pkts
        assert TOO_LARGE not in b.stats
