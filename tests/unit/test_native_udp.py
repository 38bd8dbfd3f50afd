"""Many datagrams per receive on a connected UDP socket (UdpTransport.recv_payloads): the compiled
recvmmsg (appliance.native._udp.recv_many) and its Python twin (udp.py_recv_many) must hand over
the same payloads, in order, each GRO-coalesced run cut back into its datagrams, and handle the
socket's errors the same way, against the real kernel inside namespaces this test creates (the
fixtures of test_tun_udp.py: prefix `ut`, always deleted)."""
from __future__ import annotations

import gc
import os
import random
import select
import socket
import subprocess
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import native
from appliance.ioerrors import PortGone
from appliance.transport import udp
from appliance.transport.udp import UdpTransport
from tests.unit.test_tun_udp import _inside, _veth_pair, _wait_readable, netns  # noqa: F401 - netns is a fixture

COMPILED = native.load("_udp")
IMPLS = ["compiled", "python"]


def _use(t: UdpTransport, impl: str) -> None:
    if impl == "compiled":
        assert COMPILED is not None or native.pure_forced(), "appliance.native._udp did not build (make setup)"
        if COMPILED is None:
            pytest.skip("pure Python forced (VPN_APPLIANCE_PURE_PYTHON)")
        assert t._recv_many is COMPILED.recv_many
    else:
        t._recv_many = None


def _drain(t: UdpTransport, count: int, limit: int = 64, timeout: float = 3.0) -> list[bytes]:
    got: list = []
    end = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < end:
        if t.has_spill or _wait_readable(t, end - time.monotonic()):   # read past a limit: no readiness for it
            got += t.recv_payloads(limit)
    return got


@pytest.fixture
def pair(netns):  # noqa: F811
    """tx in A sends to rx in B; rx is connected to tx (the client's view: its server)."""
    a, b = _veth_pair(netns)
    with _inside(a):
        tx = UdpTransport(("198.18.201.1", 51301), ("198.18.201.2", 51302), gso=True)
    with _inside(b):
        rx = UdpTransport(("198.18.201.2", 51302), ("198.18.201.1", 51301), gro=True)
    try:
        yield tx, rx
    finally:
        tx.close()
        rx.close()


pytestmark = [pytest.mark.root, pytest.mark.netns]


def _data(rnd, size: int) -> bytes:
    """Random bytes that GSO may batch: an OpenVPN data packet's first byte (P_DATA_V2, 0x48),
    since only data packets share a run (transport/udp._runs); empty stays empty."""
    return b"\x48" + rnd.randbytes(size - 1) if size else b""


@pytest.mark.parametrize("impl", IMPLS)
def test_runs_and_single_datagrams_arrive_whole_and_in_order(pair, impl):
    tx, rx = pair
    _use(rx, impl)
    assert rx.gro
    run = [b"\x48" + bytes([i]) * 1199 for i in range(40)]      # one GSO send (data packets): one coalesced receive
    singles = [b"", b"x", bytes(range(256)) * 5, b"\x00" * 1472]
    for d in singles[:2]:
        tx.send(d)
    tx.send_batch(run)
    for d in singles[2:]:
        tx.send(d)
    want = singles[:2] + run + singles[2:]
    assert _drain(rx, len(want)) == want
    assert rx.stats["received"] == len(want)


@pytest.mark.parametrize("impl", IMPLS)
def test_a_deep_queue_is_taken_in_bounded_batches(pair, impl):
    """200 datagrams waiting: a call with limit 64 takes at least 64 and returns (a coalesced run
    may overshoot, as with recv_batch); later calls take the rest, nothing lost or reordered."""
    tx, rx = pair
    _use(rx, impl)
    want = [i.to_bytes(2, "big") + bytes(100 + i) for i in range(200)]   # distinct sizes: no GRO
    for d in want:
        tx.send(d)
    assert _wait_readable(rx, 3.0)
    first = rx.recv_payloads(64)
    assert len(first) == 64, len(first)
    rest = _drain(rx, 200 - 64)
    assert first + rest == want
    assert rx.recv_payloads(64) == []                                   # empty queue: no error


