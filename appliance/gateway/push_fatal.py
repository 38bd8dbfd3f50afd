"""What in a server's push ends the client's run, as OpenVPN 2.6's M_FATAL does, instead of a
reconnect: the one place that decision is made (client.py `_tunnel_up` asks it before the push
touches the host, and ends the run through its `_fatal`, as for 2.6's other fatal errors).

Why a push can be fatal at all: a reconnect is for what the next connection may do otherwise (a
lost link, a server restarting, a hostile push that the next one may not repeat). A push that
conflicts with this profile itself meets the same profile on every connection: the client
reconnected once a second, then with backoff, forever, each time logging the kernel's bare
"[Errno 22] Invalid argument". 2.6 exits there, and says why. Nothing here is new to an attacker:
only the authenticated server pushes, and it could end the run with AUTH_FAILED already.
"""
from __future__ import annotations

from ..openvpn.config.model import Options
from ..openvpn.config.parser import IPV6_TUN_MTU_FLOOR
from ..openvpn.profile_push import device_mtu


def fatal_push(opts: Options, pushed) -> str | None:
    """Why the run must end on this push (the log line and >FATAL text), or None. `opts`: this
    connection's entry (its <connection> block's tun-mtu and line, or the profile's); `pushed`:
    what the server pushed (with the profile's own options), its tun-mtu the server's only --
    the entry's is named as the profile's line, not as a push (review44a: client.py handed the
    entry's MTU over as if pushed, and the line blamed the server).

    A pushed `ifconfig-ipv6` with the device's MTU (profile_push.device_mtu) under 1280: Linux refuses an IPv6 address on such a link (RFC 8200 5), and 2.6 exits ("Linux
    can't add IPv6 to interface tun0", checked with Debian's 2.6.14 against its own server with
    the client's `tun-mtu 1200` and the pushed tun-mtu filtered out). The same profile with
    `ifconfig-ipv6` of its own is refused at its line before start (config/parser.py
    ipv6_needs_1280)."""
    if pushed is None or getattr(pushed, "ifconfig_ipv6", None) is None:
        return None
    mtu = device_mtu(opts, pushed)
    if mtu >= IPV6_TUN_MTU_FLOOR:
        return None
    if pushed.tun_mtu:
        whose = f"the pushed tun-mtu {mtu}"
    else:
        src = opts.source.get("link_mtu") or opts.source.get("tun_mtu")
        where = f" ({src[0]}:{src[1]})" if src and src[1] is not None else ""
        whose = f"this profile's TUN MTU {mtu}{where}"
    return (f"the server pushed ifconfig-ipv6 {pushed.ifconfig_ipv6[0]}, but IPv6 needs an MTU of at least "
            f"{IPV6_TUN_MTU_FLOOR} on the device and {whose} is less: the kernel refuses the address on every "
            f"connection (OpenVPN 2.6 exits too: \"Linux can't add IPv6 to interface\"); raise tun-mtu to "
            f"{IPV6_TUN_MTU_FLOOR} or more, or add `pull-filter ignore \"ifconfig-ipv6\"`")
