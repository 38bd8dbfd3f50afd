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