@pytest.mark.parametrize("impl", IMPLS)
def test_icmp_refusal_is_counted_not_raised(netns, impl):  # noqa: F811
    a, _b = _veth_pair(netns)
    with _inside(a):
        t = UdpTransport(("198.18.201.1", 51303), ("198.18.201.2", 51399))   # nobody listens there
    try:
        _use(t, impl)
        t.send(b"hello")
        assert _wait_readable(t, 3.0), "the ICMP port unreachable should make the socket readable"
        assert t.recv_payloads(64) == []
        assert t.stats.get("icmp_refused") == 1
    finally:
        t.close()


@pytest.mark.parametrize("impl", IMPLS)
def test_a_closed_socket_is_our_port_gone(pair, impl):
    _tx, rx = pair
    _use(rx, impl)
    rx.sock.close()
    with pytest.raises(PortGone):
        rx.recv_payloads(64)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 1472), st.integers(1, 20)), min_size=1, max_size=12),
       st.integers(1, 80), st.integers(0, 2**32))
def test_both_implementations_hand_over_what_was_sent(pair, plan, limit, seed):
    """Any mix of GSO runs (equal sizes, a shorter last one) and single datagrams, read with any
    limit, comes out of both implementations as the datagrams sent, in order."""
    tx, rx = pair
    for impl in IMPLS:
        if impl == "compiled" and COMPILED is None:
            continue
        rnd = random.Random(seed)                # the same datagrams for both
        while _wait_readable(rx, 0.05):          # an earlier example's leftovers (after a failure)
            rx.recv_payloads(64)
        rx._recv_many = COMPILED.recv_many if impl == "compiled" else None
        want: list[bytes] = []
        for size, count in plan:
            run = [_data(rnd, size) for _ in range(count)]
            if count > 1 and size > 1 and rnd.random() < 0.5:
                run[-1] = run[-1][:rnd.randrange(1, size)]               # GSO's shorter last segment
            if count > 1 and size:
                tx.send_batch(run)
            else:
                for d in run:
                    tx.send(d)
            want += run
        assert _drain(rx, len(want), limit) == want, impl


def refuses_bad_arguments(receive) -> None:
    """What recv_many and recv_from_many (`receive`) share: a bad count, fd or argument list is an
    exception, never a read; an fd that is not a socket is the kernel's error."""
    with pytest.raises(ValueError):
        receive(0, 0)
    with pytest.raises(TypeError):
        receive("3", 1)
    with pytest.raises(TypeError):
        receive(3)
    with pytest.raises(OverflowError):
        receive(1 << 40, 1)
    with pytest.raises(OSError) as e:
        receive(-1, 1)
    assert e.value.errno == 9                                            # EBADF
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as e:
            receive(r, 5)                                                # not a socket
        assert e.value.errno == 88                                       # ENOTSOCK
    finally:
        os.close(r)
        os.close(w)


def test_recv_many_arguments():
    if COMPILED is None:
        pytest.skip("appliance.native._udp not in use (pure Python forced or not built)")
    refuses_bad_arguments(COMPILED.recv_many)


