"""`route-gateway dhcp` on a tap client: the gateway read from the server side's DHCP reply, as
OpenVPN 2.6 does it on every platform (forward.c process_ip_header, dhcp.c dhcp_extract_router_msg).

What 2.6 does with each frame it writes to the tap while `route-gateway dhcp` is in effect (the
profile's line, or pushed: a plain `server-bridge` pushes it): an IPv4 UDP packet from port 67 to
port 68 holding a BOOTREPLY whose DHCP message type is OFFER or ACK has every Router option
(option 3) padded out of it, and its UDP checksum computed again -- so the DHCP client on the tap
never installs the bridged LAN's router as its default route --; an ACK's first router address
becomes the tunnel's VPN gateway ("Extracted DHCP router address: X").

Why a module of its own: it reads bytes a server sent, so it is sans I/O and bounded -- one pass
over the options, at most the frame's own length, a copy only of a frame it changes -- and never
raises on what it is given; the gateway side decides what the address is used for.

Stricter than 2.6 where 2.6 trusts the bytes: the IP header's real length (2.6 assumes 20 bytes),
no fragment but the whole datagram, and the UDP length (not the frame's, which may carry padding).
And where a hostile server (or any host on its bridged LAN) would hide a router from 2.6's
stripping but not from the DHCP client on the tap (atk31a): every BOOTREPLY to port 68 loses its
Router options -- from any source port (DHCP clients check the destination only), whatever message
type it says (clients read a later option 53 than 2.6's first, or take a BOOTP reply with none), in
the file/sname fields too when an option 52 gives them to options (as clients read them), behind
an 802.1ad tag as behind an 802.1Q one (the kernel takes either off before a packet socket sees
the frame); a 0.0.0.0/0 route of a classless static route option (121, 249), which such a client
installs instead of the Router option (RFC 3442), is taken out of it (its other routes kept); the
first fragment of such a datagram is dropped (a renewing client's UDP socket would get it
reassembled, unstripped); and replies beyond a byte budget (ReplyBudget) are dropped unread.
Still as 2.6: the gateway logged is the first Router option's of an ACK (2.6's first option 53)
in the options field.
"""
from __future__ import annotations

import ipaddress
from typing import Callable

from ..lan.dhcp_codec import OVERLOAD_FILE as FILE
from ..lan.dhcp_codec import OVERLOAD_SNAME as SNAME
from ..lan.dhcp_codec import walk_options
from .ethernet import ip_offset

BOOTPC = 68                 # the client's port (the server's, 67, is not checked: see above)
BOOTREPLY = 2
DHCP_FIXED = 240            # op .. file, and the magic cookie, before the options (2.6's struct dhcp)
OPT_PAD, OPT_ROUTER, OPT_OVERLOAD, OPT_MSG_TYPE, OPT_END = 0, 3, 52, 53, 255
OPT_CLASSLESS = (121, 249)  # classless static routes: RFC 3442's, and Microsoft's before it
FIRST_FRAGMENT = "first fragment"
FRAGMENTED_REPLY = "fragmented DHCP reply from the server side (route-gateway dhcp)"   # (a session stat)
OVER_RATE = "DHCP reply over rate from the server side (route-gateway dhcp)"
# Server replies read option by option, in bytes per second (and at once): a legitimate reply is
# a few hundred bytes, a handful a minute; a hostile one (any host on a bridged LAN can send one)
# costs some 0.25-0.5 us per byte here (a 1.5 KB reply of 600 options: ~0.4-0.6 ms, read by the
# codec's walk_options; 3,000 a second, 35 Mbit/s, pinned a core), so beyond this a reply is dropped (counted) rather than read: a few
# percent of a core at most, whatever comes.
REPLY_RATE, REPLY_BURST = 64 * 1024, 128 * 1024


class ReplyBudget:
    """The token bucket of REPLY_RATE/REPLY_BURST bytes for one connection's replies."""

    def __init__(self) -> None:
        self.tokens, self.last = float(REPLY_BURST), None

    def take(self, n: int, now: float) -> bool:
        if self.last is not None:
            self.tokens = min(float(REPLY_BURST), self.tokens + (now - self.last) * REPLY_RATE)
        self.last = now
        if self.tokens < n:
            return False
        self.tokens -= n
        return True
