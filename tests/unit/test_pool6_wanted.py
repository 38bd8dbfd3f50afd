"""review11c: the IPv6 pool's remembered address (ifconfig-pool-persist) and the pool file's lines.

A remembered address far into a /64 made lease_wanted list every address below it as free (a
list of 2**40 numbers: the server's one loop hung and its memory ran out at that client's
connect), and a common name with a comma (CC_PRINT keeps it) wrote a line whose fields the next
start read as another name's addresses."""
from __future__ import annotations

import ipaddress

from appliance.openvpn.addresspool import AddressPool6
from appliance.openvpn.poolfile import PoolMemory, read, render


def test_far_wanted_address_is_leased_without_listing_the_addresses_below_it():
    pool = AddressPool6("2001:db8::/64")
    far = str(ipaddress.IPv6Address("2001:db8::1:fff"))       # the last of 2.6's 65,536 (compat50)
    assert pool.lease_wanted(far) == far
    assert len(pool.free) < 100                      # not the 2**40 addresses below it
    got = {pool.lease() for _ in range(3)}
    assert got == {"2001:db8::1000", "2001:db8::1001", "2001:db8::1002"}
    assert far not in got


def test_a_pool_wider_than_a_112_hands_out_65536_addresses_as_2_6():
    """compat50: OpenVPN 2.6's pool.c sizes an IPv6 pool in a network wider than /112 at
    IFCONFIG_POOL_MAX (65,536) addresses from its first, and ignores a remembered address past
    them ("out of pool range"); ours handed out the whole /64 (an IPv6-only server: up to
    max-clients). Not judged by Debian's binary: that takes 65,537 clients."""
    pool = AddressPool6("2001:db8::/64")
    got = [pool.lease() for _ in range(65536)]
    assert got[0] == "2001:db8::1000" and got[-1] == "2001:db8::1:fff" and None not in got
    assert pool.lease() is None and pool.lease_wanted("2001:db8::1:1000") is None
    pool.release("2001:db8::1234")
    assert pool.lease() == "2001:db8::1234"
    small = AddressPool6("2001:db8::/112")          # /112 and narrower: to the network's end, as before
    assert small.lease_wanted("2001:db8::fffe") == "2001:db8::fffe"


def test_addresses_below_a_wanted_one_are_each_handed_out_once():
    pool = AddressPool6("2001:db8::/112")
    assert pool.lease_wanted("2001:db8::1003") == "2001:db8::1003"
    got = [pool.lease() for _ in range(5)]
    assert got == ["2001:db8::1000", "2001:db8::1001", "2001:db8::1002", "2001:db8::1004", "2001:db8::1005"]
    pool.release("2001:db8::1003")
    assert pool.lease() == "2001:db8::1003"
    assert pool.lease() == "2001:db8::1006"
    assert pool.lease_wanted("2001:db8::1003") is None       # leased again meanwhile


def test_wanted_address_in_other_spelling_is_not_leased_twice():
    pool = AddressPool6("2001:db8::/64")
    assert pool.lease() == "2001:db8::1000"
    assert pool.lease_wanted("2001:DB8:0::1000") is None


def test_a_name_with_a_comma_or_line_break_is_not_written_to_the_pool_file(tmp_path):
    # `x,,ADDR` came back from the file as name `x` with that address: whoever connects as `x`
    # (a username under username-as-common-name) was handed it.
    mem = PoolMemory(str(tmp_path / "ipp.txt"), 60)
    mem.note("x,,2001:db8::ff:ffff:ffff", "198.18.0.6", "2001:db8::1000")
    mem.note("y\nz", "198.18.0.7", "2001:db8::1001")
    mem.note("alice", "198.18.0.8", "2001:db8::1002")
    mem.save()
    assert read(str(tmp_path / "ipp.txt")) == {"alice": ("198.18.0.8", "2001:db8::1002")}
    assert render({"x,y": ("198.18.0.6", None)}) == ""
