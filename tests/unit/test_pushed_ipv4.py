"""The pushed ifconfig's addresses are read by the same rule as ipaddress.IPv4Address (the
parser that used to read them), for anything a server may send."""
from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.openvpn.keymethod import _ipv4

TRICKY = ["1.2.3.4", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1..3.4",
          "", "1.2.3.4 ", " 1.2.3.4", "+1.2.3.4", "1.2.3.-4", "١.٢.٣.٤", "1.2.3.0x4", "1.2.3.4\n", "::1",
          "1.2.3.255", "1.2.3.0255", "0.0.0.00", "1_0.2.3.4", "².2.3.4"]
# Each Hypothesis test's examples (2000, 800 or 1500 before): the bulk of the cases is in the
# deterministic sweeps at the end of the file, ~250 times cheaper a case (see there).
HYPOTHESIS_EXAMPLES = 200


def _ref(text: str) -> str | None:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        return None


def _ours(text: str) -> str | None:
    try:
        return _ipv4(text)
    except ValueError:
        return None


def test_tricky_addresses_read_as_ipaddress_reads_them():
    for t in TRICKY:
        assert _ours(t) == _ref(t), t


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None)
@given(st.one_of(st.text(alphabet="0123456789.x-+ ", max_size=20),
                 st.lists(st.integers(-5, 1000).map(str), min_size=1, max_size=6).map(".".join),
                 st.ip_addresses(v=4).map(str)))
def test_any_text_reads_as_ipaddress_reads_it(text):
    assert _ours(text) == _ref(text)


# The client's tunnel set-up reads pushed routes by the same rule (gateway/tunnel.py _v4, _covers4).
from appliance.gateway.tunnel import _covers4, _v4  # noqa: E402


def _v4_or_none(text: str) -> int | None:
    try:
        return _v4(text)
    except ValueError:
        return None


def _ref_covers4(net: str, mask: str, addr: str) -> bool:
    """What _covers4 answered when it built ipaddress objects."""
    from appliance.gateway.server_net import mask_to_prefix
    if ":" in addr:
        return False
    try:
        return ipaddress.IPv4Address(addr) in ipaddress.IPv4Network(f"{net}/{mask_to_prefix(mask)}", strict=False)
    except ValueError:
        return False


def test_route_addresses_read_as_ipaddress_reads_them():
    for t in TRICKY + ["1.2.3.4\0", "\udc80.1.2.3", "0x1.2.3.4", "1.2.3.04"]:
        ref = _ref(t)
        assert _v4_or_none(t) == (None if ref is None else int(ipaddress.IPv4Address(ref))), repr(t)


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None)
@given(st.one_of(st.text(alphabet="0123456789.x-+ ", max_size=20),
                 st.lists(st.integers(-5, 1000).map(str), min_size=1, max_size=6).map(".".join),
                 st.ip_addresses(v=4).map(str)))
def test_any_route_text_reads_as_ipaddress_reads_it(text):
    ref = _ref(text)
    assert _v4_or_none(text) == (None if ref is None else int(ipaddress.IPv4Address(ref)))


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None)
@given(st.ip_addresses(v=4).map(str), st.one_of(st.integers(0, 32).map(str), st.integers(-1, 40).map(str),
                                                 st.ip_addresses(v=4).map(str)),
       st.one_of(st.ip_addresses(v=4).map(str), st.sampled_from(["::1", "1.2.3", "01.2.3.4", ""])))
def test_route_cover_is_ipaddress_containment(net, mask, addr):
    assert _covers4(net, mask, addr) == _ref_covers4(net, mask, addr)


def test_route_cover_examples():
    assert _covers4("198.18.0.0", "255.255.0.0", "198.18.7.1")
    assert not _covers4("198.18.0.0", "255.255.0.0", "198.19.7.1")
    assert _covers4("0.0.0.0", "0.0.0.0", "198.19.7.1")
    assert _covers4("198.18.5.9", "255.255.255.0", "198.18.5.200")       # host bits in the route's net
    assert not _covers4("198.18.0.0", "255.0.255.0", "198.18.0.1")        # not a mask


# The pushed address's checks against the server's and the host's addresses (tunnel.py
# _address_not_claimed) compare by _ip_value and _on_link4 where they built ipaddress objects.
from appliance.gateway.tunnel import _ip_value, _on_link4  # noqa: E402

ANY_ADDRESS = st.one_of(st.ip_addresses().map(str), st.sampled_from(
    TRICKY + ["fe80::1%eth0", "fe80::1%eth1", "::ffff:1.2.3.4", "1.2.3.4%eth0", "::", "1:2::3::4", "1.2.3.4/24"]))


def _ip_value_or_none(text: str):
    try:
        return _ip_value(text)
    except ValueError:
        return None


def _ref_ip(text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None)
@given(ANY_ADDRESS, ANY_ADDRESS)
def test_address_identity_is_ipaddress_identity(a, b):
    ra, rb = _ref_ip(a), _ref_ip(b)
    va, vb = _ip_value_or_none(a), _ip_value_or_none(b)
    assert (va is None) == (ra is None)
    if ra is not None and rb is not None:
        assert (va == vb) == (ra == rb)


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None)
@given(st.ip_addresses(v=4), st.ip_addresses(v=4), st.integers(-2, 40))
def test_on_link_is_ipaddress_containment(ip, addr, plen):
    try:
        ref = ip in ipaddress.IPv4Network(f"{addr}/{plen}", strict=False)
    except ValueError:
        ref = None
    try:
        ours = _on_link4(int(ip), int(addr), plen)
    except ValueError:
        ours = None
    assert ours == ref


