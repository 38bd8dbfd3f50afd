"""What one client's multicast (dev tun) or broadcast (dev tap) flood with client-to-client can
make the server do at 1,000 clients: each packet replicated costs a seal and a datagram per other
client (~5 us each), so a budget in packets alone (BCAST_RATE, 200 a second per sending client)
let one client have the server make 200 x 999 copies a second -- the whole event loop, every
client's traffic waiting -- and its burst of 400 packets ~400,000 copies at once. The copies are
held to BCAST_COPY_RATE a second per sending client (burst BCAST_COPY_BURST) whatever the number
of clients; the packet itself still reaches the server's TUN/TAP device, and the rest is counted.
Over stand-in dispatchers (1,000 clients that count their seals)."""
from __future__ import annotations

import struct
from types import SimpleNamespace

from appliance.openvpn.datapath import (BCAST_BURST, BCAST_COPY_BURST, BCAST_COPY_RATE, BCAST_OVER_RATE,
                                        ServerDataPath)
from appliance.openvpn.l2switch import SwitchDataPath
from tests.engine.test_l2switch import Sess

N = 1000


class Disp:
    """N established clients; receive() hands the packet back as the sender's one packet."""

    def __init__(self, n: int = N) -> None:
        self.st = SimpleNamespace(max_routes_per_client=4)
        self.on_forget = None
        self.by_addr = {f"c{i}": SimpleNamespace(addr=f"c{i}", session=Sess(), alive=True, common_name=f"c{i}",
                                                 vid=0) for i in range(n)}

    def receive(self, packet, addr, now):
        return self.by_addr[addr], [packet]

    def route_packet(self, p):
        return None

    def note_sent(self, rec, now):
        pass


def _copies(d: Disp) -> int:
    return sum(len(r.session.sealed) for r in d.by_addr.values())


def _mcast(k: int) -> bytes:
    udp = struct.pack("!HHHH", 5353, 5353, 12, 0) + b"m%03d" % k
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), k, 0, 1, 17, 0, bytes([198, 19, 0, 2]),
                       bytes([224, 0, 0, 251])) + udp


def _bcast(k: int) -> bytes:
    return b"\xff" * 6 + bytes.fromhex("02000000000a") + struct.pack("!H", 0x0806) + b"b%03d" % k + b"x" * 42


def _flood(dp, d: Disp, pkts: list[bytes], now: float) -> list[bytes]:
    tun: list[bytes] = []
    for p in pkts:
        dp.from_link(p, "c0", now, lambda q: tun.append(bytes(q)), {})
    return tun


def _check(dp, d: Disp, make) -> None:
    over0 = dp.stats[BCAST_OVER_RATE]
    burst = [make(k) for k in range(100)]
    tun = _flood(dp, d, burst, 0.0)
    assert tun == burst, "the server's own device must get every packet of the flood"
    made = _copies(d)
    assert 0 < made <= BCAST_COPY_BURST, f"{made} seals for one client's burst of 100 packets"
    assert made % (N - 1) == 0, "a packet goes to every other client or to none"
    assert d.by_addr["c0"].session.sealed == [], "copied back to its sender"
    assert dp.stats[BCAST_OVER_RATE] - over0 == 100 - made // (N - 1)
    # a second later: at most a second's worth more, whatever the flood
    _flood(dp, d, [make(k) for k in range(100, 200)], 1.0)
    assert _copies(d) - made <= BCAST_COPY_RATE + N


def test_a_tun_clients_multicast_flood_costs_a_bounded_number_of_seals_at_1000_clients():
    d = Disp()
    _check(ServerDataPath(d, lambda cipher, v2: 1300, True), d, _mcast)


def test_a_tap_clients_broadcast_flood_costs_a_bounded_number_of_seals_at_1000_clients():
    d = Disp()
    _check(SwitchDataPath(d, lambda cipher, v2: 1300, True), d, _bcast)


def test_on_a_small_server_the_packet_budget_is_the_one_that_holds():
    """Three clients: each other client still gets one copy of each packet up to BCAST_BURST."""
    d = Disp(3)
    dp = ServerDataPath(d, lambda cipher, v2: 1300, True)
    _flood(dp, d, [_mcast(k % 1000) for k in range(int(BCAST_BURST) + 50)], 0.0)
    assert len(d.by_addr["c1"].session.sealed) == len(d.by_addr["c2"].session.sealed) == BCAST_BURST
    assert dp.stats[BCAST_OVER_RATE] == 50


def test_a_sender_the_server_does_not_hold_at_its_address_gains_no_copy_tokens():
    """(len(by_addr) - 1 is -1 when the sender is not there and nobody else is: no credit.)"""
    from appliance.openvpn.datapath import ReplicationBudget
    b = ReplicationBudget({})
    rec = SimpleNamespace(common_name="c0")
    assert b.allow(rec, 0.0, BCAST_COPY_BURST)
    for _ in range(10):
        b.allow(rec, 0.0, -1)
    assert not b.allow(rec, 0.0, 1), "copy tokens credited by a negative count"


def test_reconnecting_does_not_buy_a_fresh_burst():
    """The client that drained its budget leaves and comes back at once (a new session, a new
    record, the same common name): it goes on with the bucket it left with -- a fresh burst per
    reconnect was ~0.1 s of the loop's seals at 1,000 clients for a ~2 ms handshake. Another
    name, or the same one once its bucket would be full again, starts full."""
    from appliance.openvpn.datapath import BCAST_REFILL
    d = Disp()
    dp = ServerDataPath(d, lambda cipher, v2: 1300, True)
    _flood(dp, d, [_mcast(k) for k in range(100)], 0.0)
    made = _copies(d)
    assert 0 < made <= BCAST_COPY_BURST
    old = d.by_addr["c0"]
    d.on_forget(old)
    d.by_addr["c0"] = SimpleNamespace(addr="c0", session=Sess(), alive=True, common_name="c0", vid=0)
    _flood(dp, d, [_mcast(k) for k in range(100, 200)], 0.0)
    assert _copies(d) == made, "a reconnect bought a fresh burst of copies"
    # another client's name: its own, full budget
    tun: list[bytes] = []
    dp.from_link(_mcast(300), "c1", 0.0, tun.append, {})
    assert _copies(d) == made + N - 1
    # once the bucket it left with would be full again, it is gone: the next session starts full
    d.on_forget(d.by_addr["c0"])
    dp.bcast.allow(d.by_addr["c1"], BCAST_REFILL + 1.0, 0)       # time moves on
    d.on_forget(d.by_addr["c2"])
    assert "c0" not in dp.bcast.left
