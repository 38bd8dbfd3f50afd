"""port-share's decisions, sans I/O: is a new TCP connection an OpenVPN client, and how its
journal file is named.

Why OpenVPN 2.6's own rule (ps.c is_openvpn_protocol, called from socket.c stream_buf_added):
a server that shares its port must send the same connections to the web server as OpenVPN would,
or a client that works against one fails against the other. The rule looks at the first bytes
only: the 2-byte TCP frame length and the opcode byte of a client's first packet (a hard reset).
It is asked once, as soon as the stream holds at least 2 bytes, with everything read so far:
- 3 bytes or more: P_CONTROL_HARD_RESET_CLIENT_V2 with a frame length of 14..255, or
  P_CONTROL_HARD_RESET_CLIENT_V3 (tls-crypt-v2, the wrapped client key inside) with 336..1278;
- exactly 2 bytes: the length alone decides (14..255), the opcode not known yet;
- fewer: OpenVPN's function says "OpenVPN" (it is never asked with fewer: we wait, see `decide`).
A TLS ClientHello (16 03 ..: length 0x1603) and an HTTP request ("GE": 0x4745) are foreign at
their second byte.
"""
from __future__ import annotations

import ipaddress
import re
from enum import Enum

from .opcodes import Op

_V2 = int(Op.CONTROL_HARD_RESET_CLIENT_V2) << 3
_V3 = int(Op.CONTROL_HARD_RESET_CLIENT_V3) << 3


def is_openvpn_protocol(head: bytes) -> bool:
    """OpenVPN 2.6.14's is_openvpn_protocol on the bytes read so far (see the module doc)."""
    n = len(head)
    if n >= 3:
        plen = (head[0] << 8) | head[1]
        if head[2] == _V3:
            # A wrapped client key is at least 290 bytes, the handshake and tls-crypt's overhead
            # come on top; OpenVPN allows up to its 1024-byte key limit plus 255 of metadata.
            return 336 <= plen < 1024 + 255
        return 14 <= plen <= 255 and head[2] == _V2
    if n == 2:
        plen = (head[0] << 8) | head[1]
        return 14 <= plen <= 255
    return True


class Verdict(str, Enum):
    OPENVPN = "openvpn"
    FOREIGN = "foreign"
    UNDECIDED = "undecided"      # fewer than 2 bytes so far: read on (until hand-window)


def decide(head: bytes) -> Verdict:
    """The verdict on a new connection's bytes so far, as OpenVPN reaches it: not before 2 bytes."""
    if len(head) < 2:
        return Verdict.UNDECIDED
    return Verdict.OPENVPN if is_openvpn_protocol(head) else Verdict.FOREIGN


def sockaddr_text(addr: tuple) -> str:
    """An address as OpenVPN prints it in the journal (print_sockaddr: family, address, port):
    `[AF_INET]198.18.0.2:51234`, `[AF_INET6]2001:db8::1:51234` (no brackets, as OpenVPN), an
    IPv4 client of a dual-stack socket `[AF_INET6]::ffff:198.18.0.2:51234`."""
    ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
    if ip.version == 4:
        return f"[AF_INET]{ip}:{int(addr[1])}"
    # An IPv4 client of a dual-stack (tcp6-server) socket: getnameinfo's `::ffff:198.18.0.2`.
    text = f"::ffff:{ip.ipv4_mapped}" if ip.ipv4_mapped is not None else str(ip)
    return f"[AF_INET6]{text}:{int(addr[1])}"


# What a journal file's name may be: only what sockaddr_text makes (never a path separator, never
# "." or ".."), checked again before any file is made, whatever the socket reported.
_JOURNAL_NAME = re.compile(r"\[AF_INET6?\][0-9A-Fa-f.:]{2,45}:[0-9]{1,5}\Z")


def journal_name(local: tuple) -> str:
    """The journal file's name for a relayed connection: our end of the connection to the
    backend, as the backend sees its peer (so the web server can look its client up). ValueError
    if it is not an IP address and port."""
    name = sockaddr_text(local)
    if not _JOURNAL_NAME.match(name):
        raise ValueError(f"not a journal name: {name!r}")
    return name
