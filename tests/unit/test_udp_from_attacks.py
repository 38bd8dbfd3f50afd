"""The server's receive path (UdpTransport.recv_batch over the compiled _udp.recv_from_many or its
Python twin) under a hostile sender, against the real kernel inside namespaces this test creates
(prefix `ut`, always deleted):

- what a sender writes into its packets' headers (IPv6 flow label and traffic class, a v4-mapped
  source on the wire) must not make one client look like two or two like one: the address each
  datagram comes with, the dispatcher's key, is the one Python's recvfrom gives, for both
  implementations;
- any mix of IPv4 (v4-mapped), IPv6 and link-local senders, GSO runs and single datagrams gives
  recvfrom's exact (payload, address) sequence (hypothesis);
- the shared address objects are reference-counted exactly (a burst shares one tuple and one str,
  and nothing stays alive after the result is gone), also when an allocation fails midway;
- a collection run inside a call (gc.callbacks, finalizers) sees no half-made result list;
- a sender cannot stretch one recv_batch beyond its documented bound with GSO runs."""
from __future__ import annotations

import gc
import json
import random
import socket
import struct
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from appliance import native
from appliance.transport.udp import MANY_BATCH, UdpTransport
from lab.netns import wait_local_addresses
from tests.unit.test_native_udp_from import _use
from tests.unit.test_tun_udp import _inside, _veth_pair, _wait_readable, netns  # noqa: F401 - netns is a fixture

COMPILED = native.load("_udp")
IMPLS = ["compiled", "python"]
pytestmark = [pytest.mark.root, pytest.mark.netns]
PORT_C, PORT_REF = 51421, 51422


def _drain(t: UdpTransport, count: int, timeout: float = 3.0) -> list:
    got: list = []
    end = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < end:
        if t.has_spill or _wait_readable(t, end - time.monotonic()):   # read past a limit: no readiness for it
            got += t.recv_batch(64)
    return got


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, timeout=10)


def _mac(ns: str, dev: str) -> str:
    out = subprocess.run(["ip", "-n", ns, "-j", "link", "show", dev], check=True, capture_output=True, text=True,
                         timeout=10).stdout
    return json.loads(out)[0]["address"]


@pytest.fixture
def crafted(netns):  # noqa: F811
    """A dual-stack server socket (as `proto udp6` / `local ::`) and a reference socket beside it
    in B; in A a packet socket writing whole Ethernet frames onto the veth, so every header field
    is the attacker's choice. Yields (send(frame_for_port), rx, ref)."""
    a, b = _veth_pair(netns)
    _ip("-n", a, "addr", "add", "2001:db8:202::1/64", "dev", "utva", "nodad")
    _ip("-n", b, "addr", "add", "2001:db8:202::2/64", "dev", "utvb", "nodad")
    _ip("-n", a, "addr", "add", "fe80::1/64", "dev", "utva", "nodad")
    _ip("-n", b, "addr", "add", "fe80::2/64", "dev", "utvb", "nodad")
    wait_local_addresses(a, ("2001:db8:202::1", "fe80::1"))
    wait_local_addresses(b, ("2001:db8:202::2", "fe80::2"))
    mac_a, mac_b = _mac(a, "utva"), _mac(b, "utvb")
    with _inside(b):
        rx = UdpTransport(("::", PORT_C), None, family=socket.AF_INET6, gro=True)
        ref = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        ref.bind(("::", PORT_REF))
        ref.settimeout(3)
        idx_b = socket.if_nametoindex("utvb")
    with _inside(a):
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        raw.bind(("utva", 0))

    def send(build) -> None:
        """build(port) -> an IP packet (scapy); sent once to each socket."""
        for port in (PORT_REF, PORT_C):
            raw.send(bytes(Ether(src=mac_a, dst=mac_b) / build(port)))

    try:
        yield send, rx, ref, idx_b
    finally:
        raw.close()
        ref.close()
        rx.close()


