"""Many datagrams per receive with their source addresses (UdpTransport.recv_batch, the server's
unconnected socket): the compiled recvmmsg (appliance.native._udp.recv_from_many) and its Python
twin (udp.py_recv_from_many) must hand over the same payloads in the same order, each with the
address Python's own recvfrom gives (the dispatcher keys its clients by that tuple: an address
written differently would be another client), each GRO-coalesced run cut back into its datagrams,
against the real kernel inside namespaces this test creates (the fixtures of test_tun_udp.py:
prefix `ut`, always deleted)."""
from __future__ import annotations

import gc
import random
import socket
import subprocess
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import native
from appliance.ioerrors import PortGone
from appliance.transport.udp import UdpTransport
from lab.netns import wait_local_addresses
from tests.unit.test_native_udp import refuses_bad_arguments
from tests.unit.test_tun_udp import _inside, _veth_pair, _wait_readable, netns  # noqa: F401 - netns is a fixture

COMPILED = native.load("_udp")
IMPLS = ["compiled", "python"]
pytestmark = [pytest.mark.root, pytest.mark.netns]


def _use(t: UdpTransport, impl: str) -> None:
    if impl == "compiled":
        assert COMPILED is not None or native.pure_forced(), "appliance.native._udp did not build (make setup)"
        if COMPILED is None:
            pytest.skip("pure Python forced (VPN_APPLIANCE_PURE_PYTHON)")
        assert t._recv_from_many is COMPILED.recv_from_many
    else:
        t._recv_from_many = None


def _drain(t: UdpTransport, count: int, limit: int = 64, timeout: float = 10.0) -> list:
    got: list = []
    end = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < end:
        if t.has_spill or _wait_readable(t, end - time.monotonic()):   # read past a limit: no readiness for it
            got += t.recv_batch(limit)
    return got


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, timeout=10)


@pytest.fixture
def senders(netns):  # noqa: F811
    """rx (unconnected, the server's view) in B; three senders in A from two addresses, one of
    them sending GSO runs (our client) and the others single datagrams (OpenVPN's clients)."""
    a, b = _veth_pair(netns)
    _ip("-n", a, "addr", "add", "198.18.201.3/24", "dev", "utva")
    with _inside(b):
        rx = UdpTransport(("198.18.201.2", 51401), None, gro=True)
    with _inside(a):
        txs = [UdpTransport(("198.18.201.1", 51402), ("198.18.201.2", 51401), gso=True),
               UdpTransport(("198.18.201.1", 51403), ("198.18.201.2", 51401), gso=False),
               UdpTransport(("198.18.201.3", 51402), ("198.18.201.2", 51401), gso=False)]
    try:
        yield txs, rx
    finally:
        for t in txs + [rx]:
            t.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1472), st.integers(1, 20)), min_size=1, max_size=12),
       st.integers(1, 80), st.integers(0, 2**32))
def test_both_implementations_hand_over_what_was_sent_by_whom(senders, plan, limit, seed):
    """Any mix of senders, GSO runs (equal sizes, a shorter last one) and single datagrams, read
    with any limit, comes out of both implementations as the datagrams sent, in order, each with
    its sender's address as Python's socket module writes it."""
    txs, rx = senders
    results = {}
    for impl in IMPLS:
        if impl == "compiled" and COMPILED is None:
            continue
        rnd = random.Random(seed)                # the same datagrams for both
        while _wait_readable(rx, 0.05):          # an earlier example's leftovers (after a failure)
            rx.recv_batch(64)
        rx._recv_from_many = COMPILED.recv_from_many if impl == "compiled" else None
        want: list = []
        for who, size, count in plan:
            tx = txs[who]
            src = ("198.18.201.3" if who == 2 else "198.18.201.1", 51403 if who == 1 else 51402)
            run = [b"\x48" + rnd.randbytes(size - 1) if size else b"" for _ in range(count)]   # data: GSO may batch
            if who == 0 and count > 1 and size > 1 and rnd.random() < 0.5:
                run[-1] = run[-1][:rnd.randrange(1, size)]               # GSO's shorter last segment
            if who == 0 and count > 1 and size:
                tx.send_batch(run)
            else:
                for d in run:
                    tx.send(d)
            want += [(d, src) for d in run]
        got = _drain(rx, len(want), limit)
        assert got == want, impl
        results[impl] = got
    if len(results) == 2:
        assert results["compiled"] == results["python"]


