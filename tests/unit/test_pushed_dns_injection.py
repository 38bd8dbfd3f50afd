"""3a66045b (OpenVPN's "Validate DNS parameters"): OpenVPN 2.6's client wrote pushed DNS values
into a file a root script sources (and a PowerShell command on Windows), so a server pushing
`dns search-domains x;id` ran `id` as root. Ours runs no script with them; the pushed values go to
resolv.conf, resolvectl's arguments (host) and DHCP options 15/119 (the VM's LAN), and each of
those takes only a DNS name. The attack's pushes, read as a real PUSH_REPLY, reach none of them."""
from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface

import pytest

from appliance.host.dns_settings import from_pushed
from appliance.lan.dhcp_server import DhcpServer
from appliance.openvpn.keymethod import parse_push_reply_untrusted

HOSTILE = ["x;id", "a';Restart-Computer'", "$(id)", "`id`", "a|b", "a&b", "a\\b", "a'b", 'a"b', "a>b", "a$b"]


def _push(option: str) -> str:
    # (a `dns server N` needs an address: OpenVPN 2.6 fails a push leaving one without)
    return (f"PUSH_REPLY,ifconfig 198.19.0.2 255.255.255.0,dns server 1 address 198.19.0.53,{option},"
            "dhcp-option DOMAIN good.example,ping 10")


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("form", ["dns search-domains {}", "dhcp-option DOMAIN {}", "dhcp-option DOMAIN-SEARCH {}",
                                  "dhcp-option DOMAIN-ROUTE {}", "dns server 1 resolve-domains {}",
                                  "dns server 1 sni {}"])
def test_a_hostile_pushed_domain_reaches_no_resolver_and_no_lan_client(form, value):
    p = parse_push_reply_untrusted(_push(form.format(value)))
    s = from_pushed(p)
    names = list(s.search) + list(s.routing)
    assert names == ["good.example"], names
    dhcp = DhcpServer(IPv4Interface("198.18.50.1/24"), IPv4Address("198.18.50.10"), IPv4Address("198.18.50.20"), 3600)
    dhcp.set_pushed(p)
    assert dhcp.domain == "good.example" and dhcp.search in ([], ["good.example"]), (dhcp.domain, dhcp.search)
