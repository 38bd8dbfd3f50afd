"""The compiled GroBatch (appliance/native/gro.c) against its reference, offload.PyGroBatch: random
sequences of packets -- TCP segments of a few flows (IPv4 to this host and elsewhere, IPv6) in and
out of order, PSH, odd and short lengths, corrupted checksums, bursts past GRO_MAX, non-TCP,
truncated, mutated and garbage bytes, bad length fields -- with takes, `local` changes and an owner
answering True, False, non-bools or raising, go through both. Every add must end alike (None or the
same exception), and every take, len, bad_checksums and owner call must be identical."""
from __future__ import annotations

import gc
import random
import socket
import struct
import sys

import pytest
from hypothesis import given, settings, strategies as st

from appliance.tun.offload import GRO_MAX, PyGroBatch, checksum

from .gro_impls import c_gro_batch, gro_cls  # noqa: F401 - gro_cls: a fixture (both implementations)

LOCAL_DST = socket.inet_aton("198.18.20.1")
OTHER_DST = socket.inet_aton("198.18.20.9")
SRC = socket.inet_aton("198.18.21.5")
SRC6 = socket.inet_pton(socket.AF_INET6, "2001:db8::5")
DST6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1")
TS = b"\x01\x01\x08\x0a" + struct.pack("!II", 11111, 22222)
MSS = 1448
SEQ0 = (1000, 0x7FFFF000, 0xFFFFFFFF - 20000, 0xFFFFF000)    # where each flow starts: two wrap past 2**32


PATTERN = bytes((k * 7) & 0xFF for k in range(256))     # payload byte k of a segment at seq: PATTERN[(seq + k) % 256]


class Flow:
    """One TCP sender's segments: (v6, dst, sport, options, ttl)."""

    def __init__(self, v6: bool, dst: bytes, sport: int, opts: bytes, ttl: int = 64) -> None:
        self.v6, self.dst, self.sport, self.opts, self.ttl = v6, dst, sport, opts, ttl

    def segment(self, seq: int, size: int, flags: int = 0x10, ack: int = 777, win: int = 502) -> bytearray:
        thl = 20 + len(self.opts)
        start = seq % 256              # sliced from a repeated PATTERN: a byte at a time, the random
        payload = (PATTERN * ((start + size) // 256 + 1))[start:start + size]    # test's packets took ~1/3 of its time
        tcp = bytearray(struct.pack("!HHIIBBHHH", self.sport, 5201, seq & 0xFFFFFFFF, ack, (thl // 4) << 4, flags,
                                    win, 0, 0) + self.opts + payload)
        if self.v6:
            pseudo = SRC6 + DST6 + struct.pack("!IxxxB", len(tcp), 6)
            ip = bytearray(struct.pack("!IHBB", 0x60000000, len(tcp), 6, self.ttl) + SRC6 + DST6)
        else:
            pseudo = SRC + self.dst + struct.pack("!xBH", 6, len(tcp))
            ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), seq & 0xFFFF, 0x4000, self.ttl, 6, 0,
                                       SRC, self.dst))
            struct.pack_into("!H", ip, 10, checksum(bytes(ip)))
        struct.pack_into("!H", tcp, 16, checksum(pseudo + bytes(tcp)))
        return ip + tcp


FLOWS = [Flow(False, LOCAL_DST, 40000, TS), Flow(False, OTHER_DST, 40001, b""), Flow(True, DST6, 40002, TS),
         Flow(False, LOCAL_DST, 40003, b"", ttl=63)]


def others() -> list[bytes]:
    """Packets that must pass through untouched, each for another reason."""
    f = FLOWS[1]
    syn = f.segment(1, 10, flags=0x02)
    fin = f.segment(1, 10, flags=0x11)
    frag = f.segment(1, 10)
    frag[6] = 0x20                                              # MF
    ipopt = f.segment(1, 10)
    ipopt[0] = 0x46
    pure_ack = f.segment(1, 0)
    reserved = f.segment(1, 10)
    reserved[32] |= 0x01
    udp = bytearray(f.segment(1, 10))
    udp[9] = 17
    v6ext = FLOWS[2].segment(1, 10)
    v6ext[6] = 0                                                # hop-by-hop header next
    big_thl = f.segment(1, 4)
    big_thl[32] = 0xF0                                          # 60-byte TCP header in a 44-byte packet
    return [bytes(p) for p in (syn, fin, frag, ipopt, pure_ack, reserved, udp, v6ext, big_thl)]


