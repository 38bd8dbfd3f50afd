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
        """Complete packets in `data` (plus what an earlier feed kept), as bytes.

        Why parse the received bytes themselves: each packet is then ONE slice (one copy) of
        what recv returned; only a frame cut by the end of a recv is kept back in `buf` (and
        joined with the next recv once)."""
        buf = self.buf
        if buf:
            buf += data
            data = bytes(buf)
            buf.clear()
        elif type(data) is not bytes:
            data = bytes(data)
        out = []
        pos = 0
        n = len(data)
        while n - pos >= 2:
            ln = (data[pos] << 8) | data[pos + 1]
            if ln == 0:
                raise BadPacket("zero-length packet on TCP stream")
            if n - pos - 2 < ln:
                break
            out.append(data[pos + 2:pos + 2 + ln])
            pos += 2 + ln
        if pos < n:
            buf += memoryview(data)[pos:]
            if len(buf) > MAX_BUFFER:
                raise BadPacket("TCP stream buffer overflow")
        return out


def frame(packet) -> bytes:
    if not 0 < len(packet) <= 0xFFFF:
        raise ValueError("packet length out of range for TCP framing")
    return _LEN.pack(len(packet)) + bytes(packet)