def test_recv_from_many_arguments():
    if COMPILED is None:
        pytest.skip("appliance.native._udp not in use (pure Python forced or not built)")
    refuses_bad_arguments(COMPILED.recv_from_many)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        b.send(b"x")
        assert COMPILED.recv_from_many(a.fileno(), 4) == [(b"x", 0, None)]   # no inet address: None
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("impl", IMPLS)
def test_ipv6_addresses_are_written_as_recvfrom_writes_them(netns, impl):  # noqa: F811
    """IPv6 sources, as the dispatcher will key them: loopback, a global address, a link-local one
    (its scope id in the tuple, no `%` suffix in the string) and, on a dual-stack socket, an IPv4
    client as an IPv4-mapped address; each must equal what Python's recvfrom returns for it."""
    a, b = _veth_pair(netns)
    _ip("-n", a, "addr", "add", "2001:db8:201::1/64", "dev", "utva", "nodad")
    _ip("-n", b, "addr", "add", "2001:db8:201::2/64", "dev", "utvb", "nodad")
    for ns, dev, ll in ((a, "utva", "fe80::1"), (b, "utvb", "fe80::2")):
        _ip("-n", ns, "addr", "add", f"{ll}/64", "dev", dev, "nodad")
    wait_local_addresses(a, ("2001:db8:201::1", "fe80::1"))
    wait_local_addresses(b, ("2001:db8:201::2", "fe80::2"))
    with _inside(b):
        rx = UdpTransport(("::", 51411), None, family=socket.AF_INET6, gro=True)
        ref = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        ref.bind(("::", 51412))
        idx_b = socket.if_nametoindex("utvb")
    try:
        _use(rx, impl)
        cases = []
        with _inside(a):
            idx_a = socket.if_nametoindex("utva")
            for fam, src, dst_host in ((socket.AF_INET6, ("2001:db8:201::1", 51413, 0, 0), "2001:db8:201::2"),
                                       (socket.AF_INET6, ("fe80::1", 51414, 0, idx_a), f"fe80::2%{idx_a}"),
                                       (socket.AF_INET, ("198.18.201.1", 51415), "198.18.201.2")):
                s = socket.socket(fam, socket.SOCK_DGRAM)
                s.bind(src)
                cases.append((s, dst_host))
        for i, (s, dst_host) in enumerate(cases):
            for port in (51411, 51412):
                for k in range(3):
                    s.sendto(b"%d-%d" % (i, k), (dst_host, port))
        want = []
        ref.settimeout(10)
        for _ in range(9):
            d, addr = ref.recvfrom(100)
            want.append((d, addr))
        got = _drain(rx, 9)
        assert got == want
        assert ("fe80::1", 51414, 0, idx_b) in [x[1] for x in got]       # the scope is our side's NIC
        assert ("::ffff:198.18.201.1", 51415, 0, 0) in [x[1] for x in got]
        for s, _d in cases:
            s.close()
    finally:
        rx.close()
        ref.close()


def test_a_finalizer_run_by_the_collector_cannot_swap_payloads_or_addresses():
    """As recv_many's: the buffers and the address slots are shared by every socket, and making the
    result's tuples and list may run the cycle collector, whose finalizers may call again for
    another socket. This call's datagrams and addresses must stay this call's."""
    if COMPILED is None:
        pytest.skip("appliance.native._udp not in use (pure Python forced or not built)")
    mine = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    stolen: list = []

    class Trap:
        def __del__(self):
            stolen.append(COMPILED.recv_from_many(other.fileno(), 32))

    threshold = gc.get_threshold()
    try:
        for s in (mine, other, *peers):
            s.bind(("127.0.0.1", 0))
        for i in range(32):
            peers[0].sendto(b"mine %d" % i, mine.getsockname())
            peers[1].sendto(b"other %d" % i * 10, other.getsockname())
        time.sleep(0.05)
        gc.collect()
        gc.disable()
        trap = Trap()
        trap.cycle = trap                # only the collector frees it
        del trap
        keep = ([tuple([i, i]) for i in range(5000)], [[i] for i in range(200)])
        gc.set_threshold(1)
        gc.enable()
        got = COMPILED.recv_from_many(mine.fileno(), 32)
    finally:
        gc.set_threshold(*threshold)
        gc.enable()
        for s in (mine, other, *peers):
            s.close()
    del keep
    if not stolen:
        pytest.skip("the collector did not run inside recv_from_many on this Python (3.12+ defers it)")
    assert len(stolen[0]) == 32
    assert [d for d, _seg, _a in got] == [b"mine %d" % i for i in range(32)]
    assert len({a for _d, _s, a in got}) == 1 and all(a[0] == "127.0.0.1" for _d, _s, a in got)
    assert {a for _d, _s, a in got}.isdisjoint({a for _d, _s, a in stolen[0]})


@pytest.mark.parametrize("impl", IMPLS)
def test_gro_runs_do_not_stretch_the_limit(senders, impl):
    """As on the client: a message may be a GRO run of up to 64 datagrams; the limit is overshot by
    one run at most, and single datagrams still come up to 32 a call."""
    txs, rx = senders
    _use(rx, impl)
    for k in range(40):
        txs[0].send_batch([b"\x48" + bytes([k]) * 999] * 64)
    assert _wait_readable(rx, 3.0)
    time.sleep(0.1)
    first = rx.recv_batch(64)
    assert len(first) == 64, len(first)
    rest = _drain(rx, 40 * 64 - len(first))
    assert [d for d, _a in first + rest] == [b"\x48" + bytes([k]) * 999 for k in range(40) for _ in range(64)]
    if impl == "compiled":
        asked: list = []
        rx._recv_from_many = lambda fd, want: asked.append(want) or COMPILED.recv_from_many(fd, want)
        for i in range(100):
            txs[1 + i % 2].send(i.to_bytes(2, "big") + bytes(100 + i))   # distinct sizes: no runs
        assert _wait_readable(rx, 3.0)
        time.sleep(0.05)
        assert len(rx.recv_batch(64)) == 64
        assert max(asked) == 32 and len(asked) <= 3, asked


@pytest.mark.parametrize("impl", IMPLS)
def test_a_closed_socket_is_our_port_gone(senders, impl):
    _txs, rx = senders
    _use(rx, impl)
    rx.sock.close()
    with pytest.raises(PortGone):
        rx.recv_batch(64)