def _ref_until(ref: socket.socket, sentinel: bytes) -> list:
    """What the reference socket (plain recvfrom) got, up to and including the sentinel."""
    got = []
    while True:
        d, addr = ref.recvfrom(65535)
        got.append((d, addr))
        if d == sentinel:
            return got


@pytest.mark.parametrize("impl", IMPLS)
def test_header_fields_a_sender_chooses_do_not_split_or_merge_clients(crafted, impl):
    """One IPv6 client whose packets carry every flow label and traffic class stays one address
    (flowinfo 0: the kernel does not report the flow label in the source address); the same
    link-local address is one client (its scope is our interface), a global one another. An IPv6
    packet with a v4-mapped source on the wire (::ffff:198.18.201.1) is delivered by Linux 6.18
    with exactly the address the IPv4 client 198.18.201.1 has on this dual-stack socket: a forged
    source like any other (the dispatcher already takes every UDP source as forgeable), and the
    same with recvfrom as with recvmmsg. The compiled path, the twin and recvfrom agree datagram
    for datagram."""
    send, rx, ref, idx_b = crafted
    _use(rx, impl)
    g = "2001:db8:202::1"
    for k, (fl, tc) in enumerate([(0, 0), (1, 0), (0xFFFFF, 0xFF), (0x12345, 0x10), (0xABCDE, 0)]):
        send(lambda port, fl=fl, tc=tc, k=k: IPv6(src=g, dst="2001:db8:202::2", fl=fl, tc=tc)
             / UDP(sport=40000, dport=port) / Raw(b"flow %d" % k))
    send(lambda port: IPv6(src="::ffff:198.18.201.1", dst="2001:db8:202::2") / UDP(sport=40001, dport=port)
         / Raw(b"mapped on the wire"))
    send(lambda port: IP(src="198.18.201.1", dst="198.18.201.2") / UDP(sport=40001, dport=port) / Raw(b"v4"))
    for k, fl in enumerate((7, 0xFFFFF)):
        send(lambda port, fl=fl, k=k: IPv6(src="fe80::1", dst="fe80::2", fl=fl) / UDP(sport=40000, dport=port)
             / Raw(b"ll %d" % k))
    send(lambda port: IPv6(src=g, dst="2001:db8:202::2") / UDP(sport=40000, dport=port) / Raw(b"end"))
    want = _ref_until(ref, b"end")
    got = _drain(rx, len(want))
    assert got == want
    mapped = [a for d, a in got if d == b"mapped on the wire"]     # delivered or not: the kernel's choice
    assert [d for d, _a in got if d != b"mapped on the wire"] == [b"flow %d" % k for k in range(5)] + [
        b"v4", b"ll 0", b"ll 1", b"end"]
    assert all(a == ("::ffff:198.18.201.1", 40001, 0, 0) for a in mapped)
    assert {a for d, a in got if d.startswith(b"flow") or d == b"end"} == {(g, 40000, 0, 0)}
    assert [a for d, a in got if d == b"v4"] == [("::ffff:198.18.201.1", 40001, 0, 0)]
    assert {a for d, a in got if d.startswith(b"ll")} == {("fe80::1", 40000, 0, idx_b)}


def _refcount_peers(fam: int, host: str):
    rx = socket.socket(fam, socket.SOCK_DGRAM)
    rx.bind((host, 0))
    txs = [socket.socket(fam, socket.SOCK_DGRAM) for _ in range(3)]
    for s in txs:
        s.bind((host, 0))
    return rx, txs


