"""The unit per-source limits count by: IPv4 address, IPv6 /64, IPv4-mapped as its IPv4 address."""
from __future__ import annotations

import ipaddress

from appliance.openvpn.sources import source_group


def test_ipv6_addresses_of_one_slash_64_are_one_source():
    a = {source_group(f"2001:db8:1:2::{i:x}") for i in range(1, 200)}
    a.add(source_group("2001:db8:1:2:ffff:ffff:ffff:ffff"))
    a.add(source_group(ipaddress.IPv6Address("2001:db8:1:2:abcd::1")))
    assert a == {"2001:db8:1:2::/64"}


def test_other_slash_64s_and_ipv4_addresses_stay_apart():
    assert source_group("2001:db8:1:3::1") != source_group("2001:db8:1:2::1")
    assert source_group("198.18.0.1") == "198.18.0.1" != source_group("198.18.0.2")


def test_ipv4_mapped_is_its_ipv4_address_not_the_shared_slash_64():
    assert source_group("::ffff:198.18.0.1") == "198.18.0.1"
    assert source_group("::ffff:198.18.0.2") == "198.18.0.2"


def test_scope_id_and_non_addresses():
    assert source_group("fe80::1%eth0") == source_group("fe80::2%eth1") == "fe80::/64"
    assert source_group("somewhere") == "somewhere"
    assert source_group("not:an:address") == "not:an:address"
