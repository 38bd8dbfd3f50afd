"""DHCP messages: what we send parses as a DHCP request; hostile replies never raise."""
import socket
import time
import struct

import pytest
from hypothesis import given, strategies as st

from appliance.boot.dhcp_client import ACK, DISCOVER, MAGIC, REQUEST, build_message, parse_reply_untrusted

MAC = bytes.fromhex("525400000001")


def test_discover_and_request_layout():
    d = build_message(DISCOVER, 0x1234, MAC)
    assert d[0] == 1 and struct.unpack_from("!I", d, 4)[0] == 0x1234 and d[28:34] == MAC
    assert d[236:240] == MAGIC and d[240:243] == bytes([53, 1, DISCOVER])
    r = build_message(REQUEST, 7, MAC, "198.18.0.50", "198.18.0.1")
    assert bytes([50, 4]) + socket.inet_aton("198.18.0.50") in r
    assert bytes([54, 4]) + socket.inet_aton("198.18.0.1") in r


def _reply(kind, xid, yiaddr, extra=b""):
    body = bytearray(build_message(kind, xid, MAC)[:240])
    body[0] = 2
    body[16:20] = socket.inet_aton(yiaddr)
    return bytes(body) + bytes([53, 1, kind, 1, 4]) + socket.inet_aton("255.255.255.0") + extra + b"\xff"


def test_parse_ack():
    r = parse_reply_untrusted(_reply(ACK, 9, "198.18.0.55", bytes([3, 4, 198, 18, 0, 1])))
    assert r.kind == ACK and r.xid == 9 and r.yiaddr == "198.18.0.55" and r.options[3] == bytes([198, 18, 0, 1])


@given(st.binary(max_size=400))
def test_hostile_replies_never_raise(data):
    parse_reply_untrusted(data)
    parse_reply_untrusted(_reply(ACK, 1, "198.18.0.9")[:240] + data)


# ---------------------------------------------------------------- the WAN client's checks
from appliance.boot.dhcp_client import MAX_RENEW, MIN_RENEW, Offer, check_reply_untrusted, renew_after  # noqa: E402


def _ack(yiaddr="198.18.0.55", mask="255.255.255.0", router: str | None = "198.18.0.1", extra=b""):
    opts = bytes([54, 4]) + socket.inet_aton("198.18.0.1") + extra
    if router is not None:
        opts += bytes([3, 4]) + socket.inet_aton(router)
    body = bytearray(build_message(ACK, 9, MAC)[:240])
    body[0] = 2
    body[16:20] = socket.inet_aton(yiaddr)
    m = bytes([1, 4]) + socket.inet_aton(mask) if mask is not None else b""
    return parse_reply_untrusted(bytes(body) + bytes([53, 1, ACK]) + m + opts + b"\xff")


def test_a_usable_ack_is_taken_as_sent():
    o = check_reply_untrusted(_ack(extra=bytes([6, 8, 198, 18, 0, 53, 0, 0, 0, 0, 51, 4, 0, 0, 2, 88])))
    assert o == Offer("198.18.0.55", 24, "198.18.0.1", ("198.18.0.53",), "198.18.0.1", 600)
    assert check_reply_untrusted(_ack(mask=None)).prefixlen == 24          # no option 1: /24, as always
    assert check_reply_untrusted(_ack(router=None)).router is None
    assert check_reply_untrusted(_ack("198.18.0.1", "255.255.255.254", "198.18.0.0")).prefixlen == 31


