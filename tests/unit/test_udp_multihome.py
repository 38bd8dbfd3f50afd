"""multihome in the UDP transport (appliance/transport/udp.py, appliance/native/udp.c): the local
address read from IP_PKTINFO / IPV6_PKTINFO, the control message that sends from it, the compiled
recvmmsg and its Python twin giving the same addresses against the real kernel (a namespace this
test creates, prefix `ut`, always deleted), and no change at all to a socket without it."""
from __future__ import annotations

import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import native
from appliance.gateway.eventlog import fmt_addr
from appliance.transport import udp
from appliance.transport.udp import UdpTransport, local_of, pktinfo_cmsg
from lab.netns import wait_local_addresses
from lab.fakes import MemoryDatagramSocket, MemoryNet
from tests.unit.test_tun_udp import _inside, _ip, _wait_readable, netns  # noqa: F401 - netns is a fixture

COMPILED = native.load("_udp")
IMPLS = ["compiled", "python"]
A1, A2 = "198.18.203.1", "198.18.203.2"          # both the server's, on lo
B1, B2 = "fd18:203::1", "fd18:203::2"


def _in_pktinfo(spec_dst: str, addr: str, ifindex: int = 3) -> tuple:
    return (udp.SOL_IP, udp.IP_PKTINFO,
            struct.pack("=i", ifindex) + socket.inet_aton(spec_dst) + socket.inet_aton(addr))


def _in6_pktinfo(addr: str, ifindex: int = 3) -> tuple:
    return (udp.IPPROTO_IPV6, udp.IPV6_PKTINFO, socket.inet_pton(socket.AF_INET6, addr) + struct.pack("=I", ifindex))


# ---------------------------------------------------------------- the control messages
def test_ipv4_answers_from_spec_dst_not_the_header_destination():
    """A datagram to a broadcast address: the kernel's ipi_spec_dst is our unicast address, the
    one a reply can leave from (OpenVPN uses it too)."""
    assert local_of([_in_pktinfo("198.18.0.1", "198.18.0.255")]) == "198.18.0.1"


def test_ipv6_address_and_link_local_scope():
    assert local_of([_in6_pktinfo("fd18::5")]) == "fd18::5"
    assert local_of([_in6_pktinfo("::ffff:198.18.0.5")]) == "::ffff:198.18.0.5"
    assert local_of([_in6_pktinfo("fe80::1", 7)]) == "fe80::1%7"       # without its scope it cannot be sent from


def test_other_short_or_missing_control_messages_give_no_local_address():
    gro = (udp.SOL_UDP, udp.UDP_GRO, struct.pack("=i", 1400))
    assert local_of([gro]) is None
    assert local_of(None) is None and local_of([]) is None
    assert local_of([(udp.SOL_IP, udp.IP_PKTINFO, bytes(11))]) is None           # too short
    assert local_of([(udp.IPPROTO_IPV6, udp.IPV6_PKTINFO, bytes(19))]) is None
    assert local_of([gro, _in_pktinfo("198.18.0.7", "198.18.0.7")]) == "198.18.0.7"   # after GRO's


@pytest.mark.parametrize("local", ["198.18.0.1", "fd18::5", "::ffff:198.18.0.5", "fe80::1%7"])
def test_pktinfo_for_sending_round_trips_through_local_of(local):
    [(lvl, typ, data)] = pktinfo_cmsg(local)
    if lvl == udp.SOL_IP:
        assert struct.unpack("=i", data[:4])[0] == 0, "no interface forced: the route picks it"
        assert data[8:12] == bytes(4)
    assert local_of([(lvl, typ, data)]) == local
    if local == "fd18::5":
        assert struct.unpack("=I", data[16:])[0] == 0, "an interface only for a link-local address"


@pytest.mark.parametrize("bad", ["", "nonsense", "198.18.0.300", "fe80::1%x", "fe80::1%99999999999", "fd18::5%-1"])
def test_text_that_is_no_address_is_refused(bad):
    with pytest.raises((ValueError, OSError)):
        pktinfo_cmsg(bad)


def test_fmt_addr_names_the_local_address():
    assert fmt_addr(("198.18.0.2", 5000, "198.18.0.5")) == "198.18.0.2:5000 via 198.18.0.5"
    assert fmt_addr(("fd18::2", 5000, 0, 0, "fd18::5")) == "[fd18::2]:5000 via fd18::5"
    assert fmt_addr(("198.18.0.2", 5000, None)) == "198.18.0.2:5000"
    assert fmt_addr(("198.18.0.2", 5000)) == "198.18.0.2:5000"
    assert fmt_addr(("fd18::2", 5000, 0, 0)) == "[fd18::2]:5000"