DHCPOFFER, DHCPACK = 2, 5


def _udp_bounds(frame):
    """(offsets of the IPv4 header and the UDP header, end of the UDP datagram) for a whole IPv4
    UDP datagram to port 68 inside the Ethernet `frame`; FIRST_FRAGMENT for the first fragment of
    one (or of a UDP datagram too short to show its ports); else None."""
    off = ip_offset(frame, s_tag=True)
    if off is None or frame[off] >> 4 != 4:
        return None
    ihl = (frame[off] & 15) * 4
    if ihl < 20 or frame[off + 9] != 17:
        return None
    u = off + ihl
    frag = ((frame[off + 6] & 0x3F) << 8) | frame[off + 7]
    if frag:
        # A fragment: not the whole datagram, which a client's UDP socket would get put together
        # by the kernel, unstripped. A later one passes (ports are in the first only): the first
        # of a reply is dropped, so nothing is reassembled. (No DHCP server fragments: replies
        # are 576 bytes or less.)
        if frag & 0x1FFF:
            return None
        top = min(len(frame), off + ((frame[off + 2] << 8) | frame[off + 3]))
        if top < u + 4 or (frame[u + 2] << 8 | frame[u + 3]) == BOOTPC:
            return FIRST_FRAGMENT
        return None
    if len(frame) < u + 8:
        return None
    if (frame[u + 2] << 8 | frame[u + 3]) != BOOTPC:
        return None                     # (any source port: DHCP clients check the destination only)
    end = u + (frame[u + 4] << 8 | frame[u + 5])
    if end > len(frame) or end < u + 8 + DHCP_FIXED:
        return None
    return off, u, end


def _scan(opts) -> tuple[int | None, int]:
    """(the DHCP message type (option 53) among `opts` as 2.6 reads it -- the first --, or None;
    the option-overload (52) values together: 1 the file field holds options, 2 the sname)."""
    opts = bytes(opts)
    mtype, overload, n = None, 0, len(opts)
    for t, at, ln in walk_options(opts):
        if ln == 1 and at + 3 <= n:
            if t == OPT_MSG_TYPE and mtype is None:
                mtype = opts[at + 2]
            elif t == OPT_OVERLOAD:
                overload |= opts[at + 2]
    return mtype, overload & 3


def _without_default(body) -> bytes | None:
    """A classless static route option's routes (RFC 3442: width, the significant bytes of the
    destination, the router) but 0.0.0.0/0 -> the new body; None when none is left, or when it is
    malformed (a width past 32, a route running past the end): some clients read the routes
    before the fault, a default among them, so it goes whole."""
    kept: list = []
    i, n = 0, len(body)
    while i < n:
        w = body[i]
        size = 1 + (w + 7) // 8 + 4
        if w > 32 or i + size > n:
            return None
        if w:
            kept.append(body[i:i + size])
        i += size
    return b"".join(kept) or None