@pytest.mark.parametrize("yiaddr, mask, router, why", [
    ("198.18.0.55", "255.0.255.0", "198.18.0.1", "bad netmask"),        # not contiguous: raised before
    ("198.18.0.55", "0.0.0.0", "198.18.0.1", "bad netmask"),            # /0: every address on the WAN link
    ("0.0.0.0", "255.255.255.0", None, "unusable address"),
    ("255.255.255.255", "255.255.255.0", None, "unusable address"),
    ("224.0.0.1", "255.255.255.0", None, "unusable address"),
    ("127.0.0.1", "255.0.0.0", None, "unusable address"),
    ("169.254.1.1", "255.255.0.0", None, "unusable address"),
    ("198.18.0.255", "255.255.255.0", None, "unusable address"),       # the subnet's broadcast
    ("198.18.0.0", "255.255.255.0", None, "unusable address"),         # ... and network address
    ("198.18.0.55", "255.255.255.0", "198.18.0.55", "bad router"),      # ourselves
    ("198.18.0.55", "255.255.255.0", "0.0.0.0", "bad router"),
    ("198.18.0.55", "255.255.255.0", "255.255.255.255", "bad router"),
    ("198.18.0.55", "255.255.255.0", "198.18.0.255", "bad router"),
    ("198.18.0.55", "255.255.255.0", "198.18.9.1", "bad router"),      # not on the link: no route to it
])
def test_an_ack_that_cannot_be_applied_is_dropped_with_its_reason(yiaddr, mask, router, why):
    assert check_reply_untrusted(_ack(yiaddr, mask, router)) == why


def test_dns_servers_that_are_not_unicast_are_left_out():
    raw = b"".join(socket.inet_aton(a) for a in ("0.0.0.0", "255.255.255.255", "127.0.0.1", "198.18.0.53"))
    o = check_reply_untrusted(_ack(extra=bytes([6, len(raw)]) + raw + bytes([6, 3, 1, 2, 3])))
    assert isinstance(o, Offer) and o.dns == ("198.18.0.53",)


@pytest.mark.parametrize("lease, renew", [(0, MIN_RENEW), (1, MIN_RENEW), (600, 300), (0xFFFFFFFF, MAX_RENEW)])
def test_renewal_time_is_bounded(lease, renew):
    assert renew_after(lease) == renew


@given(st.binary(max_size=400))
def test_the_checks_never_raise(data):
    r = parse_reply_untrusted(_reply(ACK, 1, "198.18.0.9")[:240] + bytes([53, 1, ACK]) + data)
    if r is not None:
        assert isinstance(check_reply_untrusted(r), (Offer, str))


def test_a_lease_overlapping_the_lan_is_dropped():
    """The config refuses a static WAN address overlapping the LAN; a DHCP lease is held to the
    same (else the kernel would send the LAN's packets out of the WAN)."""
    from ipaddress import IPv4Network
    lan = [IPv4Network("198.18.50.0/24"), IPv4Network("198.18.70.0/24")]
    assert check_reply_untrusted(_ack("198.18.50.77", "255.255.255.0", "198.18.50.1"), lan) == "overlaps the LAN"
    assert check_reply_untrusted(_ack("198.18.64.9", "255.255.240.0", "198.18.64.1"), lan) == "overlaps the LAN"
    assert isinstance(check_reply_untrusted(_ack("198.18.0.55"), lan), Offer)



def _raw_ack(xid: int, chaddr: bytes = MAC, sid: str = "198.18.0.1", mask: str = "255.255.255.0",
             kind: int = ACK) -> bytes:
    body = bytearray(build_message(ACK, xid, chaddr)[:240])
    body[0] = 2
    body[16:20] = socket.inet_aton("198.18.0.55")
    return bytes(body) + bytes([53, 1, kind, 54, 4]) + socket.inet_aton(sid) + bytes([1, 4]) + socket.inet_aton(mask) + b"\xff"


def _wait_on_loopback(datagrams: list[bytes], server: str | None = "198.18.0.1", kinds=frozenset({ACK}),
                      timeout: float = 5.0, keep: tuple[str, int] | None = None):
    from appliance.boot.dhcp_client import Drops, Transaction, _wait
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        rx.bind(("127.0.0.1", 0))
        for d in datagrams:
            tx.sendto(d, rx.getsockname())
        drops = Drops("wan0", clock=lambda: 0.0)
        return _wait(Transaction(rx, 7, MAC, drops), set(kinds), timeout, (), server, keep), drops.counts
    finally:
        rx.close()
        tx.close()