OTHERS = others()

LOCALS = [
    frozenset([LOCAL_DST]),
    frozenset(),
    frozenset([OTHER_DST, LOCAL_DST, b"too long", b""]),       # still all bytes: the C cache
    frozenset([LOCAL_DST, "not bytes", 5]),                     # asked through Python in C
    {LOCAL_DST},                                                # a set may change: asked through Python
    [OTHER_DST],
    (LOCAL_DST,),
]


class OwnerError(Exception):
    pass


class Owner:
    """Answers from a script, in turn; records what it was asked."""

    def __init__(self, answers: list) -> None:
        self.answers, self.asked = answers, []

    def __call__(self, ap: bytes):  # noqa: ANN204 - returns whatever the script says
        assert type(ap) is bytes and len(ap) == 12
        a = self.answers[len(self.asked) % len(self.answers)]
        self.asked.append(ap)
        if a == "raise":
            raise OwnerError(len(self.asked))
        return a


size = st.one_of(st.just(MSS), st.integers(1, MSS), st.integers(1, 8))
op = st.one_of(
    st.tuples(st.just("seg"), st.integers(0, 3), st.sampled_from(["next", "next", "next", "same", "back", "jump"]),
              size, st.booleans(), st.integers(0, 9)),
    st.tuples(st.just("burst"), st.integers(0, 3), st.integers(1, 60)),
    st.tuples(st.just("run"), st.integers(0, 3), st.lists(st.tuples(size, st.booleans()), min_size=1, max_size=8)),
    st.tuples(st.just("edge"), st.integers(0, 3), st.integers(-1, 1), st.sampled_from([MSS, 1000, 7])),
    st.tuples(st.just("mutate"), st.integers(0, 3), st.one_of(st.integers(0, 80), st.integers(0, 200)),
              st.integers(1, 255), st.booleans()),
    st.tuples(st.just("truncate"), st.integers(0, 3), st.integers(0, 120)),
    st.tuples(st.just("length"), st.integers(0, 3), st.integers(0, 0xFFFF)),
    st.tuples(st.just("garbage"), st.binary(max_size=100)),
    st.tuples(st.just("garbage"), st.binary(min_size=40, max_size=100).map(lambda b: b"\x45" + b[1:])),
    st.tuples(st.just("garbage"), st.binary(min_size=60, max_size=100).map(lambda b: b"\x60" + b[1:])),
    st.tuples(st.just("other"), st.sampled_from(range(len(OTHERS)))),
    st.tuples(st.just("take")),
    st.tuples(st.just("local"), st.sampled_from(range(len(LOCALS)))),
)
answers = st.lists(st.sampled_from([True, False, "raise", 0, 1, "", "yes"]), min_size=1, max_size=6)


