"""The server's download path (ServerDataPath.from_tun) seals each client's share of a TUN batch in
one Session.encrypt_many call: three clients receiving interleaved downloads get every packet once,
in their TUN order, under strictly increasing packet ids; the per-packet rules (route lookup with
iroutes, MSS clamp, the renegotiation trigger, no-route counts) hold, and a client whose sealing
raises is reported once while the others get theirs. On both AEAD paths (tests/aead_paths.py)."""
from __future__ import annotations

import ipaddress
import random
import struct

import pytest

from appliance.openvpn import wrapping
from appliance.openvpn.datapath import ServerDataPath
from tests.aead_paths import aead_path  # noqa: F401 - the fixture
from tests.engine.test_server_dispatcher import _client, _pump, _server, _up, pki  # noqa: F401 - pki is a fixture

pytestmark = pytest.mark.usefixtures("aead_path")

DATA_PID_RENEG_AT = 0xFF000000          # OpenVPN's PACKET_ID_WRAP_TRIGGER
IROUTE = "198.18.200.0/24"              # behind client 0


def _world(pki):  # noqa: F811
    d = _server(pki, protection="none")
    clients = [(_client(pki, pki["clients"][i], wrapping.PlainWrapper), ("198.18.0.%d" % (i + 2), 40000))
               for i in range(3)]
    _pump(d, clients)
    assert all(_up(c) for c, _ in clients)
    rec0 = d.by_addr[clients[0][1]]
    rec0.iroutes = [ipaddress.IPv4Network(IROUTE)]
    d.iroutes.add(rec0.iroutes[0], rec0)
    return d, clients, ServerDataPath(d, lambda cipher, v2: 1400, True)


def _packet(dst: str, n: int, size: int) -> bytes:
    """An IPv4 UDP packet to `dst` whose payload carries its sequence number `n`."""
    body = struct.pack("!I", n) + bytes([n & 255]) * (size - 32)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(body), n & 0xFFFF, 0, 64, 17, 0,
                       bytes([198, 19, 0, 1]), ipaddress.IPv4Address(dst).packed) + \
        struct.pack("!HHHH", 5000, 6000, 8 + len(body), 0) + body


def _syn(dst: str, mss: int) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 44, 0, 0, 64, 6, 0, bytes([198, 19, 0, 1]),
                     ipaddress.IPv4Address(dst).packed)
    return ip + struct.pack("!HHIIBBHHH", 80, 1234, 0, 0, 6 << 4, 0x02, 65535, 0, 0) + struct.pack("!BBH", 2, 4, mss)


def _pid(rec, w: bytes) -> int:
    hl = rec.session.send_key.hlen
    return struct.unpack("!I", w[hl:hl + 4])[0]


def test_three_clients_get_interleaved_downloads_once_in_order_under_rising_ids(pki):  # noqa: F811
    d, clients, dp = _world(pki)
    recs = [d.by_addr[a] for _c, a in clients]
    dsts = [[r.vaddr] for r in recs]
    dsts[0].append("198.18.200.9")                          # client 0's iroute
    rnd = random.Random(36)
    sent: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
    got: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
    last = {0: -1, 1: -1, 2: -1}
    seq = 0
    for batch_no in range(8):
        batch = []
        for _ in range(rnd.randrange(1, 64)):
            i = rnd.randrange(4)
            if i == 3:
                batch.append(_packet("198.18.77.1", seq, 100))      # nobody's: counted
            else:
                p = _packet(rnd.choice(dsts[i]), seq, rnd.randrange(60, 1400))
                sent[i].append(p)
                batch.append(bytearray(p) if seq % 2 else p)        # TUN buffers are writable
            seq += 1
        sends: dict = {}
        dp.from_tun(batch, 1.0 + batch_no, sends)
        assert dp.failed == []
        assert set(sends) <= {a for _c, a in clients}
        for i, (c, a) in enumerate(clients):
            for w in sends.get(a, []):
                pid = _pid(recs[i], w)
                assert pid > last[i], f"client {i}: packet id {pid} after {last[i]}"
                last[i] = pid
                got[i] += [bytes(x) for x in c.receive(bytes(w), 1.0 + batch_no)]
    for i in range(3):
        assert sent[i] and got[i] == sent[i], f"client {i}: not every packet once, in order"
    assert dp.stats["no route"] == seq - sum(map(len, sent.values()))


def test_each_clients_share_is_sealed_in_one_call_and_clamped(pki, monkeypatch):  # noqa: F811
    d, clients, dp = _world(pki)
    recs = [d.by_addr[a] for _c, a in clients]
    calls = []
    for r in recs:
        real = r.session.encrypt_many
        monkeypatch.setattr(r.session, "encrypt_many", lambda ps, _r=real, _n=r.vaddr: calls.append(_n) or _r(ps))
    batch = [_packet(recs[i % 3].vaddr, i, 200) for i in range(30)] + [bytearray(_syn(recs[1].vaddr, 1460))]
    sends: dict = {}
    dp.from_tun(batch, 1.0, sends)
    assert sorted(calls) == sorted(r.vaddr for r in recs), "one seal call per client"
    c1, a1 = clients[1]
    opened = [bytes(x) for w in sends[a1] for x in c1.receive(bytes(w), 1.0)]
    assert len(opened) == 11
    assert struct.unpack("!H", opened[-1][20 + 22:20 + 24])[0] == 1400     # the SYN's MSS clamped


def test_a_share_crossing_the_renegotiation_trigger_arrives_and_starts_a_new_key(pki):  # noqa: F811
    d, clients, dp = _world(pki)
    rec = d.by_addr[clients[2][1]]
    rec.session.send_key.send_pid = DATA_PID_RENEG_AT - 3
    sends: dict = {}
    dp.from_tun([_packet(rec.vaddr, i, 300) for i in range(6)], 1.0, sends)
    c2, a2 = clients[2]
    assert len([x for w in sends[a2] for x in c2.receive(bytes(w), 1.0)]) == 6
    assert rec.session.send_key.send_pid == DATA_PID_RENEG_AT + 3
    assert rec.session.next_deadline() <= 1.0 or rec.session.out, "the trigger was seen"
    _pump(d, clients, now=2.0)
    for _ in range(5):
        d.handle_timer(2.0)
        _pump(d, clients, now=2.0)
    assert rec.session.send_key.key_id == 1 and c2.send_key.key_id == 1


def test_a_client_whose_sealing_raises_is_reported_once_and_the_others_get_theirs(pki, monkeypatch):  # noqa: F811
    d, clients, dp = _world(pki)
    recs = [d.by_addr[a] for _c, a in clients]

    def boom(_payloads):
        raise RuntimeError("seal broke")
    monkeypatch.setattr(recs[1].session, "encrypt_many", boom)
    sends: dict = {}
    dp.from_tun([_packet(recs[i % 3].vaddr, i, 200) for i in range(9)], 1.0, sends)
    assert [r for r, _e in dp.failed] == [recs[1]]
    assert clients[1][1] not in sends
    for i in (0, 2):
        c, a = clients[i]
        assert len([x for w in sends[a] for x in c.receive(bytes(w), 1.0)]) == 3