def test_on_link_examples():
    a = int(ipaddress.IPv4Address("10.8.0.6"))
    assert _on_link4(a, int(ipaddress.IPv4Address("10.0.0.1")), 8)          # the campus WAN case
    assert not _on_link4(a, int(ipaddress.IPv4Address("10.0.0.1")), 24)
    assert _on_link4(a, int(ipaddress.IPv4Address("192.0.2.1")), 0)
    assert _on_link4(a, a, 32) and not _on_link4(a, a + 1, 32)


# Deterministic sweeps beside the Hypothesis tests above. Hypothesis spends ~2.5 ms of its own per
# example (generation, the engine's bookkeeping) and the functions under test a few microseconds, so
# its 6,600 examples here took 15 s alone and 37 s in a loaded CI (helper trim47). Its tests keep
# what only it does -- values drawn towards the edges, a failing case shrunk -- at 200 examples
# each; the sweeps below put more cases than before to the same questions, at ~10 us a case:
# every text of up to three characters over the tests' alphabet, every dotted text of up to three
# parts from PARTS and of four from EDGES, each address beside its one-bit neighbours at every
# prefix length, and seeded random draws from the strategies' own ranges (the seed fixed: a
# failure repeats).
import itertools  # noqa: E402
import random  # noqa: E402

ALPHABET = "0123456789.x-+ "
PARTS = ["", "0", "00", "01", "1", "9", "10", "99", "100", "199", "249", "255", "256", "300", "999", "1000",
         "-1", "-0", "+1", "0x1", " 1"]
EDGES = ["", "0", "00", "01", "9", "255", "256", "1000", "-1", "+1", "0x1", " 1"]      # for four parts


def _short_texts():
    for n in range(4):
        for chars in itertools.product(ALPHABET, repeat=n):
            yield "".join(chars)


def _dotted():
    for n in range(1, 4):
        for parts in itertools.product(PARTS, repeat=n):
            yield ".".join(parts)
    for parts in itertools.product(EDGES, repeat=4):
        yield ".".join(parts)


def _random_texts(rng: random.Random, count: int):
    for _ in range(count):
        yield "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 20)))
        yield ".".join(str(rng.randint(-5, 1000)) for _ in range(rng.randint(1, 6)))
        yield str(ipaddress.IPv4Address(rng.getrandbits(32)))


def _texts():
    yield from TRICKY
    yield from _short_texts()
    yield from _dotted()
    yield from _random_texts(random.Random(47), 5_000)


def test_every_short_and_dotted_text_reads_as_ipaddress_reads_it():
    count = 0
    for t in _texts():
        ref = _ref(t)
        assert _ours(t) == ref, repr(t)
        assert _v4_or_none(t) == (None if ref is None else int(ipaddress.IPv4Address(ref))), repr(t)
        count += 1
    assert count > 45_000


def test_route_cover_sweep_is_ipaddress_containment():
    rng = random.Random(4747)
    masks = [str(ipaddress.IPv4Address((0xFFFFFFFF << (32 - p)) & 0xFFFFFFFF)) for p in range(33)]
    odd = ["::1", "1.2.3", "01.2.3.4", "", "255.0.255.0", "0.255.255.255", "33", "-1", "40", "01"]
    for _ in range(2_000):
        net = str(ipaddress.IPv4Address(rng.getrandbits(32)))
        base = int(ipaddress.IPv4Address(net))
        p = rng.randint(0, 32)
        near = base ^ (1 << rng.randrange(32))                 # one bit off: inside or outside by the prefix
        addr = rng.choice([str(ipaddress.IPv4Address(near)), str(ipaddress.IPv4Address(rng.getrandbits(32))),
                           rng.choice(odd), net])
        for mask in (masks[p], str(p), str(rng.randint(-1, 40)), str(ipaddress.IPv4Address(rng.getrandbits(32))),
                     rng.choice(odd)):
            assert _covers4(net, mask, addr) == _ref_covers4(net, mask, addr), (net, mask, addr)


def test_address_identity_sweep_is_ipaddress_identity():
    rng = random.Random(474)
    fixed = TRICKY + ["fe80::1%eth0", "fe80::1%eth1", "::ffff:1.2.3.4", "1.2.3.4%eth0", "::", "1:2::3::4",
                      "1.2.3.4/24", "1.2.3.4", "::0", "0::", "FE80::1%eth0", "0:0:0:0:0:0:0:1"]
    drawn = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(100)]
    drawn += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(100)]
    drawn += [d.upper() for d in drawn[100:140]]                             # the same address spelt otherwise
    values = fixed + drawn
    for a, b in itertools.chain(itertools.product(fixed, values), ((rng.choice(values), rng.choice(values))
                                                                   for _ in range(5_000))):
        ra, rb = _ref_ip(a), _ref_ip(b)
        va, vb = _ip_value_or_none(a), _ip_value_or_none(b)
        assert (va is None) == (ra is None), repr(a)
        if ra is not None and rb is not None:
            assert (va == vb) == (ra == rb), (a, b)


def test_on_link_sweep_is_ipaddress_containment():
    rng = random.Random(47)
    for _ in range(150):
        addr = rng.getrandbits(32)
        ips = [addr, addr ^ 0xFFFFFFFF, rng.getrandbits(32)] + [addr ^ (1 << k) for k in range(32)]
        for plen in range(-2, 41):
            try:
                net = ipaddress.IPv4Network(f"{ipaddress.IPv4Address(addr)}/{plen}", strict=False)
            except ValueError:
                net = None
            for ip in ips:
                try:
                    ours = _on_link4(ip, addr, plen)
                except ValueError:
                    ours = None
                assert ours == (None if net is None else ipaddress.IPv4Address(ip) in net), (ip, addr, plen)