def test_a_finalizer_run_by_the_collector_cannot_swap_the_payloads():
    """recv_many's buffers are shared by every socket. Making its result (a list, tuples) may run
    the cycle collector (Python 3.11 collects inside the allocation), whose finalizers are any
    Python code: one that calls recv_many for another socket (or lets another thread run one) must
    not replace this call's datagrams with that socket's. Unix datagram sockets: the same
    recvmmsg, no network needed."""
    if COMPILED is None:
        pytest.skip("appliance.native._udp not in use (pure Python forced or not built)")
    mine, mine_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    other, other_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    stolen: list = []

    class Trap:
        def __del__(self):
            stolen.append(COMPILED.recv_many(other.fileno(), 32))

    threshold = gc.get_threshold()
    try:
        for i in range(32):
            mine_peer.send(b"mine %d" % i)
            other_peer.send(b"other %d" % i * 10)
        gc.collect()
        gc.disable()
        trap = Trap()
        trap.cycle = trap                # only the collector frees it
        del trap
        # Tuples and lists come from free lists without counting towards a collection: empty them.
        keep = ([tuple([i, i]) for i in range(5000)], [[i] for i in range(200)])
        gc.set_threshold(1)
        gc.enable()
        got = COMPILED.recv_many(mine.fileno(), 32)
    finally:
        gc.set_threshold(*threshold)
        gc.enable()
        for s in (mine, mine_peer, other, other_peer):
            s.close()
    del keep
    if not stolen:
        pytest.skip("the collector did not run inside recv_many on this Python (3.12+ defers it)")
    assert len(stolen[0]) == 32                       # the finalizer's call worked, on its own socket
    assert [d for d, _seg in got] == [b"mine %d" % i for i in range(32)]


def test_an_error_between_two_datagrams_is_counted_once_by_the_twin(pair):
    """An ICMP refusal that arrives while a batch is being read, after its first datagram: recvmmsg
    has the kernel keep the error for the next call, so the compiled path counts it then; the
    Python twin must not swallow it (it did: the refusal vanished from the counters), nor lose a
    datagram. The socket is a real one whose first receive makes the error arrive (a send to the
    closed peer: the ICMP port unreachable comes back at once over the veth)."""
    tx, rx = pair
    want = [b"one", b"two", b"three"]
    for d in want:
        tx.send(d)
    tx.close()                                       # its port now answers with ICMP port unreachable

    class RefusedAfterTheFirst(socket.socket):
        first = True

        def recvmsg_into(self, *args):
            r = super().recvmsg_into(*args)
            if self.first:
                self.first = False
                self.send(b"probe")
                p = select.poll()
                p.register(self, select.POLLERR)
                assert p.poll(3000), "no ICMP error came back"
            return r

    rx.sock = RefusedAfterTheFirst(fileno=rx.sock.detach())
    rx._recv_many = None
    got = _drain(rx, len(want))
    assert got == want
    assert rx.stats.get("icmp_refused") == 1, rx.stats
    assert rx.stats["received"] == 3


@pytest.mark.parametrize("impl", IMPLS)
def test_ipv6_connected_sockets(netns, impl):  # noqa: F811
    """The client talks to an IPv6 server over an AF_INET6 connected socket: runs and single
    datagrams arrive whole and in order (loopback inside a namespace of this test's own)."""
    with _inside(netns()):
        tx = UdpTransport(("::1", 51311), ("::1", 51312), family=socket.AF_INET6, gso=True)
        rx = UdpTransport(("::1", 51312), ("::1", 51311), family=socket.AF_INET6, gro=True)
    try:
        _use(rx, impl)
        run = [b"\x48" + bytes([i]) * 1199 for i in range(30)]      # data packets: one GSO send
        singles = [b"", b"y" * 65527, bytes(range(256)) * 4]      # 65527: the largest UDP/IPv6 payload
        tx.send(singles[0])
        tx.send_batch(run)
        for d in singles[1:]:
            tx.send(d)
        want = singles[:1] + run + singles[1:]
        assert _drain(rx, len(want)) == want
        assert rx.stats["received"] == len(want)
    finally:
        tx.close()
        rx.close()


