"""Which reply the WAN DHCP client takes after a NAK (appliance/boot/dhcp_client.py: _choose_offer,
_wait), from datagrams fed through a fake socket: the held address from anyone, else the lease's
server's new address, else the NAK's server's, else the first; a flood cannot displace them;
a NAK without a server id does not count while RENEWING. The wire side is the interop file's
(tests/interop/test_wan_dhcp_client.py)."""
from __future__ import annotations

import socket

from appliance.boot import dhcp_client as dc
from appliance.boot.dhcp_client import ACK, NAK, OFFER, Drops, Offer

MAC = b"\x52\x54\0\0\0\1"
XID = 0x1234
HELD = ("198.18.60.10", 24)
SERVER, ROGUE = "198.18.60.1", "198.18.60.66"


def reply(kind: int, yiaddr: str, sid: str | None, router: str | None = None, xid: int = XID) -> bytes:
    """A BOOTREPLY for our transaction and MAC."""
    body = bytearray(dc.build_message(kind, xid, MAC)[:240])
    body[0] = 2
    body[16:20] = socket.inet_aton(yiaddr)
    opts = bytes([53, 1, kind])
    if sid is not None:
        opts += bytes([54, 4]) + socket.inet_aton(sid)
    if kind != NAK:
        net = yiaddr.rsplit(".", 1)[0]
        opts += bytes([1, 4, 255, 255, 255, 0, 3, 4]) + socket.inet_aton(router or f"{net}.1")
        opts += bytes([51, 4, 0, 0, 2, 88])
    return bytes(body) + opts + b"\xff"


class FakeSocket:
    """What _replies reads: the datagrams in order (each from SERVER, or from the source given
    with it as a (datagram, source) pair), then the timeout; the filters attached, counted."""

    def __init__(self, datagrams: list) -> None:
        self.datagrams = [d if isinstance(d, tuple) else (d, SERVER) for d in datagrams]
        self.read = 0
        self.filters = 0

    def settimeout(self, _t: float) -> None:
        pass

    def setsockopt(self, *_args) -> None:
        self.filters += 1

    def recvfrom(self, _n: int) -> tuple[bytes, tuple[str, int]]:
        if not self.datagrams:
            raise socket.timeout()
        self.read += 1
        data, source = self.datagrams.pop(0)
        return data, (source, 67)


def tx(s: FakeSocket, drops: Drops | None = None) -> dc.Transaction:
    return dc.Transaction(s, XID, MAC, drops or Drops("wan0"))


def choose(datagrams: list[bytes], held_server: str | None = SERVER,
           nak_server: str | None = None) -> tuple[Offer | None, Drops, FakeSocket]:
    drops = Drops("wan0")
    s = FakeSocket(datagrams)
    return dc._choose_offer(tx(s, drops), 5.0, (), HELD, held_server, nak_server), drops, s


def test_the_held_address_is_taken_from_anyone_and_ends_the_wait():
    """A forged NAK: the real server offers the same address again; a rogue's faster offer of
    another address does not win (before this work the held address was the only one taken
    anyway, but only until the lease ran out)."""
    got, drops, s = choose([reply(OFFER, "198.18.60.77", ROGUE), reply(OFFER, "198.18.60.10", SERVER),
                            reply(OFFER, "198.18.60.20", SERVER)])
    assert got is not None and got.address == "198.18.60.10" and got.server == SERVER
    assert s.read == 2 and drops.counts == {"another address while the lease holds": 1}


def test_the_lease_servers_new_address_is_taken_at_the_end_of_the_wait():
    """The ISP renumbered: its server offers a new network. Taken, though a rogue offered first;
    and only at the end of the wait, in case the held address is offered after it."""
    got, drops, s = choose([reply(OFFER, "198.18.60.77", ROGUE), reply(OFFER, "198.18.61.20", SERVER),
                            reply(OFFER, "198.18.61.21", SERVER)])
    assert got is not None and (got.address, got.router, got.server) == ("198.18.61.20", "198.18.61.1", SERVER)
    assert s.read == 3 and drops.counts == {"another address while the lease holds": 2}
    got, _drops, _s = choose([reply(OFFER, "198.18.61.20", SERVER), reply(OFFER, "198.18.60.10", ROGUE)])
    assert got is not None and got.address == "198.18.60.10"         # the held address, even offered later


def test_without_the_held_address_or_the_servers_the_naks_server_then_the_first_offer_is_taken():
    """A renumbered segment's server may answer from a new address (dnsmasq's server id is its
    address on the new subnet): the NAK's server's offer, else the first (RFC 2131's INIT)."""
    got, drops, _s = choose([reply(OFFER, "198.18.60.77", ROGUE), reply(OFFER, "198.18.61.20", "198.18.61.1")],
                            nak_server="198.18.61.1")
    assert got is not None and got.address == "198.18.61.20"
    assert drops.counts == {"another address while the lease holds": 1}
    got, _drops, _s = choose([reply(OFFER, "198.18.60.77", ROGUE), reply(OFFER, "198.18.61.20", "198.18.61.1")])
    assert got is not None and got.address == "198.18.60.77"
    got, _drops, _s = choose([])
    assert got is None


def test_a_flood_of_offers_does_not_displace_the_servers_offer():
    """An xid flood (our DISCOVER is broadcast): thousands of usable offers of other addresses,
    from ever new server ids and in the server's own name, around the server's offer. The choice
    keeps two slots: the server's first offer stays the one taken, however much follows."""
    flood = [reply(OFFER, f"198.18.{62 + i % 50}.{2 + i % 200}", f"198.18.70.{1 + i % 250}") for i in range(2000)]
    spoofed = [reply(OFFER, "198.18.63.9", SERVER, router="198.18.63.66")] * 500
    got, drops, s = choose(flood[:1000] + [reply(OFFER, "198.18.61.20", SERVER)] + spoofed + flood[1000:])
    assert got is not None and got.address == "198.18.61.20"
    assert s.read == 2501 and drops.counts["another address while the lease holds"] == 2500


def test_a_nak_without_a_server_id_does_not_count_while_renewing():
    """RENEWING asks the lease's server: its NAK names it (RFC 2131 4.3.2). One without a server
    id could be anyone's and no longer ends the wait in a NAK (a round of DISCOVERs now)."""
    drops = Drops("wan0")
    got = dc._wait(tx(FakeSocket([reply(NAK, "0.0.0.0", None)]), drops), {ACK, NAK}, 5.0, (), SERVER, HELD)
    assert got is None and drops.counts == {"NAK without server id": 1}
    got = dc._wait(tx(FakeSocket([reply(NAK, "0.0.0.0", SERVER)])), {ACK, NAK}, 5.0, (), SERVER, HELD)
    assert got is not None and got[1] is None and got[0].kind == NAK
    got = dc._wait(tx(FakeSocket([reply(NAK, "0.0.0.0", None)])), {ACK, NAK}, 5.0, (), None, HELD)
    assert got is not None and got[1] is None                # REBINDING: any server may NAK


def test_the_dhcp_socket_queue_holds_thousands_of_datagrams():
    """A flood of answers to our broadcast transaction must not fill the queue before the real
    server's OFFER arrives (tests/interop/test_wan_dhcp_client.py measures it): 4 MB, or as
    much as rmem_max allows without CAP_NET_ADMIN (the kernel reports twice what was set)."""
    with open("/proc/sys/net/core/rmem_max") as f:
        rmem_max = int(f.read())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        dc._big_queue(s)
        assert s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 2 * min(dc.RECV_QUEUE, rmem_max)

