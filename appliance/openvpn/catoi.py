"""C's atoi as OpenVPN 2.6 reads numbers with it (management commands, pushed options): one
reading for the management interface (gateway/client_mgmt.py) and the engine's push parser."""
from __future__ import annotations

import re

# Compiled with the module, at start-up: compiled on first use, it was made inside the first push
# (the push's numbers: ping, ping-restart, route-delay ...), between the server's PUSH_REPLY and our
# first data packet -- 0.1-0.3 ms of a fresh interpreter's CPU on the way to the first packet.
# ([0-9], not \d: Python's \d takes any Unicode digit, `٣` read as 3 where C reads no digit.)
_ATOI = re.compile(r"[ \t\n\v\f\r]*([+-]?)0*([0-9]{0,20})([0-9]*)")


def atoi(text: str) -> int:
    """C's atoi as glibc has it, as OpenVPN reads numbers here: (int) strtol -- leading blanks, a
    sign, digits (else 0), clamped to a 64-bit long, then its low 32 bits as a signed int. So
    `state 99999999999999999999` is -1 there (an error) and `verb 4294967300` is 4, as the lab's
    OpenVPN 2.6 answered; reading 18 digits took the first as a count and the second as out of
    range. At most 20 digits are converted (Python refuses more than 4,300; more is past the
    clamp either way)."""
    m = _ATOI.match(text)
    assert m is not None                    # every part may be empty: no digits read 0
    v = 2**63 if m.group(3) else int(m.group(2) or "0")
    v = max(-(2**63), min(2**63 - 1, -v if m.group(1) == "-" else v))
    v &= 0xFFFFFFFF
    return v - 2**32 if v >= 2**31 else v


def positive_atoi(text: str) -> int:
    """OpenVPN 2.6's positive_atoi (options.c): atoi, a negative value read as 0."""
    return max(atoi(text), 0)
