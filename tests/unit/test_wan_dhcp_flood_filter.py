"""The WAN DHCP client against a flood of replies for its own transaction
(appliance/boot/dhcp_client.py: only_ours, Transaction). The CI machine lost a boot's whole first
round this way: an OFFER read, its ACK dropped by the kernel behind ~9,000 unusable offers, then
four more tries lost behind the first try's flood, still queued. Here: the kernel filter really
keeps a refused source out and lets others in (a UDP socket on loopback), a transaction begins with
an empty queue, and a source of unusable replies is refused after BLOCK_AFTER of them, so the
server's reply behind its flood is read at once. The wire side is tests/interop/test_wan_dhcp_client.py."""
from __future__ import annotations

import socket

import pytest

from appliance.boot import dhcp_client as dc
from appliance.boot.dhcp_client import ACK, NAK, OFFER, Drops

from tests.unit.test_wan_dhcp_choice import MAC, ROGUE, SERVER, XID, FakeSocket, reply


def unusable(kind: int = OFFER) -> bytes:
    """An offer the checks refuse (a non-contiguous netmask), as the interop test's rogue sends."""
    d = reply(kind, "198.18.60.77", ROGUE)
    assert d.count(b"\x01\x04\xff\xff\xff\x00") == 1
    return d.replace(b"\x01\x04\xff\xff\xff\x00", b"\x01\x04\xff\x00\xff\x00")


@pytest.fixture
def loop():
    """A receiving UDP socket on 127.0.0.1 and senders from 127.0.0.2, 127.0.0.3 and 127.0.0.2
    again (another port)."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    senders = []
    for a in ("127.0.0.2", "127.0.0.3", "127.0.0.2"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((a, 0))
        senders.append(s)
    yield rx, senders
    for s in [rx, *senders]:
        s.close()


def _received(rx: socket.socket) -> list[tuple[bytes, str]]:
    got = []
    rx.settimeout(0.2)
    for _ in range(1000):
        try:
            data, (src, _port) = rx.recvfrom(4096)
        except (socket.timeout, TimeoutError):
            break
        got.append((data, src))
    return got


def test_the_kernel_filter_refuses_the_refused_sources_and_another_transaction(loop):
    """A source is an address and a port: a rogue beside the server shares its address."""
    rx, (a, b, a2) = loop
    assert dc.only_ours(rx, XID, MAC, [a.getsockname(), ("127.0.0.9", a2.getsockname()[1])])
    dest = rx.getsockname()
    a.sendto(reply(OFFER, "198.18.60.10", SERVER), dest)              # refused source
    b.sendto(reply(OFFER, "198.18.60.11", SERVER), dest)              # taken
    b.sendto(reply(OFFER, "198.18.60.12", SERVER, xid=XID + 1), dest)  # another transaction
    a2.sendto(reply(OFFER, "198.18.60.13", SERVER), dest)             # a's address, another port: taken
    got = _received(rx)
    assert [(socket.inet_ntoa(d[16:20]), src) for d, src in got] == [("198.18.60.11", "127.0.0.3"),
                                                                     ("198.18.60.13", "127.0.0.2")]
    assert dc.only_ours(rx, XID, MAC)                                  # no source refused: both in
    a.sendto(reply(OFFER, "198.18.60.10", SERVER), dest)
    b.sendto(reply(OFFER, "198.18.60.11", SERVER), dest)
    assert sorted(src for _d, src in _received(rx)) == ["127.0.0.2", "127.0.0.3"]


def test_a_transaction_begins_with_what_the_last_one_left_queued_discarded(loop):
    rx, (a, _b, _a2) = loop
    dest = rx.getsockname()
    for _ in range(100):                                               # fits the default queue
        a.sendto(unusable(), dest)                                     # the last try's flood, queued
    drops = Drops("wan0")
    tx = dc.Transaction(rx, XID + 7, MAC, drops)
    tx.begin()
    assert drops.counts == {"another transaction": 100}
    a.sendto(reply(OFFER, "198.18.60.10", SERVER, xid=XID + 7), dest)
    got = dc._wait(tx, {OFFER}, 2.0)
    assert got is not None and got[1].address == "198.18.60.10"
    assert drops.counts == {"another transaction": 100}


def test_a_source_of_unusable_replies_is_refused_and_the_servers_reply_behind_it_read(loop):
    """The ACK wait of the CI run: offers (unexpected now) flood from the rogue, the server's ACK
    comes behind them. After BLOCK_AFTER the rogue is refused by the kernel; what it had queued is
    skipped unparsed, the ACK read, however much the rogue sends after."""
    rx, (rogue, server, _a2) = loop
    dest = rx.getsockname()
    drops = Drops("wan0")
    tx = dc.Transaction(rx, XID, MAC, drops)
    tx.begin()
    for _ in range(dc.BLOCK_AFTER):
        rogue.sendto(reply(OFFER, "198.18.60.77", ROGUE), dest)
    got = dc._wait(tx, {ACK}, 0.3)                                     # four read, the fourth refuses
    assert got is None and tx.refused == [rogue.getsockname()]
    for _ in range(500):
        rogue.sendto(reply(OFFER, "198.18.60.77", ROGUE), dest)        # kept out by the kernel
    server.sendto(reply(ACK, "198.18.60.10", SERVER), dest)
    got = dc._wait(tx, {ACK}, 2.0)
    assert got is not None and got[1].address == "198.18.60.10"
    assert drops.counts["unexpected message type"] == dc.BLOCK_AFTER
    assert drops.counts["flood: source refused"] == 1                 # the refusal; nothing more read


def _begun(s: FakeSocket, drops: Drops) -> dc.Transaction:
    """A transaction begun on the fake socket (nothing queued before it to discard)."""
    s.recv_into = lambda *_a: (_ for _ in ()).throw(BlockingIOError())
    s.setblocking = lambda _b: None
    tx = dc.Transaction(s, XID, MAC, drops)
    tx.begin()
    return tx


def test_what_a_refused_source_had_queued_is_skipped_not_paced():
    """Already queued when the filter changed: read without parsing and outside the pacing, so
    thousands of them do not stand between the server's reply and the reading."""
    flood = [(unusable(), ROGUE)] * 5000
    s = FakeSocket(flood + [reply(OFFER, "198.18.60.10", SERVER)])
    drops = Drops("wan0")
    tx = _begun(s, drops)
    got = dc._wait(tx, {OFFER}, 5.0)
    assert got is not None and got[1].address == "198.18.60.10"
    assert tx.refused == [(ROGUE, 67)] and drops.counts["bad netmask"] == dc.BLOCK_AFTER
    assert drops.counts["flood: source refused"] == 1 + 5000 - dc.BLOCK_AFTER
    assert "flood: reading paced" not in drops.counts