def test_the_wait_skips_what_is_not_ours_and_takes_the_usable_reply():
    junk = [b"x" * 300, _raw_ack(8), _raw_ack(7, chaddr=bytes(6)), _raw_ack(7, sid="198.18.0.2"),
            _raw_ack(7, mask="255.0.255.0"), _raw_ack(7)]
    got, counts = _wait_on_loopback(junk)
    assert got is not None and got[1].address == "198.18.0.55"
    assert counts == {"malformed": 1, "another transaction": 1, "another client": 1, "another server": 1,
                      "bad netmask": 1}


def test_a_flood_of_replies_is_read_paced_and_does_not_end_the_wait():
    """Past MAX_REPLIES, reading is paced (a few percent of a core), and the usable reply behind
    the flood is still taken: ending the wait at the count let ~1,300 junk datagrams end a boot's
    5 tries at once, and PID 1 powered the VM off."""
    from appliance.boot.dhcp_client import FLOOD_BURST, FLOOD_PAUSE, MAX_REPLIES
    junk = MAX_REPLIES + 4 * FLOOD_BURST
    t = time.monotonic()
    got, counts = _wait_on_loopback([_raw_ack(8)] * junk + [_raw_ack(7)])
    took = time.monotonic() - t
    assert got is not None and got[1].address == "198.18.0.55"
    assert counts == {"another transaction": junk, "flood: reading paced": 1}
    assert took >= 4 * FLOOD_PAUSE, "paced: one pause per burst past the count"


def test_an_ack_after_a_nak_wins_and_a_nak_alone_is_the_answer():
    """Anyone can NAK in the server's name; the real server's ACK for the same REQUEST wins."""
    from appliance.boot.dhcp_client import NAK
    got, counts = _wait_on_loopback([_raw_ack(7, kind=NAK), _raw_ack(7, kind=NAK), _raw_ack(7)], kinds={ACK, NAK})
    assert got is not None and got[0].kind == ACK and got[1] is not None and counts == {"repeated NAK": 1}
    got, _ = _wait_on_loopback([_raw_ack(7, kind=NAK)], kinds={ACK, NAK}, timeout=0.3)
    assert got is not None and got[0].kind == NAK and got[1] is None


def test_while_the_lease_holds_a_renewal_takes_only_its_own_address_and_prefix():
    """A faster reply for another address, or the same address with another prefix (the flush
    of the old one drops the WAN's routes), is dropped while the lease runs."""
    replies = [_raw_ack(7, mask="255.255.0.0"), _raw_ack(7)]
    got, counts = _wait_on_loopback(replies, keep=("198.18.0.55", 24))
    assert got is not None and (got[1].address, got[1].prefixlen) == ("198.18.0.55", 24)
    assert counts == {"another address while the lease holds": 1}
    got, counts = _wait_on_loopback([_raw_ack(7)], keep=("198.18.0.56", 24), timeout=0.3)
    assert got is None and counts == {"another address while the lease holds": 1}


def test_a_router_option_shorter_than_an_address_is_no_router():
    o = check_reply_untrusted(_ack(router=None, extra=bytes([3, 0])))
    assert isinstance(o, Offer) and o.router is None


def test_a_flood_for_other_transactions_does_not_hide_the_real_reply():
    """The socket filter (only_ours): junk for another transaction or client takes no room in the
    socket's queue. Without it, a flood that fills the queue faster than the paced reading empties
    it (here: 20,000 datagrams queued before any is read) makes the kernel drop the real ACK."""
    from appliance.boot.dhcp_client import Drops, Transaction, _wait, only_ours
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        assert only_ours(rx, 7, MAC)
        for _ in range(10000):
            tx.sendto(_raw_ack(8), rx.getsockname())
            tx.sendto(_raw_ack(7, chaddr=bytes(6)), rx.getsockname())
        tx.sendto(_raw_ack(7), rx.getsockname())
        drops = Drops("wan0", clock=lambda: 0.0)
        got = _wait(Transaction(rx, 7, MAC, drops), {ACK}, 2.0, (), "198.18.0.1")
        assert got is not None and got[1].address == "198.18.0.55"
        assert drops.counts == {}
    finally:
        rx.close()
        tx.close()