@pytest.mark.parametrize("impl", IMPLS)
def test_datagrams_from_anyone_but_the_peer_never_arrive(netns, impl):  # noqa: F811
    """A connected socket hears only its peer: the kernel matches all four of address and port.
    Another port on the peer's host, and the right port from another address, are not delivered
    (the client's recv_payloads keeps no source address, so this is what stops a spoofed flood
    from another source)."""
    a, b = _veth_pair(netns)
    with _inside(a):
        tx = UdpTransport(("198.18.201.1", 51321), ("198.18.201.2", 51322))
        stranger = UdpTransport(("198.18.201.1", 51323), ("198.18.201.2", 51322))
        _ip_addr_add(a, "198.18.201.3/24", "utva")
        stranger2 = UdpTransport(("198.18.201.3", 51321), ("198.18.201.2", 51322))
    with _inside(b):
        rx = UdpTransport(("198.18.201.2", 51322), ("198.18.201.1", 51321))
    try:
        _use(rx, impl)
        for i in range(100):
            stranger.send(b"stranger %d" % i)
            stranger2.send(b"spoofed %d" % i)
        tx.send(b"peer")
        assert _drain(rx, 1) == [b"peer"]
        assert not _wait_readable(rx, 0.3)
        assert rx.recv_payloads(64) == []
        assert rx.stats["received"] == 1
    finally:
        for t in (tx, stranger, stranger2, rx):
            t.close()


def _ip_addr_add(ns: str, cidr: str, dev: str) -> None:
    subprocess.run(["ip", "-n", ns, "addr", "add", cidr, "dev", dev], check=True, timeout=10)


@pytest.mark.parametrize("impl", IMPLS)
def test_each_wake_up_takes_what_is_queued(pair, impl):
    """A call that empties the queue leaves nothing behind for the next: the next datagrams are
    all taken by the next call (an empty queue's EAGAIN is not an error kept for later)."""
    tx, rx = pair
    _use(rx, impl)
    for round_ in range(3):
        want = [b"%d %d" % (round_, i) for i in range(5)]
        for d in want:
            tx.send(d)
        assert _wait_readable(rx, 3.0)
        time.sleep(0.05)                             # all five through the veth (they are at once)
        assert rx.recv_payloads(64) == want
        assert not _wait_readable(rx, 0.0)
    assert "icmp_refused" not in rx.stats and not rx.errors



def test_a_socket_closed_between_two_calls_is_never_read_through_its_reused_number(pair):
    """recv_payloads calls recv_many several times for a deep queue; any Python code between two
    calls (a signal handler, a finalizer, another thread) may close the transport, and the next
    socket opened gets its number. The next call must find the socket closed (our port gone), not
    read that other socket's datagrams as the peer's."""
    tx, rx = pair
    _use(rx, "compiled")
    for i in range(40):                              # more than one call's worth
        tx.send(b"peer %d" % i)
    assert _wait_readable(rx, 3.0)
    time.sleep(0.05)
    stranger, stranger_peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    stranger_peer.send(b"not from the peer")
    calls: list = []

    def then_closed(fd: int, want: int) -> list:
        got = COMPILED.recv_many(fd, want)
        if not calls:
            rx.sock.close()
            os.dup2(stranger.fileno(), fd)           # the closed socket's number, now another's
        calls.append(fd)
        return got

    rx._recv_many = then_closed
    try:
        with pytest.raises(PortGone):
            rx.recv_payloads(64)
        assert COMPILED.recv_many(calls[0], 1)[0][0] == b"not from the peer"    # still unread
    finally:
        if calls:
            os.close(calls[0])
        stranger.close()
        stranger_peer.close()


def _icmp_unreachable(code: int) -> bytes:
    """An ICMP destination unreachable from the peer's address (A) about the datagram our socket
    (B, port 51302) sent to it (port 51301): what a router or the peer's host says, or anyone
    who knows the four addresses and ports forges."""
    from scapy.layers.inet import ICMP, IP, UDP
    quoted = IP(src="198.18.201.2", dst="198.18.201.1") / UDP(sport=51302, dport=51301) / (b"q" * 8)
    return bytes(IP(src="198.18.201.1", dst="198.18.201.2") / ICMP(type=3, code=code) / bytes(quoted))


