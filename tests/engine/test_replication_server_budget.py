"""The server-wide budget on client-to-client copies (appliance/openvpn/datapath.py
ReplicationBudget, BCAST_SERVER_RATE): the per-sender budgets alone let k clients flooding
multicast (tun) or broadcast (tap) together cost k x BCAST_COPY_RATE copies a second -- 20
flooders at 1,000 clients ~200,000 seals a second, the whole event loop. All senders together,
the server's own device among them, are now held to BCAST_SERVER_RATE a second (after a burst of
BCAST_SERVER_BURST), each to its share, so a light sender's occasional packet still goes to
every other client whatever the flooders do. On a fake clock, over 1,000 stand-in clients."""
from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest

from appliance.openvpn.datapath import (BCAST_OVER_RATE, BCAST_OVER_SERVER, BCAST_SERVER_BURST, BCAST_SERVER_RATE,
                                        ReplicationBudget, ServerDataPath)
from appliance.openvpn.l2switch import SwitchDataPath
from tests.engine.test_replication_cost import N, Disp, _copies, _mcast

FLOODERS = 20
LIGHT = "c700"          # a well-behaved client: one packet every 2 s
WATCH = "c999"          # a client that only listens


def _bcast(k: int, sender: int) -> bytes:
    """A broadcast frame from client `sender`'s own MAC (a tap client's frames need theirs)."""
    return (b"\xff" * 6 + bytes.fromhex("0200") + sender.to_bytes(4, "big") + struct.pack("!H", 0x0806)
            + b"b%06d" % k + b"x" * 40)


def _mc(tag: bytes) -> bytes:
    """An IPv4 multicast to 224.0.0.251 whose payload is `tag`."""
    udp = struct.pack("!HHHH", 5353, 5353, 8 + len(tag), 0) + tag
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 1, 17, 0, bytes([198, 19, 0, 2]),
                       bytes([224, 0, 0, 251])) + udp


def _run(dp, d: Disp, make, seconds: int = 10) -> dict:
    """FLOODERS clients send 3 packets every 10 ms (300 a second each, over the per-sender
    packet rate too); LIGHT one every 2 s; the server's device one every 3 s. -> what was
    copied when."""
    light, device, totals = [], [], {}
    k = 0
    for tick in range(seconds * 100):
        now = tick / 100
        for f in range(FLOODERS):
            for _ in range(3):
                k += 1
                dp.from_link(make(k, f), f"c{f}", now, lambda q: None, {})
        if tick % 200 == 50:
            p = make(900_000 + tick, 700)
            light.append(bytes(p))
            dp.from_link(p, LIGHT, now, lambda q: None, {})
        if tick % 300 == 70:
            p = make(950_000 + tick, 9999)
            device.append(bytes(p))
            dp.from_tun([p], now, {})
        if tick % 100 == 99:
            totals[tick // 100 + 1] = _copies(d)
    return {"light": light, "device": device, "totals": totals}


@pytest.mark.parametrize("kind", ["tun", "tap"])
def test_k_flooders_cost_at_most_the_server_budget_and_a_light_sender_still_gets_through(kind):
    d = Disp()
    if kind == "tun":
        dp = ServerDataPath(d, lambda cipher, v2: 1300, True)

        def make(k, sender):
            return _mc(b"%07d" % k)
    else:
        dp = SwitchDataPath(d, lambda cipher, v2: 1300, True)
        make = _bcast
    got = _run(dp, d, make)
    totals = got["totals"]
    # Every second and over the whole run: no more than the server's budget (its burst once).
    assert totals[10] <= BCAST_SERVER_BURST + 10 * BCAST_SERVER_RATE, totals
    for t in range(2, 11):
        assert totals[t] - totals[t - 1] <= BCAST_SERVER_RATE + BCAST_SERVER_BURST, totals
    assert totals[10] - totals[2] <= 8 * BCAST_SERVER_RATE + BCAST_SERVER_BURST, totals
    # (the per-sender budgets alone let them have ~FLOODERS x 10,000 a second: 5x this)
    assert dp.stats[BCAST_OVER_SERVER] > 0
    # The flooders did get copies made -- their share, not nothing.
    assert len(d.by_addr[WATCH].session.sealed) > 10 * FLOODERS
    # The light client's every packet reached every other client (its sender excepted), and
    # so did every one of the server's own device.
    seen = set(d.by_addr[WATCH].session.sealed)
    assert all(p in seen for p in got["light"]), "a flooder starved a light sender's multicast"
    assert all(p in seen for p in got["device"]), "the flooders starved the server's own multicast"
    assert all(got["light"][0] in set(r.session.sealed) for a, r in d.by_addr.items() if a != LIGHT)
    assert all(got["device"][0] in set(r.session.sealed) for r in d.by_addr.values())


def test_senders_asking_more_than_the_server_budget_get_even_shares_of_it():
    """Ten senders each asking for far more than a tenth of the server's rate (and within their
    own per-sender budgets): together no more than the server's budget, and once each has been
    counted among the active senders, each gets about the same."""
    b = ReplicationBudget({})
    recs = [SimpleNamespace(common_name=f"c{i}") for i in range(10)]
    per = [0] * 10
    total = 0
    for t in range(6000):
        for i, r in enumerate(recs):
            if b.allow(r, t / 1000, 100):
                total += 100
                if t >= 2000:
                    per[i] += 100
    assert total <= BCAST_SERVER_BURST + 6 * BCAST_SERVER_RATE
    share = 4 * BCAST_SERVER_RATE * 0.75 / 10
    assert all(0.8 * share <= x <= 1.2 * share for x in per), (per, share)
    assert b.stats[BCAST_OVER_SERVER] > 0 and b.stats[BCAST_OVER_RATE] == 0


def test_the_device_is_a_sender_of_the_server_budget():
    """The TUN's multicast alone, flooding: held to its share of the server's rate, counted."""
    d = Disp()
    dp = ServerDataPath(d, lambda cipher, v2: 1300, True)
    for tick in range(300):
        dp.from_tun([_mcast(k) for k in range(10)], tick / 100, {})   # 1,000 a second, 1,000 clients each
    made = _copies(d)
    assert made <= BCAST_SERVER_BURST + 3 * BCAST_SERVER_RATE
    assert made % N == 0 and made > 0
    assert dp.stats[BCAST_OVER_SERVER] == 3000 - made // N