def _send_bursts(rx, txs) -> list:
    """32 datagrams in bursts: 5 from peer 0, 5 from peer 1, ... (the pattern of a busy server)."""
    order = [txs[(j // 5) % len(txs)] for j in range(32)]
    for j, s in enumerate(order):
        s.sendto(b"d%d" % j, rx.getsockname())
    return [s.getsockname() for s in order]


@pytest.mark.parametrize("fam,host", [(socket.AF_INET, "198.18.0.1"), (socket.AF_INET6, "::1")])
def test_a_burst_shares_one_address_counted_exactly(netns, fam, host):  # noqa: F811
    """Datagrams from one peer in a row share one address tuple, and datagrams from one host in a
    row one host str (one dict hash for the dispatcher); each is held by exactly the items that carry it, so none outlives the
    result (a reference too many would keep every burst's address alive for ever)."""
    if COMPILED is None:
        pytest.skip("appliance.native._udp not in use (pure Python forced or not built)")
    ns = netns()
    _ip("-n", ns, "addr", "add", "198.18.0.1/32", "dev", "lo")
    with _inside(ns):
        rx, txs = _refcount_peers(fam, host)
    try:
        srcs = _send_bursts(rx, txs)
        time.sleep(0.05)
        got = COMPILED.recv_from_many(rx.fileno(), 32)
        assert [a for _d, _s, a in got] == srcs
        firsts = [0] + [j for j in range(1, 32) if srcs[j] != srcs[j - 1]]
        for start in firsts:
            end = next((j for j in firsts if j > start), 32)
            addr = got[start][2]
            assert all(got[j][2] is addr for j in range(start, end)), "a burst shares one tuple"
            # held by the burst's items, `addr` and getrefcount's argument
            assert sys.getrefcount(addr) == (end - start) + 2, (start, end)
        assert len({id(got[j][2]) for j in firsts}) == len(firsts), "another burst, another tuple"
        host = got[0][2][0]               # every peer is on one host: one str, held by each tuple
        assert all(got[j][2][0] is host for j in firsts)
        assert sys.getrefcount(host) == len(firsts) + 2, "held by the tuples, `host` and the argument"
    finally:
        for s in (rx, *txs):
            s.close()


def test_no_reference_leaks_when_an_allocation_fails_midway(netns):  # noqa: F811
    """Every allocation of a call made to fail in turn (payload, host str, address tuple, item,
    list): MemoryError, and the objects already made are all released (allocated blocks flat)."""
    if COMPILED is None:
        pytest.skip("appliance.native._udp not in use (pure Python forced or not built)")
    _testcapi = pytest.importorskip("_testcapi")
    ns = netns()
    _ip("-n", ns, "addr", "add", "198.18.0.1/32", "dev", "lo")
    with _inside(ns):
        rx, txs = _refcount_peers(socket.AF_INET, "198.18.0.1")

    def once(nth: int) -> bool:
        _send_bursts(rx, txs)
        failed = False
        try:
            _testcapi.set_nomemory(nth, nth + 1)
            try:
                COMPILED.recv_from_many(rx.fileno(), 32)
            finally:
                _testcapi.remove_mem_hooks()
        except MemoryError:
            failed = True
        while True:                       # what a failed call left in the queue
            try:
                COMPILED.recv_from_many(rx.fileno(), 32)
            except BlockingIOError:
                return failed

    # Every collection below would walk the whole heap, and a CI worker's heap holds what all the
    # tests before this one left (120 collections: 3.5 s alone, 43 s in ci43b). gc.freeze() sets
    # the objects that exist now aside: the collections see only what the sweep makes, and a block
    # the call leaks still counts (frozen objects are freed by their counts as before).
    gc.freeze()
    try:
        failures, growth = 0, {}
        for nth in range(0, 60):
            for _ in range(5):
                once(nth)
            gc.collect()
            before = sys.getallocatedblocks()
            for _ in range(40):
                failures += once(nth)
            gc.collect()
            growth[nth] = sys.getallocatedblocks() - before
        assert failures >= 40 * 20, "the allocations inside the call should have failed"
        assert max(growth.values()) < 20, {k: v for k, v in growth.items() if v >= 20}
    finally:
        gc.unfreeze()
        for s in (rx, *txs):
            s.close()


@pytest.fixture
def gso_sender(netns):  # noqa: F811
    """rx (unconnected, GRO on: the server's socket) in B; in A one sender of GSO runs (a client,
    hostile or ours) and one of single datagrams."""
    a, b = _veth_pair(netns)
    with _inside(b):
        rx = UdpTransport(("198.18.201.2", 51431), None, gro=True)
    with _inside(a):
        runs = UdpTransport(("198.18.201.1", 51432), ("198.18.201.2", 51431), gso=True)
        single = UdpTransport(("198.18.201.1", 51433), ("198.18.201.2", 51431), gso=False)
    try:
        yield runs, single, rx
    finally:
        for t in (runs, single, rx):
            t.close()


@pytest.mark.parametrize("impl", IMPLS)
def test_gso_runs_after_single_datagrams_never_stretch_a_call_past_its_limit(gso_sender, impl):
    """recv_batch asks for as many messages as fit if each is as long a run as the last call's
    longest; a sender that sends singles (the estimate drops to 1) and then a burst of 64-segment
    runs brings up to MANY_BATCH runs into one receive (2048 datagrams: before the spill, all of
    them handled in one wake-up whose limit said 64). No call returns more than its limit; the
    rest waits (has_spill) and comes, in order, with nothing lost, at the next calls."""
    runs, single, rx = gso_sender
    _use(rx, impl)
    for i in range(10):
        single.send(b"single %d" % i)
    assert len(_drain(rx, 10)) == 10
    assert rx._run_len == 1
    sent = []
    for k in range(40):
        run = [b"\x48" + bytes([k]) * 99] * 64          # data packets (P_DATA_V2): only they share a GSO run
        runs.send_batch(run)
        sent += run
    assert runs.stats["gso_sends"] == 40
    assert _wait_readable(rx, 3.0)
    time.sleep(0.1)
    got, sizes = [], []
    end = time.monotonic() + 5
    while len(got) < len(sent) and time.monotonic() < end:
        if rx.has_spill or _wait_readable(rx, 0.2):
            b = rx.recv_batch(64)
            sizes.append(len(b))
            got += b
    assert max(sizes) == 64 and len(sizes) >= len(sent) // 64, sizes
    assert [d for d, _a in got] == sent
    assert rx.stats["received"] == 10 + len(sent)       # each datagram counted once, when handed out
    assert not rx.has_spill
    second = rx.recv_batch(64) if _wait_readable(rx, 0.05) else []
    assert second == []


@pytest.fixture
def dual_stack(netns):  # noqa: F811
    """A dual-stack server socket (GRO on) and a plain reference socket beside it in B; in A
    senders from IPv4 (mapped on the server's socket), two IPv6 globals and a link-local address,
    each one sending GSO runs (as our client) and one single datagrams (as OpenVPN's)."""
    a, b = _veth_pair(netns)
    for ns, dev, addrs in ((a, "utva", ("2001:db8:203::1", "2001:db8:203::3", "fe80::1")),
                           (b, "utvb", ("2001:db8:203::2", "fe80::2"))):
        for addr in addrs:
            _ip("-n", ns, "addr", "add", f"{addr}/64", "dev", dev, "nodad")
        wait_local_addresses(ns, addrs)
    with _inside(b):
        rx = UdpTransport(("::", PORT_C), None, family=socket.AF_INET6, gro=True)
        ref = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        ref.bind(("::", PORT_REF))
        ref.settimeout(3)
    senders = []
    with _inside(a):
        idx_a = socket.if_nametoindex("utva")
        for fam, src, dst in ((socket.AF_INET, ("198.18.201.1", 0), "198.18.201.2"),
                              (socket.AF_INET6, ("2001:db8:203::1", 0), "2001:db8:203::2"),
                              (socket.AF_INET6, ("2001:db8:203::3", 0), "2001:db8:203::2"),
                              (socket.AF_INET6, ("fe80::1", 0, 0, idx_a), f"fe80::2%{idx_a}")):
            for gso in (True, False):
                s = socket.socket(fam, socket.SOCK_DGRAM)
                s.bind(src)
                senders.append((s, dst, gso))
    try:
        yield senders, rx, ref
    finally:
        for s, _d, _g in senders:
            s.close()
        ref.close()
        rx.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 1400), st.integers(1, 12)), min_size=1, max_size=10),
       st.integers(1, 80), st.integers(0, 2**32))