def packets(ops: list):
    """-> the op list as ("add", bytes) / ("take",) / ("local", i) steps."""
    nxt = dict(enumerate(SEQ0))
    last = dict(nxt)
    for o in ops:
        kind = o[0]
        if kind == "seg":
            _, f, mode, n, psh, variant = o
            seq = {"next": nxt[f], "same": last[f], "back": nxt[f] - MSS, "jump": nxt[f] + MSS}[mode]
            kw = {}
            if variant == 1:
                kw["ack"] = 778                                 # another key
            elif variant == 2:
                kw["win"] = 600
            p = FLOWS[f].segment(seq, n, flags=0x18 if psh else 0x10, **kw)
            if variant == 3:
                p[-1] ^= 0x5A                                   # payload corrupted, checksum kept
            last[f], nxt[f] = seq, max(nxt[f], seq + n)
            yield "add", bytes(p)
        elif kind == "burst":
            _, f, count = o
            for _ in range(count):
                last[f] = nxt[f]
                yield "add", bytes(FLOWS[f].segment(nxt[f], MSS))
                nxt[f] += MSS
        elif kind == "run":                                     # in order, some PSH
            _, f, spec = o
            for n, psh in spec:
                last[f] = nxt[f]
                yield "add", bytes(FLOWS[f].segment(nxt[f], n, flags=0x18 if psh else 0x10))
                nxt[f] += n
        elif kind == "edge":                                    # a new super-packet that ends at GRO_MAX + delta
            _, f, delta, g = o
            nxt[f] += MSS
            hdr = (40 if FLOWS[f].v6 else 20) + 20 + len(FLOWS[f].opts)
            k = (GRO_MAX - hdr) // g
            rest = GRO_MAX + delta - hdr - k * g
            if rest < 1:
                k, rest = k - 1, rest + g
            for n in [g] * k + [rest]:
                last[f] = nxt[f]
                yield "add", bytes(FLOWS[f].segment(nxt[f], n))
                nxt[f] += n
        elif kind == "mutate":                                  # any byte; checksums fixed up or not
            _, f, pos, x, fix = o
            p = FLOWS[f].segment(nxt[f], 100)
            p[pos % len(p)] ^= x
            if fix:
                refresh_tcp_checksum(p)
            yield "add", bytes(p)
        elif kind == "truncate":
            _, f, cut = o
            yield "add", bytes(FLOWS[f].segment(nxt[f], 60)[:cut])
        elif kind == "length":
            _, f, n = o
            p = FLOWS[f].segment(nxt[f], 60)
            struct.pack_into("!H", p, 4 if FLOWS[f].v6 else 2, n)
            yield "add", bytes(p)
        elif kind == "garbage":
            yield "add", o[1]
        elif kind == "other":
            yield "add", OTHERS[o[1]]
        else:
            yield o


def refresh_tcp_checksum(p: bytearray) -> None:
    """Make the TCP checksum match whatever the headers now say (the packet's version nibble
    picks where the TCP header starts)."""
    l4 = 40 if p[0] >> 4 == 6 else 20
    pseudo = bytes(p[8:40]) + struct.pack("!IxxxB", len(p) - l4, 6) if l4 == 40 else \
        bytes(p[12:20]) + struct.pack("!xBH", 6, len(p) - l4)
    p[l4 + 16:l4 + 18] = b"\0\0"
    struct.pack_into("!H", p, l4 + 16, checksum(pseudo + bytes(p[l4:])))


def as_buffer(p: bytes, how: int, scratch: bytearray):
    """The same bytes as bytes, a bytearray, or a view of a reused buffer (as decrypted packets are)."""
    if how == 0:
        return p
    if how == 1:
        return bytearray(p)
    scratch[:] = p
    return memoryview(scratch)


def outcome(fn, *args):  # noqa: ANN001, ANN201 - any call
    try:
        return ("ok", fn(*args))
    except Exception as e:  # noqa: BLE001 - the exception is the outcome compared
        return ("raised", type(e), e.args)


def normal(out: list) -> list:
    """take()'s result with the packet as (type, bytes): types matter to callers that write them."""
    return [(h, type(p), bytes(p), n) for h, p, n in out]


def run(cls: type, steps: list, owner_answers: list | None, local0: int) -> list:
    owner = Owner(owner_answers) if owner_answers is not None else None
    b = cls(LOCALS[local0], owner)
    log = []
    scratch = bytearray()
    for i, step in enumerate(steps):
        if step[0] == "add":
            buf = as_buffer(step[1], i % 3, scratch)
            log.append(outcome(b.add, buf))
            if isinstance(buf, memoryview):
                buf.release()
                scratch[:] = bytes(len(scratch))                # the next packet overwrites it
        elif step[0] == "take":
            r = outcome(b.take)
            log.append(("take", normal(r[1])) if r[0] == "ok" else r)
        else:
            b.local = LOCALS[step[1]]
        log.append((len(b), b.bad_checksums))
    log.append(("take", normal(b.take())))
    log.append(("asked", owner.asked if owner else None))
    return log


@settings(max_examples=500, deadline=None)
@given(ops=st.lists(op, max_size=60), owner_answers=st.one_of(st.none(), answers),
       local0=st.sampled_from(range(len(LOCALS))))