EVENTS = st.one_of(
    st.tuples(st.just("data"), st.integers(0, 65507), st.integers(1, 64), st.booleans()),
    st.tuples(st.just("icmp"), st.sampled_from([3, 2, 13, 1])),     # port, protocol, prohibited, host
    st.tuples(st.just("read"), st.integers(1, 80)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(EVENTS, min_size=1, max_size=25), st.integers(0, 2**32))
def test_both_implementations_count_the_same_with_icmp_errors_between_the_data(netns, plan, seed):  # noqa: F811
    """Data (single datagrams, GSO runs with a shorter last segment, up to 64 KB) and ICMP
    errors (a refusal is counted and reading goes on; others end the batch, counted by errno) in
    any order, read at any points with any limit: both implementations hand over the same
    datagrams and end with the same counters."""
    a, b = _veth_pair(netns)
    results = {}
    for impl in IMPLS:
        if impl == "compiled" and COMPILED is None:
            continue
        rnd = random.Random(seed)
        with _inside(a):
            tx = UdpTransport(("198.18.201.1", 51301), ("198.18.201.2", 51302), gso=True)
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        with _inside(b):
            rx = UdpTransport(("198.18.201.2", 51302), ("198.18.201.1", 51301), gro=True)
        try:
            _use(rx, impl)
            want: list[bytes] = []
            got: list[bytes] = []
            for ev in plan:
                if ev[0] == "data":
                    _kind, size, count, short = ev
                    count = max(1, min(count, 65507 // max(size, 1)))
                    run = [_data(rnd, size) for _ in range(count)]
                    if short and count > 1 and size > 1:
                        run[-1] = run[-1][:rnd.randrange(1, size)]
                    if size:
                        tx.send_batch(run)
                    else:                            # a GSO run of empty datagrams is one datagram
                        for d in run:
                            tx.send(d)
                    want += run
                elif ev[0] == "icmp":
                    raw.sendto(_icmp_unreachable(ev[1]), ("198.18.201.2", 0))
                else:
                    got += rx.recv_payloads(ev[1])
                time.sleep(0.002)                    # each event through the veth before the next
            got += _drain(rx, len(want) - len(got))
            while _wait_readable(rx, 0.05):          # a last error after the data
                got += rx.recv_payloads(64)
            results[impl] = (rx.stats["received"], rx.stats.get("icmp_refused", 0), dict(rx.errors))
            assert got == want, impl
        finally:
            tx.close()
            raw.close()
            rx.close()
    if len(results) == 2:
        assert results["compiled"] == results["python"]


@pytest.mark.parametrize("impl", IMPLS)
def test_gro_runs_do_not_stretch_the_limit(pair, impl):
    """Each message may be a GRO run of up to 64 datagrams (a GSO-sending peer such as our own
    server, or a NIC's UDP GRO): asking for 32 of them at once took up to 2048 datagrams, 2 MB,
    in a call whose limit said 64, the pump's bound on one wake-up's work. The limit is overshot
    by one run at most (as recv_batch does), and datagrams that are not runs still come up to 32
    a call."""
    tx, rx = pair
    _use(rx, impl)
    for k in range(40):
        tx.send_batch([b"\x48" + bytes([k]) * 999] * 64)
    assert _wait_readable(rx, 3.0)
    time.sleep(0.1)
    first = rx.recv_payloads(64)
    assert len(first) == 64, len(first)
    rest = _drain(rx, 40 * 64 - len(first))
    assert first + rest == [b"\x48" + bytes([k]) * 999 for k in range(40) for _ in range(64)]
    if impl == "compiled":
        asked: list = []
        rx._recv_many = lambda fd, want: asked.append(want) or COMPILED.recv_many(fd, want)
        for i in range(100):
            tx.send(i.to_bytes(2, "big") + bytes(100 + i))       # distinct sizes: no runs
        assert _wait_readable(rx, 3.0)
        time.sleep(0.05)
        assert len(rx.recv_payloads(64)) == 64
        assert max(asked) == 32 and len(asked) <= 3, asked
