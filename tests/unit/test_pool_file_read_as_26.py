"""fuzz37: ifconfig-pool-persist's file read at start as OpenVPN 2.6 reads it (pool.c
ifconfig_pool_read): each address of a line on its own, comment lines skipped.

2.6 keeps a line's IPv4 address when its IPv6 field is not an address, and its IPv6 address when
the IPv4 field is not one; ours dropped the whole line for either, so a file whose IPv6 column an
operator or another tool had mangled gave every client a new IPv4 address at the next start.
A line beginning with `#` or `;` is a comment to 2.6, not a name."""
from __future__ import annotations

from appliance.openvpn.poolfile import PoolMemory, read


def test_a_bad_ipv6_field_keeps_the_lines_ipv4_address(tmp_path):
    f = tmp_path / "ipp.txt"
    f.write_text("alice,198.19.0.6,not-an-address\nbob,198.19.0.7,2001:db8::1001\n")
    assert read(str(f)) == {"alice": ("198.19.0.6", None), "bob": ("198.19.0.7", "2001:db8::1001")}


def test_a_bad_ipv4_field_keeps_the_lines_ipv6_address(tmp_path):
    f = tmp_path / "ipp.txt"
    f.write_text("alice,198.19.0.300,2001:db8::1000\ncarol,,2001:db8::1002\n")
    assert read(str(f)) == {"alice": (None, "2001:db8::1000"), "carol": (None, "2001:db8::1002")}


def test_comment_lines_are_no_names(tmp_path):
    f = tmp_path / "ipp.txt"
    f.write_text("#alice,198.19.0.6,\n;bob,198.19.0.7,\ncarol,198.19.0.8,\n")
    mem = PoolMemory(str(f), 0)
    assert mem.entries == {"carol": ("198.19.0.8", None)}
    assert mem.want("#alice") == (None, None)


def test_a_line_with_no_usable_address_is_skipped(tmp_path):
    f = tmp_path / "ipp.txt"
    f.write_text("alice,junk,junk\nbob\n,198.19.0.9,\ncarol,198.19.0.8\n")
    assert read(str(f)) == {"carol": ("198.19.0.8", None)}
