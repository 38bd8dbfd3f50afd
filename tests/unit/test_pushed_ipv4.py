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


@settings(max_examples=2000, deadline=None)
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


@settings(max_examples=800, deadline=None)
@given(st.one_of(st.text(alphabet="0123456789.x-+ ", max_size=20),
                 st.lists(st.integers(-5, 1000).map(str), min_size=1, max_size=6).map(".".join),
                 st.ip_addresses(v=4).map(str)))
def test_any_route_text_reads_as_ipaddress_reads_it(text):
    ref = _ref(text)
    assert _v4_or_none(text) == (None if ref is None else int(ipaddress.IPv4Address(ref)))


@settings(max_examples=800, deadline=None)
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


@settings(max_examples=1500, deadline=None)
@given(ANY_ADDRESS, ANY_ADDRESS)
def test_address_identity_is_ipaddress_identity(a, b):
    ra, rb = _ref_ip(a), _ref_ip(b)
    va, vb = _ip_value_or_none(a), _ip_value_or_none(b)
    assert (va is None) == (ra is None)
    if ra is not None and rb is not None:
        assert (va == vb) == (ra == rb)


@settings(max_examples=1500, deadline=None)
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
