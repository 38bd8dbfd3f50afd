"""Multicast through a tun server (appliance/openvpn/datapath.py: is_multicast, ReplicationBudget,
seal_shares; mcast38), fuzz38.

`mcast-tun`: a tun server (tls-crypt, a /29 pool, one iroute) with four established clients,
client-to-client on or off (bit 0 of the first byte: two worlds, each kept across inputs), and
a script of inner packets split at `\\xfe\\xfd`. Each step's first byte: low 3 bits the source
(0, 5-7: the TUN; 1-4: client 1-4 seals it), bits 3-4 the destination (0: as fuzzed; 1: the
IPv4 group 224.0.0.5 / IPv6 ff02::5; 2: client (step[1] % 4)'s address; 3: the iroute), bit 5
the source address kept as fuzzed (else the sending client's own), bit 6 one second passes, bit
7 the packet sent 32 times at once (a burst past the budget's 400 within one input). What the
server seals is opened by the clients.

Oracles, per packet (what 2.6's multi.c does): from the TUN, a multicast (is_multicast restated:
IPv4 224.0.0.0/4 with 20 header bytes, IPv6 ff00::/8 with 40) reaches every client exactly once,
and with no client at all counts "no route"; a unicast reaches exactly the client route_packet
names (its address or iroute), nobody else, or counts "no route". From a client, a packet the
dispatcher takes goes to the TUN once and, with client-to-client: a multicast also once to
each other client and never back to the sender -- or to none of them with "broadcast over
rate" counted one more (ReplicationBudget) --, a unicast for another client to that client
instead of the TUN; without client-to-client nothing to any client. No sealing fails, nothing
escapes, and the timers record no internal error.
"""
from __future__ import annotations

import ipaddress

from . import targets as T

SEP = b"\xfe\xfd"
ADDRS = [("198.18.7.1", 40001), ("198.18.7.2", 40002), ("198.18.7.3", 40003), ("198.18.7.4", 40004)]


def _mcast(p) -> bool:
    n = len(p)
    if n < 20:
        return False
    v = p[0] >> 4
    return (v == 4 and p[16] >> 4 == 0xE) or (v == 6 and n >= 40 and p[24] == 0xFF)


def _world(c2c: bool):
    from appliance.openvpn.datapath import ServerDataPath
    d = T._dispatcher("tls-crypt")
    d.st.client_to_client = c2c
    d.st.duplicate_cn = True
    d.st.max_routes_per_client = 8
    clients = T.established_clients(d, ADDRS, f"mcast-{int(c2c)}")
    rec = d.by_addr[ADDRS[0]]
    rec.iroutes = [ipaddress.IPv4Network("198.18.200.0/24")]
    d.iroutes.add(rec.iroutes[0], rec)
    return ServerDataPath(d, lambda cipher, v2: 1400, c2c), clients


def make_mcast_tun():
    from appliance.openvpn.datapath import BCAST_OVER_RATE
    states = {False: {}, True: {}}
    worlds = {c2c: T.living_world(states[c2c], lambda c2c=c2c: _world(c2c), len(ADDRS)) for c2c in (False, True)}

    def one(data: bytes) -> None:
        if len(data) < 2:
            return
        c2c = bool(data[0] & 1)
        state = states[c2c]
        dp, clients = worlds[c2c]()
        d = dp.d
        for step in data[1:].split(SEP)[:32]:
            if len(step) < 2:
                continue
            sel, pkt = step[0], bytearray(step[1:])
            if sel & 64:
                state["t"] += 1.0
            now = state["t"]
            recs = [d.by_addr.get(a) for _c, a in clients]
            src = sel & 7
            dst = (sel >> 3) & 3
            if len(pkt) >= 20:
                v6 = pkt[0] >> 4 == 6 and len(pkt) >= 40
                if dst == 1:
                    if v6:
                        pkt[24:40] = bytes.fromhex("ff020000000000000000000000000005")
                    else:
                        pkt[16:20] = bytes((224, 0, 0, 5))
                elif dst == 2 and not v6:
                    r = recs[pkt[0] % 4]
                    if r is not None and r.vaddr_packed:
                        pkt[16:20] = r.vaddr_packed
                elif dst == 3 and not v6:
                    pkt[16:20] = bytes((198, 18, 200, pkt[-1]))
                if 1 <= src <= 4 and not sel & 32 and not v6:
                    r = recs[src - 1]
                    if r is not None and r.vaddr_packed:
                        pkt[12:16] = r.vaddr_packed
            pkt = bytes(pkt)
            for _ in range(32 if sel & 128 else 1):
                _one_packet(dp, clients, recs, src, pkt, now, BCAST_OVER_RATE)
        T.settle(state, d, clients, 0.0)
    return one