def test_dual_stack_addresses_equal_recvfrom_in_both_implementations(dual_stack, plan, limit, seed):
    """Any mix of IPv4 (v4-mapped), IPv6 global and link-local senders, single datagrams and GSO
    runs, read with any limit: the compiled path and the twin hand over exactly the (payload,
    address) sequence plain recvfrom gets for the same datagrams."""
    senders, rx, ref = dual_stack
    results = {}
    for impl in IMPLS:
        if impl == "compiled" and COMPILED is None:
            continue
        rx._recv_from_many = COMPILED.recv_from_many if impl == "compiled" else None
        rnd = random.Random(seed)
        sent = 0
        for who, size, count in plan:
            s, dst, gso = senders[who]
            run = [rnd.randbytes(size) for _ in range(count)]
            for port in (PORT_REF, PORT_C):
                if gso and count > 1 and size:
                    s.sendmsg([b"".join(run)], [(17, 103, struct.pack("=H", size))], 0, (dst, port))
                else:
                    for d in run:
                        s.sendto(d, (dst, port))
            sent += count
        want = [ref.recvfrom(65535) for _ in range(sent)]
        got = _drain(rx, sent)
        assert got == want, impl
        results[impl] = got
    if len(results) == 2:
        assert results["compiled"] == results["python"]


