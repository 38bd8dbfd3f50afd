"""The flags of redirect-gateway and redirect-private, as OpenVPN 2.6 knows them (options.c).

One list for the config parser and the pushed-options reader: an unknown flag is an error in
2.6: a config line fails, so a misspelt leak guard (`block-locl`) in a profile is never taken as a
redirect without it. A pushed one is logged, and the redirect is taken with the flags before it, as
2.6's client does (it enables the redirect before reading the flags; review45a checked Debian's). On Linux
bypass-dhcp and bypass-dns do nothing (route.c get_bypass_addresses is Windows-only), nor does
def1 without a redirect.
"""
from __future__ import annotations

REDIRECT_FLAGS = ("local", "autolocal", "def1", "bypass-dhcp", "bypass-dns", "block-local", "ipv6", "!ipv4")


def unknown_flag(flags: "list[str]") -> "str | None":
    """The first flag OpenVPN 2.6 would refuse, or None."""
    return next((f for f in flags if f not in REDIRECT_FLAGS), None)


def added_line(before: "list[str] | None", taken: "list[str]") -> "list[str]":
    """The flags after one more redirect line of the same name (`taken`): added to the earlier
    lines' (`before`), as 2.6 ORs every such line into one flag set (options.c); a line without
    `!ipv4` turns the IPv4 side on again, so an earlier `!ipv4` goes. The one rule for a profile's
    repeated lines (config/d_network.py, d_seldom.py) and a push's (keymethod.py). Why: the later
    line replaced the earlier -- a pushed `def1 ipv6` then `def1` (atk45), or a profile's
    `redirect-gateway ipv6` then `redirect-gateway def1` (review46d), left IPv6 outside the
    tunnel where Debian's 2.6.14 routes it in."""
    return [f for f in before or () if f != "!ipv4" and f not in taken] + list(taken)