def _strip_routers(opts) -> tuple[bytes, bytes | None, int]:
    """`opts` without its Router options and without the default route of its classless static
    route options (121, and Microsoft's 249: RFC 3442's client ignores the Router option when
    given them and installs their 0.0.0.0/0 -- the default route through the tunnel that
    route-gateway dhcp keeps off the tap; 2.6 leaves them), what followed each moved down over it
    and the tail padded, as 2.6 leaves them (it moves the rest down once per option: here one
    pass, so a hostile reply of thousands of empty Router options costs one copy, not one per
    option) -> (the new options, the first router's 4 bytes (a length that is a multiple of 4) or
    None, how many bytes were taken out).

    An option cut short by the end of the area (no length byte, or a value running past it) is
    left where it is when nothing else is taken out (a client refuses such a message, as 2.6
    leaves it); when something is, it goes too: moved down, the padding behind it would complete
    it -- a cut `3 4 a b` at the end became the Router a.b.0.0 a client installs."""
    opts = bytes(opts)                  # (indexing a memoryview costs several times more)
    router = None
    kept: list = []
    n, start, removed, tail = len(opts), 0, 0, len(opts)
    for t, i, ln in walk_options(opts):
        if ln is None or ln > n - i - 2:
            tail = i                    # cut short: the last option (walk_options)
            break
        if t != OPT_ROUTER and t != 121 and t != 249:
            continue
        new = None
        if t == OPT_ROUTER:
            if router is None and ln >= 4 and ln % 4 == 0:
                router = bytes(opts[i + 2:i + 6])
        else:
            new = _without_default(opts[i + 2:i + 2 + ln])
            if new is not None and len(new) == ln:
                continue                # no default route in it: as it is
        kept.append(opts[start:i])
        if new is not None:
            kept.append(bytes((t, len(new))) + new)
            removed -= len(new) + 2
        start = i + ln + 2
        removed += ln + 2
    if not removed:
        return opts, router, 0
    kept.append(opts[start:tail])
    removed += n - tail
    return b"".join(kept) + bytes(removed), router, removed


def _checksum(frame, ip: int, u: int, end: int) -> int:
    """The UDP checksum field's value for the datagram frame[u:end] inside the IPv4 packet at
    `ip` (pseudo-header, the datagram with its own checksum field taken as zero).

    The ones' complement sum of 16-bit words is the words read as one big number modulo 0xFFFF
    (2**16 is 1 modulo 0xFFFF), a sum of 0 there standing for 0xFFFF: both give the field 0xFFFF.
    One big-number division instead of a loop per word (~60 KiB: microseconds, not 0.1 s)."""
    data = (bytes(frame[ip + 12:ip + 20]) + bytes((0, 17)) + (end - u).to_bytes(2, "big")
            + bytes(frame[u:u + 6]) + b"\0\0" + bytes(frame[u + 8:end]))
    if len(data) % 2:
        data += b"\0"
    r = int.from_bytes(data, "big") % 0xFFFF
    return (~r & 0xFFFF) or 0xFFFF      # 0 would mean "no checksum" in UDP


def extract_router(frame, take: Callable[[int], bool] | None = None):
    """-> (the frame to write to the tap, or None to drop it; the router address of a DHCPACK or
    None). `take(n)`: whether a server's reply of n bytes may be read now (ReplyBudget), else it
    is dropped.

    A frame that is no server's reply holding a Router option comes back as it is (the same
    object); one that is loses its Router options in a copy with the UDP checksum computed
    again; the first fragment of a server's reply is dropped (None)."""
    b = _udp_bounds(frame)
    if b is None:
        return frame, None
    if b == FIRST_FRAGMENT:
        return None, None
    ip, u, end = b
    dhcp = u + 8
    if frame[dhcp] != BOOTREPLY:
        return frame, None
    if take is not None and not take(end - dhcp):
        return None, None
    # Every reply, whatever message type it says: a client may read a later option 53 than 2.6's
    # first one (systemd-networkd does), or none (a BOOTP reply, which dhclient takes as an
    # offer); and where an option 52 says so, the file and sname fields too, as clients read
    # them. A legitimate OFFER/ACK is treated as 2.6 treats it.
    view = memoryview(frame)
    mtype, overload = _scan(view[dhcp + DHCP_FIXED:end])
    areas = [(dhcp + DHCP_FIXED, end)]
    if overload & 1:
        areas.append((dhcp + FILE[0], dhcp + FILE[1]))
    if overload & 2:
        areas.append((dhcp + SNAME[0], dhcp + SNAME[1]))
    out, router = None, None
    for a, z in areas:
        new, first, removed = _strip_routers(view[a:z])
        if a == areas[0][0]:
            router = first                      # (2.6 reads the options field only)
        if removed:
            if out is None:
                out = bytearray(frame)
            out[a:z] = new
    if out is None:
        return frame, None
    c = _checksum(out, ip, u, end)
    out[u + 6], out[u + 7] = c >> 8, c & 0xFF
    if mtype != DHCPACK or router is None:
        return out, None
    return out, str(ipaddress.IPv4Address(router))