_GC_SCAN_CHILD = r"""
import gc, socket, sys
from appliance.native import _udp
fn = getattr(_udp, sys.argv[1])
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
scanned, collections, during = [0], [0], 0
def look_at_every_list(phase, info):
    if phase == "stop":
        collections[0] += 1
        for o in gc.get_objects():
            if type(o) is list:
                o[:]                              # a copy: a reference to each item
                scanned[0] += 1
keep = [[i] for i in range(300)]                  # something for each collection to look at
for _ in range(50):
    for i in range(32):
        b.send(b"%d" % i)
    gc.disable()
    # The tuple free lists emptied (a tuple taken from one is not counted by the collector), and
    # the collector's count over its threshold: the call's tuples are new objects, and each
    # second one collects.
    hold = [tuple([i, i]) for i in range(2500)] + [tuple([i, i, i]) for i in range(2500)]
    gc.callbacks.append(look_at_every_list)
    gc.set_threshold(1)
    gc.enable()
    try:
        c0 = collections[0]
        got = fn(a.fileno(), 32)
        during += collections[0] - c0
    finally:
        gc.set_threshold(700, 10, 10)
        gc.callbacks.remove(look_at_every_list)
    assert [x[0] for x in got] == [b"%d" % i for i in range(32)], got
print("whole", scanned[0], during)
"""


@pytest.mark.parametrize("name", ["recv_many", "recv_from_many"])
def test_a_collection_during_the_call_sees_no_half_made_list(name):
    """Making the result's tuples may run the cycle collector, and with it gc.callbacks (what a
    memory profiler or leak tracker registers) that may look at every tracked object: no list
    with empty slots may be among them (copying one dereferenced NULL: the process died of
    SIGSEGV). The list is made last, when every item is whole. In a child process: a failure is
    a crash."""
    if COMPILED is None:
        pytest.skip("appliance.native._udp not in use (pure Python forced or not built)")
    r = subprocess.run([sys.executable, "-c", _GC_SCAN_CHILD, name], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    whole, scanned, during = r.stdout.split()
    assert whole == "whole" and int(scanned) > 0, r.stdout
    if int(during) == 0:
        pytest.skip("the collector did not run inside the calls on this Python (3.12+ defers it)")
