"""A hostile server's `ifconfig` / `ifconfig-ipv6` (openvpn/keymethod.py): each is an address of
its own family, or the push is refused as OpenVPN refuses it (options error, restart)."""
from __future__ import annotations

import pytest

from appliance.openvpn.keymethod import parse_push_reply_untrusted


@pytest.mark.parametrize("bad", [
    "ifconfig fd00:5::2 255.255.255.0", "ifconfig 198.18.70.2 fd00::1", "ifconfig 198.18.70.2 255.255.255.0x",
    "ifconfig-ipv6 198.18.70.2/24", "ifconfig-ipv6 fd00::2/129", "ifconfig-ipv6 fd00::2/-1",
    "ifconfig-ipv6 fe80::2%eth0/64", "ifconfig-ipv6 fd00::2/64 198.18.70.1",
])
def test_an_ifconfig_of_the_wrong_family_or_form_is_left_out_and_noted(bad):
    """An IPv6 address in `ifconfig` (or IPv4 in `ifconfig-ipv6`) went onto the TUN device as
    given: the server could add addresses of a family it had not pushed. As OpenVPN 2.6
    ("ifconfig parms ... must be valid addresses"): the option is left out and logged, the
    push goes on (the server's valid ifconfig after it is taken)."""
    p = parse_push_reply_untrusted(f"PUSH_REPLY,topology subnet,{bad},ifconfig 198.18.70.9 255.255.255.0")
    assert p.ifconfig == ("198.18.70.9", "255.255.255.0") and p.ifconfig_ipv6 is None
    assert len(p.malformed) == 1 and "must be valid addresses" in p.malformed[0], p.malformed


def test_well_formed_ifconfigs_still_parse():
    p = parse_push_reply_untrusted("PUSH_REPLY,ifconfig 198.18.70.2 255.255.255.0,"
                                   "ifconfig-ipv6 fd00:70::2/64 fd00:70::1")
    assert p.ifconfig == ("198.18.70.2", "255.255.255.0") and p.ifconfig_ipv6 == ("fd00:70::2/64", "fd00:70::1")
    p = parse_push_reply_untrusted("PUSH_REPLY,ifconfig-ipv6 fd00:70::2")
    assert p.ifconfig_ipv6 == ("fd00:70::2", "")


def test_block_ipv6_is_understood_not_ignored():
    """OpenVPN lets a server push block-ipv6; recorded as ignored, the client's IPv6 went on
    leaving outside the tunnel that the server meant to be the only way out."""
    p = parse_push_reply_untrusted("PUSH_REPLY,ifconfig 198.18.70.2 255.255.255.0,block-ipv6")
    assert p.block_ipv6 and p.ignored == []