def test_the_compiled_grobatch_does_exactly_what_the_python_one_does(ops, owner_answers, local0):
    steps = list(packets(ops))
    want = run(PyGroBatch, steps, owner_answers, local0)
    got = run(c_gro_batch(), steps, owner_answers, local0)
    assert got == want


def test_a_burst_past_gro_max_and_every_kind_of_segment_end_alike():
    """A fixed case of what the random one covers, so a regression shows without shrinking."""
    steps = [("add", bytes(FLOWS[f].segment(SEQ0[f] + i * MSS, MSS))) for f in (0, 1, 2) for i in range(50)]
    steps += [("add", p) for p in OTHERS]
    want = run(PyGroBatch, steps, [True], 0)
    got = run(c_gro_batch(), steps, [True], 0)
    assert got == want
    takes = [x for x in want if x[0] == "take"][-1][1]
    assert all(len(p) <= GRO_MAX for _h, _t, p, _n in takes)
    assert [n for _h, _t, _p, n in takes][:6] == [45, 5, 45, 5, 45, 5]      # 45 * 1448 + headers fit


@pytest.mark.parametrize("f", range(len(FLOWS)))
def test_every_header_byte_changed_ends_alike(f):
    """Each byte of the IP and TCP headers of a segment between two good ones, flipped in a few
    ways, with the checksum left (caught as bad unless local) or made to match (then only the
    header's meaning decides): the exhaustive complement of the random test's mutations."""
    flow = FLOWS[f]
    hlen = (40 if flow.v6 else 20) + 20 + len(flow.opts)
    seq = SEQ0[f]
    before, after = bytes(flow.segment(seq, 100)), bytes(flow.segment(seq + 200, 100))
    for pos in range(hlen):
        for x in (0x01, 0x02, 0x08, 0x0F, 0x10, 0x40, 0x80, 0xFF):
            for fix in (False, True):
                p = flow.segment(seq + 100, 100)
                p[pos] ^= x
                if fix:
                    refresh_tcp_checksum(p)
                steps = [("add", before), ("add", bytes(p)), ("add", after)]
                want = run(PyGroBatch, steps, [True], 0)
                assert run(c_gro_batch(), steps, [True], 0) == want, (pos, x, fix)


def test_an_ipv4_header_summing_to_zero_gets_the_checksum_python_gives():
    """offload.checksum's one special case: a header whose words sum to 0 (mod 0xFFFF) gets 0x0000
    (0xFFFF only for all-zero data). The IP ID makes the merged header sum to exactly that."""
    flow = FLOWS[1]
    segs = [flow.segment(5000 + i * MSS, MSS) for i in range(3)]
    merged = bytearray(segs[0][:20])
    struct.pack_into("!HH", merged, 2, 20 + 20 + 3 * MSS, 0)            # length as merged, ID 0
    merged[10:12] = b"\0\0"
    ip_id = (0xFFFF - int.from_bytes(merged, "big") % 0xFFFF) % 0xFFFF
    for p in segs:
        struct.pack_into("!H", p, 4, ip_id)                              # the TCP checksum does not cover it
    steps = [("add", bytes(p)) for p in segs]
    want = run(PyGroBatch, steps, None, 1)
    (hdr, _t, pkt, n), = [x for x in want if x[0] == "take"][-1][1]
    assert n == 3 and pkt[10:12] == b"\0\0"
    assert run(c_gro_batch(), steps, None, 1) == want


def test_thousands_of_flows_in_one_batch_end_alike_and_the_next_batch_too():
    """The flow table grows (and is given back after the take) past anything a burst of 64 needs:
    each of 3000 flows gets two segments, the second after all the others' first."""
    flows = [Flow(i % 2 == 0, LOCAL_DST if i % 3 else OTHER_DST, 1024 + i, TS if i % 5 else b"") for i in range(3000)]
    steps = [("add", bytes(fl.segment(7000, 600))) for fl in flows] + [("add", bytes(fl.segment(7600, 600)))
                                                                       for fl in flows]
    steps = steps + [("take",)] + steps[:10] + steps[3000:3010]
    want = run(PyGroBatch, steps, [True, False], 0)
    assert run(c_gro_batch(), steps, [True, False], 0) == want
    first = [x for x in want if x[0] == "take"][0][1]
    assert len(first) == 3000 and all(n == 2 for _h, _t, _p, n in first)