# ---------------------------------------------------------------- the transport, in memory
def _memory(multihome: bool) -> tuple[MemoryNet, MemoryDatagramSocket, UdpTransport]:
    net = MemoryNet()
    s = MemoryDatagramSocket(net, A1, also=(A2,))
    return net, s, UdpTransport(("0.0.0.0", 1194), None, sock=s, gro=False, multihome=multihome)


def test_without_multihome_nothing_changes():
    """No cost without the directive: the plain methods, the compiled receive as it was, no
    pktinfo asked of the kernel, and addresses as recvfrom gives them."""
    net, s, t = _memory(False)
    assert t.send_batch.__func__ is UdpTransport.send_batch
    assert not s.pktinfo
    real = UdpTransport(None, None)                  # a real socket, never bound: nothing listens
    try:
        assert real._recv_from_many is (COMPILED.recv_from_many if COMPILED else None)
    finally:
        real.close()
    net.inject((A2, 1194), b"x", ("198.18.0.9", 4000))
    assert t.recv_batch(4) == [(b"x", ("198.18.0.9", 4000))]


def test_each_peer_is_answered_from_the_address_it_wrote_to_and_none_means_the_routes_choice():
    net, s, t = _memory(True)
    peer = ("198.18.0.9", 4000)
    net.inject((A2, 1194), b"a", peer)
    net.inject((A1, 1194), b"b", peer)
    got = t.recv_batch(4)
    assert got == [(b"a", (*peer, A2)), (b"b", (*peer, A1))]
    for _d, addr in got:
        t.send_batch([b"H1", b"H2", b"H3"], addr)    # a GSO run (0x48 "H": data packets)
        t.send_batch([b"4"], addr)                   # a single datagram
    t.send_batch([b"5"], (*peer, None))
    assert s.sent_from == [(A2, peer)] * 4 + [(A1, peer)] * 4 + [(A1, peer)]
    assert t.errors == {}


def test_a_connected_socket_cannot_be_multihome():
    with pytest.raises(ValueError):
        UdpTransport(None, ("198.18.0.1", 1194), sock=MemoryDatagramSocket(MemoryNet(), A1), multihome=True)


def test_an_address_the_host_does_not_have_is_a_counted_send_error_not_a_crash():
    net, s, t = _memory(True)
    t.send_batch([b"x"], ("198.18.0.9", 4000, "198.18.99.99"))
    t.send_batch([b"x", b"y"], ("198.18.0.9", 4000, "198.18.99.99"))
    t.send_batch([b"z"], ("198.18.0.9", 4000, "not an address"))      # never from the kernel
    assert t.errors.get("send EINVAL") and t.stats["bad_local"] == 1
    assert s.sent_from == [(A1, ("198.18.0.9", 4000))]                 # the last one: from the route's choice


def test_the_pktinfo_cache_stays_bounded():
    net, s, t = _memory(True)
    for i in range(udp.MAX_PKTINFO_CACHE * 2):
        t.send_batch([b"x"], ("198.18.0.9", 4000, f"198.18.{i // 256}.{i % 256}"))
    assert len(t._pktinfo) <= udp.MAX_PKTINFO_CACHE


# ---------------------------------------------------------------- the real kernel
@pytest.fixture
def host(netns):  # noqa: F811
    ns = netns()
    _ip("-n", ns, "addr", "add", f"{A1}/32", "dev", "lo")
    _ip("-n", ns, "addr", "add", f"{A2}/32", "dev", "lo")
    _ip("-n", ns, "addr", "add", f"{B1}/128", "dev", "lo", "nodad")
    _ip("-n", ns, "addr", "add", f"{B2}/128", "dev", "lo", "nodad")
    wait_local_addresses(ns, (A1, A2, B1, B2))      # before it, a datagram to B2 (or B1) is dropped
    return ns


def _use(t: UdpTransport, impl: str) -> None:
    if impl == "compiled":
        assert COMPILED is not None or native.pure_forced(), "appliance.native._udp did not build (make setup)"
        if COMPILED is None:
            pytest.skip("pure Python forced (VPN_APPLIANCE_PURE_PYTHON)")
        assert t._recv_from_many is not None
    else:
        t._recv_from_many = None


def _receive(t: UdpTransport, count: int, timeout: float = 5.0) -> list:
    got: list = []
    end = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < end:
        if t.has_spill or _wait_readable(t, end - time.monotonic()):
            got += t.recv_batch(64)
    return got


def _replies(c: socket.socket, count: int, timeout: float = 5.0) -> list:
    out: list = []
    end = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < end:
        if _wait_readable(c, end - time.monotonic()):
            out.append(c.recvfrom(100))
    return out


