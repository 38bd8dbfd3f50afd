"""IPv6 `address[/bits]` arguments of config lines (route-ipv6, iroute-ipv6, ifconfig-ipv6-push,
ifconfig-ipv6-pool), read as OpenVPN 2.6 reads them (socket.c get_addr_generic): without `/bits`
a /64. Stricter than OpenVPN where it is lenient by accident (strtoul's `+64`, `-0`, an empty
`/`): a config line is the operator's own, and one we would read differently from OpenVPN must
fail at its line rather than route something else (the pushed form, read from a server, keeps
OpenVPN's leniency: gateway/tunnel.py _net6)."""
from __future__ import annotations

import ipaddress


def prefix6(text: str) -> tuple[ipaddress.IPv6Address, int]:
    """`2001:db8::/48` -> (address, 48); `2001:db8::1` -> (address, 64). ValueError, with a
    message for the config error, for anything else: IPv4, a `%scope`, bits not 0..128."""
    addr, slash, bits = text.partition("/")
    if "%" in addr:
        raise ValueError(f"not an IPv6 address[/bits] (no %scope here): {text!r}")
    try:
        a = ipaddress.IPv6Address(addr)
    except ValueError:
        raise ValueError(f"not an IPv6 address[/bits]: {text!r}") from None
    if not slash:
        return a, 64
    if not (bits.isascii() and bits.isdigit()) or int(bits) > 128:
        raise ValueError(f"not a prefix length 0..128 after the '/': {text!r}")
    return a, int(bits)


def network6(text: str) -> ipaddress.IPv6Network:
    """The network an `address[/bits]` names, host bits cleared (as OpenVPN masks an iroute-ipv6
    and as the kernel wants a route's destination)."""
    a, bits = prefix6(text)
    return ipaddress.IPv6Network((a, bits), strict=False)