@pytest.mark.parametrize("impl_name", ["python", "c"])
def test_an_owner_error_propagates_and_leaves_the_batch_as_it_was(impl_name):
    cls = PyGroBatch if impl_name == "python" else c_gro_batch()
    owner = Owner(["raise"])
    b = cls(frozenset([LOCAL_DST]), owner)
    first = bytes(FLOWS[1].segment(2000, MSS))                  # not local: the owner is not asked
    b.add(first)
    with pytest.raises(OwnerError):
        b.add(bytes(FLOWS[0].segment(1000, MSS)))
    assert len(b) == 1 and b.bad_checksums == 0
    (_h, p, n), = b.take()
    assert bytes(p) == first and n == 1


class Reentrant:
    """An owner that uses the batch asking it: takes it, or adds to it, mid-add."""

    def __init__(self, what: str) -> None:
        self.what, self.batch, self.taken = what, None, []

    def __call__(self, ap: bytes) -> bool:
        if self.what == "take":
            self.taken.append(normal(self.batch.take()))
        else:
            self.batch.owner = None                             # no recursion past one level
            for i in range(3):
                self.batch.add(bytes(FLOWS[0].segment(1000 + i * MSS, MSS)))
            self.batch.owner = self
        return True


@pytest.mark.parametrize("what", ["take", "add"])
def test_an_owner_that_uses_the_batch_mid_add_gets_what_python_gives(what):
    """Python code runs inside add() (the owner): it may take or add to the same batch. The C
    version must hold no pointer across that call, and end as the Python one does."""
    results = []
    for cls in (PyGroBatch, c_gro_batch()):
        owner = Reentrant(what)
        b = cls(frozenset([LOCAL_DST]), owner)
        owner.batch = b
        b.add(bytes(FLOWS[1].segment(2000, MSS)))
        for i in range(4):
            b.add(bytes(FLOWS[3].segment(4000 + i * MSS, MSS)))
        b.add(bytes(FLOWS[0].segment(1000 + 3 * MSS, MSS)))
        results.append((owner.taken, normal(b.take())))
    assert results[0] == results[1]


class SwappingLocal:
    """A `local` whose truth test replaces the batch's `local` (PyGroBatch reads `self.local` again
    for `in`, after `bool(self.local)`); it claims every address itself."""

    def __init__(self, replacement) -> None:  # noqa: ANN001 - any container
        self.batch, self.replacement = None, replacement

    def __bool__(self) -> bool:
        self.batch.local = self.replacement
        return True

    def __contains__(self, x: bytes) -> bool:
        return True


@pytest.mark.parametrize("replacement", [frozenset(), frozenset([LOCAL_DST]), [OTHER_DST], {LOCAL_DST}])
def test_a_local_replaced_by_its_own_truth_test_is_read_again_as_in_python(replacement):
    """The `in` is asked of whatever `local` is after its truth test ran, as in Python: a segment
    with a corrupted payload then goes through the checksum check (counted, alone) or is merged for
    the kernel to verify, alike."""
    results = []
    for cls in (PyGroBatch, c_gro_batch()):
        local = SwappingLocal(replacement)
        b = cls(local, None)
        local.batch = b
        bad = FLOWS[0].segment(1000, MSS)
        bad[-1] ^= 0x5A                                          # checksum no longer matches
        b.add(bytes(bad))
        b.add(bytes(FLOWS[0].segment(1000 + MSS, MSS)))
        results.append((b.bad_checksums, normal(b.take())))
    assert results[0] == results[1]