CASES = {   # server family and wildcard, the client's family and its address, the two server addresses
    "ipv4": (socket.AF_INET, "0.0.0.0", socket.AF_INET, A1, (A1, A2), (A1, A2)),
    "ipv6": (socket.AF_INET6, "::", socket.AF_INET6, B1, (B1, B2), (B1, B2)),
    "dual-stack": (socket.AF_INET6, "::", socket.AF_INET, A1, (A1, A2), (f"::ffff:{A1}", f"::ffff:{A2}")),
}


@pytest.mark.root
@pytest.mark.netns
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", list(CASES))
def test_the_kernel_reports_the_address_written_to_and_the_answer_leaves_from_it(host, impl, case):
    sfam, wild, cfam, cip, targets, locals_ = CASES[case]
    with _inside(host):
        srv = UdpTransport((wild, 51401), None, family=sfam, gro=True, multihome=True)
        c = socket.socket(cfam, socket.SOCK_DGRAM)
        c.bind((cip, 0))
    try:
        _use(srv, impl)
        for i, dst in enumerate(targets * 3):         # alternating: no burst shares an address wrongly
            c.sendto(b"q%d" % i, (dst, 51401))
        got = _receive(srv, 6)
        assert [d for d, _a in got] == [b"q%d" % i for i in range(6)]
        assert [a[-1] for _d, a in got] == list(locals_ * 3)
        src = got[0][1][:-1]
        assert all(a[:-1] == src for _d, a in got)
        for d, a in got[:2]:
            srv.send_batch([b"H" + d + b"-1", b"H" + d + b"-2"], a)      # GSO (0x48 "H": data packets)
            srv.send_batch([b"H" + d + b"-3"], a)                       # plain
        replies = _replies(c, 6)
        assert sorted((d, a[0]) for d, a in replies) == sorted(
            [(b"Hq0-%d" % k, targets[0]) for k in (1, 2, 3)] + [(b"Hq1-%d" % k, targets[1]) for k in (1, 2, 3)])
        assert srv.errors == {}
    finally:
        srv.close()
        c.close()


@pytest.mark.root
@pytest.mark.netns
def test_compiled_and_python_agree_on_a_burst_from_one_peer(host):
    """A burst to one address shares one address tuple in C; a change of local address mid-burst
    must give a new one (same_source compares the local part too)."""
    if COMPILED is None:
        pytest.skip("pure Python forced or not built")
    results = {}
    for impl in IMPLS:
        with _inside(host):
            srv = UdpTransport(("0.0.0.0", 51402), None, gro=False, multihome=True)
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.bind((A1, 51403))
        try:
            _use(srv, impl)
            seq = [A2, A2, A2, A1, A1, A2]
            for i, dst in enumerate(seq):
                c.sendto(b"%d" % i, (dst, 51402))
            results[impl] = _receive(srv, len(seq))
            assert [a[-1] for _d, a in results[impl]] == seq
        finally:
            srv.close()
            c.close()
    assert results["compiled"] == results["python"]


def test_the_compiled_receive_takes_its_flag_only_as_the_third_argument():
    if COMPILED is None:
        pytest.skip("pure Python forced or not built")
    with pytest.raises(TypeError):
        COMPILED.recv_from_many(0, 1, True, 4)
    with pytest.raises(TypeError):
        COMPILED.recv_many(0, 1, True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from([0, 1, 100, 1399, 1400, 1401, 9000]), max_size=80))
def test_the_multihome_send_cuts_the_same_gso_runs_as_the_plain_one(sizes):
    """Its loop is a copy of send_batch's (kept inline there, the path without the directive):
    the same datagrams, in the same order, in as many GSO sends."""
    datagrams = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    peer = ("198.18.0.9", 4000)
    seen = {}
    for mh in (False, True):
        net, s, t = _memory(mh)
        out: list = []
        net.deliver = lambda data, src, dst, out=out: out.append((bytes(data), src[0]))   # noqa: E731
        t.send_batch(list(datagrams), (*peer, A1) if mh else peer)
        seen[mh] = (out, t.stats["gso_sends"], t.stats["sent"])
    assert seen[True] == seen[False]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 17, 41, 1]), st.sampled_from([8, 50, 49, 104, 1]),
                          st.binary(max_size=40)), max_size=4))
def test_any_control_messages_give_an_address_that_can_be_sent_from_or_none(anc):
    """Whatever the ancillary data (the kernel's, but checked anyway): a text pktinfo_cmsg takes
    back, or None; never an exception."""
    local = local_of(anc)
    assert local is None or local_of(pktinfo_cmsg(local)) == local
