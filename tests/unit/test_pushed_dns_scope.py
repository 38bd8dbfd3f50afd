"""A hostile server's DNS push with an IPv6 `%scope` (openvpn/keymethod.py): Python's ipaddress
accepts `fe80::1%eth0`, and with it the server would pick a host interface for our DNS queries
(host resolver, the LAN forwarder): they would leave outside the tunnel."""
from __future__ import annotations

import pytest

from appliance.host.dns_settings import from_pushed
from appliance.openvpn.errors import BadPacket
from appliance.openvpn.keymethod import parse_push_reply_untrusted


def test_a_scoped_dhcp_option_dns6_is_dropped_as_openvpn_drops_it():
    p = parse_push_reply_untrusted("PUSH_REPLY,dhcp-option DNS6 fe80::1%eth0,dhcp-option DNS6 2001:db8::53,"
                                   "dhcp-option DNS 198.18.0.53")
    assert p.dns == ["2001:db8::53", "198.18.0.53"]
    assert from_pushed(p).servers == ("2001:db8::53", "198.18.0.53")


@pytest.mark.parametrize("addr", ["fe80::1%eth0", "[fe80::1%lo]:53", "[198.18.0.1]:53"])
def test_a_scoped_or_misbracketed_dns_server_address_is_a_bad_push(addr):
    with pytest.raises(BadPacket):
        parse_push_reply_untrusted(f"PUSH_REPLY,dns server 1 address {addr}")


def test_plain_dns_server_forms_still_parse():
    p = parse_push_reply_untrusted("PUSH_REPLY,dns server 1 address [2001:db8::1]:5353 198.18.0.9:54 2001:db8::2")
    assert p.dns_endpoints == [("2001:db8::1", 5353), ("198.18.0.9", 54), ("2001:db8::2", 53)]


def test_a_domain_with_a_trailing_newline_is_not_a_name():
    """`$` in the name pattern matched before a final newline: `a.b\\n` would reach resolv.conf
    as a line break (the push parser splits lines today; the check must not rely on it)."""
    from types import SimpleNamespace
    p = SimpleNamespace(dns=[], dhcp_options=[("DOMAIN", "a.b\n"), ("DOMAIN", "ok.example")], search_domains=[])
    assert from_pushed(p).search == ("ok.example",)
