"""How OpenVPN 2.6 reads a route-ipv6 destination, shared by the profile's parser and the client's
tunnel (pushed and profile routes alike), so a profile line and a pushed one mean the same."""
from __future__ import annotations

import ipaddress


def parse_net6(text: str) -> tuple[str, int]:
    """A route-ipv6 destination `address[/bits]` as (address, bits); ValueError for anything else
    (a `%scope`, bits over 128). As OpenVPN 2.6 reads it (socket.c get_addr_generic), checked
    against Debian's client (tests/interop/test_route_ipv6_bits_vs_openvpn.py): without `/bits` a
    /64, IPv6's default there (read as /128, `route-ipv6 2001:db8:5::` left all but one address of
    the /64 the server routes into the tunnel on the way outside it); the bits as strtoul (base 10)
    reads them to the end: ASCII digits after an optional `+` or `-` (`-0` is 0, any other `-N`
    wraps past 128), and nothing after the `/` is 0 (Debian's client installs `2001:db8::/` and
    `2001:db8::/-0` as ::/0). Why one reader for the route, its default-route test and the
    server's cover test: the route took its bits from int(), which also reads `6_4` and non-ASCII
    digits (`٦٤`), while the cover test (ipaddress) refused them, so such a route went into the
    tunnel without the IPv6 server's host route."""
    n6, slash, p6 = text.partition("/")
    sign, digits = (p6[0], p6[1:]) if p6[:1] in ("+", "-") else ("", p6)
    if "%" in n6 or (slash and p6 and not (digits.isascii() and digits.isdigit())):
        raise ValueError(f"not an IPv6 route: {text!r}")
    plen = (int(digits) if p6 else 0) if slash else 64
    if plen > 128 or (sign == "-" and plen):
        raise ValueError(f"not an IPv6 route: {text!r}")
    ipaddress.IPv6Address(n6)
    return n6, plen