def test_a_rogue_changing_its_source_is_read_paced_and_its_counters_bounded():
    """No source sends BLOCK_AFTER: nothing refused, the reading paced as before; the per-source
    counters stop at PER_SOURCE_TRACKED."""
    flood = [(unusable(), f"198.18.{100 + i // 250}.{1 + i % 250}") for i in range(2000)]
    s = FakeSocket(flood + [reply(OFFER, "198.18.60.10", SERVER)])
    drops = Drops("wan0")
    tx = _begun(s, drops)
    got = dc._wait(tx, {OFFER}, 30.0)
    assert got is not None and got[1].address == "198.18.60.10"
    assert tx.refused == [] and len(tx._unusable) == dc.PER_SOURCE_TRACKED
    assert drops.counts["flood: reading paced"] == 1 and drops.counts["bad netmask"] == 2000


def test_at_most_max_blocked_sources_are_refused():
    flood = [(unusable(), f"198.18.100.{1 + i % 20}") for i in range(20 * dc.BLOCK_AFTER)]
    s = FakeSocket(flood)
    tx = _begun(s, Drops("wan0"))
    assert dc._wait(tx, {OFFER}, 5.0) is None
    assert len(tx.refused) == dc.MAX_BLOCKED and s.filters == 1 + dc.MAX_BLOCKED


def test_junk_in_the_servers_name_does_not_refuse_the_server_a_nak_cannot_beat_its_ack():
    """A rogue on the segment sees our broadcast REQUEST and its xid: BLOCK_AFTER junk replies
    with the server's own source (address and port 67) refused the server for the transaction,
    so the ACK that follows a forged NAK (the NAK names the server: anyone can) was skipped and
    the NAK won -- the lease dropped by four datagrams, each time. The server we asked is never
    refused: its junk-sender must flood to keep the queue full, as without the filter."""
    junk = [(unusable(ACK), SERVER)] * (2 * dc.BLOCK_AFTER)
    s = FakeSocket(junk + [(reply(NAK, "0.0.0.0", SERVER), ROGUE), (reply(ACK, "198.18.60.10", SERVER), SERVER)])
    drops = Drops("wan0")
    tx = _begun(s, drops)
    got = dc._wait(tx, {ACK, NAK}, 5.0, server=SERVER)
    assert got is not None and got[1] is not None and got[1].address == "198.18.60.10"
    assert tx.refused == [] and "flood: source refused" not in drops.counts


def test_the_leases_server_is_not_refused_while_offers_are_awaited():
    """INIT while a lease holds (or after a NAK): only the held address is taken, offered by the
    lease's server; junk in its name must not keep that offer out either."""
    junk = [(unusable(), SERVER)] * (2 * dc.BLOCK_AFTER)
    s = FakeSocket(junk + [(reply(OFFER, "198.18.60.10", SERVER), SERVER)])
    drops = Drops("wan0")
    tx = _begun(s, drops)
    tx.spare(SERVER)
    got = dc._wait(tx, {OFFER}, 5.0, keep=("198.18.60.10", 24))
    assert got is not None and got[1].address == "198.18.60.10" and tx.refused == []