def test_add_and_take_hold_no_references():
    """Every object add and take touch is released: the packets passed through, the owner's
    arguments and answers, a raised exception. sys.getallocatedblocks counts the small objects
    (a leaked 12-byte argument or exception shows as one block per call); refcounts the inputs."""
    cls = c_gro_batch()
    owner = Owner([True, False, "raise"])
    b = cls(frozenset([LOCAL_DST]), owner)
    seg = [bytes(FLOWS[f].segment(1000 * (f + 1), MSS)) for f in range(4)] + OTHERS
    refs = [sys.getrefcount(p) for p in seg]

    def rounds(n: int) -> None:
        for _ in range(n):
            for p in seg:
                try:
                    b.add(p)
                except OwnerError:
                    pass
            b.take()
        owner.asked.clear()

    rounds(200)
    gc.collect()
    before = sys.getallocatedblocks()
    rounds(2000)
    gc.collect()
    assert sys.getallocatedblocks() - before < 200
    assert [sys.getrefcount(p) for p in seg] == refs
    assert sys.getrefcount(owner) == 3                          # b.owner, the name, the argument


class GuardedBuffer:
    """Packets placed to end exactly at an inaccessible page: a read one byte past the end of what
    add() was given faults (the test process dies) instead of reading a neighbour's bytes."""

    def __init__(self) -> None:
        import ctypes
        import mmap
        self.page = mmap.PAGESIZE
        self.map = mmap.mmap(-1, 2 * self.page)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(self.map))
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        if libc.mprotect(addr + self.page, self.page, 0) != 0:     # PROT_NONE
            raise OSError(ctypes.get_errno(), "mprotect")

    def view(self, p: bytes) -> memoryview:
        start = self.page - len(p)
        self.map[start:self.page] = p
        return memoryview(self.map)[start:self.page]


GUARD = GuardedBuffer()


# 150 Hypothesis examples a class (300 before) beside a seeded sweep of HOSTILE_SWEEP cases drawn the
# same way: Hypothesis's data generation was ~25 of each example's ~30 ms (--hypothesis-show-statistics,
# load ~11); it keeps its edge-biased draws and shrinking, the sweep the bulk of the cases (helper trim47b).
HOSTILE_SWEEP = 1000


def test_no_read_past_the_end_of_hostile_bytes_sweep(gro_cls):
    rng = random.Random(4747)

    def binary(least: int, most: int) -> bytes:
        n = rng.randint(least, min(most, least + 8)) if rng.random() < 0.3 else rng.randint(least, most)
        return rng.randbytes(n) if rng.random() < 0.8 else bytes(n)      # zeros too, as Hypothesis draws
    for _ in range(HOSTILE_SWEEP):
        garbage = []
        for _ in range(rng.randint(0, 20)):
            kind = rng.randrange(3)
            garbage.append(binary(0, 100) if kind == 0 else b"\x45" + binary(40, 100)[1:] if kind == 1
                           else b"\x60" + binary(60, 100)[1:])
        _no_read_past_the_end(gro_cls, garbage, rng.randint(0, 120))


@settings(max_examples=150, deadline=None)
@given(garbage=st.lists(st.one_of(st.binary(max_size=100),
                                  st.binary(min_size=40, max_size=100).map(lambda b: b"\x45" + b[1:]),
                                  st.binary(min_size=60, max_size=100).map(lambda b: b"\x60" + b[1:])), max_size=20),
       cut=st.integers(0, 120))
def test_no_read_past_the_end_of_hostile_bytes(gro_cls, garbage, cut):
    """Random bytes (0..100, with IPv4/IPv6 first bytes), and real segments cut short or with
    length fields and header lengths that claim more than is there, each ending at a guard page."""
    _no_read_past_the_end(gro_cls, garbage, cut)


def _no_read_past_the_end(gro_cls, garbage: list[bytes], cut: int) -> None:
    b = gro_cls(frozenset([LOCAL_DST]), lambda ap: True)
    for f in range(len(FLOWS)):
        p = FLOWS[f].segment(SEQ0[f], 60)
        liar = bytearray(p[:cut])
        if len(liar) > 33 and not FLOWS[f].v6:
            liar[32] = 0xF0                                     # a 60-byte TCP header
        for x in (bytes(p), bytes(p[:cut]), bytes(liar)):
            v = GUARD.view(x)
            b.add(v)
            v.release()
    for g in garbage:
        v = GUARD.view(g)
        b.add(v)
        v.release()
    assert sum(n for _h, _p, n in b.take()) == 3 * len(FLOWS) + len(garbage)