def _opened(clients, sends: dict, now: float) -> list[list[bytes]]:
    """What each client opens of what the server sealed for it."""
    got: list[list[bytes]] = []
    for c, a in clients:
        pts = []
        for w in sends.pop(a, []):
            pts += [bytes(p) for p in c.receive(bytes(w), now)]
        got.append(pts)
    assert not sends, f"sealed for an address that is no client's: {list(sends)}"
    return got


def _one_packet(dp, clients, recs, src, pkt: bytes, now: float, over_key: str) -> None:
    d = dp.d
    live = [r is not None and r.alive and r.session.established for r in recs]
    sends: dict = {}
    no_route, over = dp.stats["no route"], dp.stats[over_key]
    if not 1 <= src <= 4:
        want = d.route_packet(pkt) if len(pkt) >= 20 and not _mcast(pkt) else None
        dp.from_tun([pkt], now, sends)
        got = _opened(clients, sends, now)
        if len(pkt) < 20:
            assert not any(got), "a runt from the TUN reached a client"
        elif _mcast(pkt):
            for i, g in enumerate(got):
                assert len(g) == (1 if live[i] else 0), f"TUN multicast: client {i} got {len(g)} copies"
            assert dp.stats["no route"] == no_route + (0 if any(live) else 1)
        else:
            for i, g in enumerate(got):
                mine = want is not None and want is recs[i] and live[i]
                assert len(g) == (1 if mine else 0), f"TUN unicast: client {i} got {len(g)} (route: {want})"
            if want is None or not want.session.established:
                assert dp.stats["no route"] == no_route + 1
    else:
        k = src - 1
        c, a = clients[k]
        if c.closed or not c.established:
            return
        wire = c.encrypt(pkt)
        if wire is None:
            return
        tun: list[bytes] = []
        dp.from_link(bytes(wire), a, now, lambda p: tun.append(bytes(p)), sends)
        got = _opened(clients, sends, now)
        assert not got[k], "a client's packet came back to it"
        if not tun and not any(got):
            return                                  # the dispatcher did not take it (a spoofed source, a runt)
        copies = sum(1 for g in got if g)
        assert all(len(g) <= 1 for g in got), "a client got a packet twice"
        if not dp.c2c:
            assert len(tun) == 1 and copies == 0, f"without client-to-client: TUN {len(tun)}, clients {copies}"
        elif _mcast(tun[0] if tun else pkt):
            others = sum(1 for i in range(len(clients)) if i != k and live[i])
            assert len(tun) == 1, f"a client's multicast written {len(tun)} times to the TUN"
            if dp.stats[over_key] == over + 1:
                assert copies == 0, "copies made over the budget"
            else:
                assert dp.stats[over_key] == over and copies == others, \
                    f"a client's multicast reached {copies} of {others} other clients"
        else:
            other = d.route_packet(pkt)
            if other is not None and other is not recs[k] and live[recs.index(other)] if other in recs else False:
                assert copies == 1 and not tun and got[recs.index(other)], "client-to-client unicast misrouted"
            else:
                assert copies == 0 and len(tun) == 1, f"a unicast for no other client: TUN {len(tun)}, clients {copies}"
    if dp.failed:
        raise RuntimeError(f"sealing raised: {dp.failed!r}")


def _ip4(src: str, dst: str, payload: bytes = b"\x00" * 8, proto: int = 17) -> bytes:
    n = 20 + len(payload)
    return (bytes((0x45, 0)) + n.to_bytes(2, "big") + bytes(4) + bytes((64, proto, 0, 0))
            + ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + payload)


def _ip6(src: str, dst: str) -> bytes:
    return (bytes((0x60, 0, 0, 0, 0, 8, 17, 64)) + ipaddress.IPv6Address(src).packed
            + ipaddress.IPv6Address(dst).packed + bytes(8))


def seeds() -> list[bytes]:
    m4 = _ip4("198.19.0.2", "224.0.0.5", proto=89)
    u4 = _ip4("198.19.0.2", "198.19.0.3")
    m6 = _ip6("fe80::1", "ff02::fb")
    out = []
    for c2c in (0, 1):
        out += [
            bytes((c2c,)) + SEP.join([bytes((0,)) + m4, bytes((1,)) + m4, bytes((2 | 8,)) + m4]),
            bytes((c2c,)) + SEP.join([bytes((0 | 16,)) + u4, bytes((1 | 16,)) + u4, bytes((3 | 24,)) + u4]),
            bytes((c2c,)) + SEP.join([bytes((0,)) + m6, bytes((4 | 32,)) + m6, bytes((0,)) + m6[:30]]),
            bytes((c2c,)) + SEP.join([bytes((1 | 128 | 8,)) + m4] * 30 + [bytes((1 | 64 | 8,)) + m4]),   # the budget
            bytes((c2c,)) + SEP.join([bytes((2 | 32,)) + m4, bytes((0,)) + m4[:19], bytes((5,)) + b"\x45" * 19]),
        ]
    return out
