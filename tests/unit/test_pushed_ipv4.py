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
