"""TCP framing: every OpenVPN packet on a stream is preceded by a 2-byte big-endian length."""
from __future__ import annotations

import struct

from .errors import BadPacket

_LEN = struct.Struct("!H")
MAX_BUFFER = 4 * 65538


class StreamFramer:
    """Feed stream bytes in any split; complete packets come out. A zero length is invalid."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data) -> list[bytes]:
        buf = self.buf
        buf += data
        out = []
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            ln = (buf[pos] << 8) | buf[pos + 1]
            if ln == 0:
                raise BadPacket("zero-length packet on TCP stream")
            if n - pos - 2 < ln:
                break
            out.append(bytes(buf[pos + 2:pos + 2 + ln]))
            pos += 2 + ln
        if pos:
            del buf[:pos]
        if len(buf) > MAX_BUFFER:
            raise BadPacket("TCP stream buffer overflow")
        return out


def frame(packet) -> bytes:
    if not 0 < len(packet) <= 0xFFFF:
        raise ValueError("packet length out of range for TCP framing")
    return _LEN.pack(len(packet)) + bytes(packet)
