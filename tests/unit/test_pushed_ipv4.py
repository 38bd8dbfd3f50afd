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
