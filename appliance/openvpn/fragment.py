"""OpenVPN's own datagram fragmentation (`fragment N [mtu]`): a 4-byte header on every data payload.

Why: profiles for paths that drop large UDP datagrams or IP fragments (ExpressVPN's, VyOS's, many
self-hosted servers': `fragment 1300`) make both ends put OpenVPN's fragment header in front of
every data-channel payload, and split a payload that would make a datagram bigger than N into
parts the peer puts together again. A peer without it reads the first four bytes of every packet
as that header and drops everything, so both ends must agree -- as OpenVPN requires.

The wire format and rules are OpenVPN 2.6's fragment.c. The header is a big-endian 32-bit word
inside the encryption, in front of the compression framing:
  bits 0-1   type: 0 whole packet, 1 a part but not the last, 2 the last part, 3 test (refused);
  bits 2-9   sequence id of the split packet (mod 256);
  bits 10-14 the part's number (at most 32 parts);
  bits 15-28 on the last part only: the size of every other part, divided by 4.
Receiving keeps 25 reassembly slots on a window that follows the newest sequence id, as OpenVPN's
fragment_list_get_buf; a slot untouched for 10 s is dropped (OpenVPN's FRAG_TTL_SEC), and a packet
that would grow past `limit` is dropped with its reason. Only an authenticated peer reaches this
code (it runs after decryption), and what it can make us hold is bounded: 25 slots of at most
`limit` bytes per session.
"""
from __future__ import annotations

from .ciphers import CipherSpec

HEADER_LEN = 4
WHOLE, NOT_LAST, LAST, TEST = 0, 1, 2, 3
N_SLOTS = 25                 # OpenVPN's N_FRAG_BUF
N_SEQ = 256                  # sequence ids wrap here
MAX_PARTS = 32               # OpenVPN's MAX_FRAGS: the reassembly map is 32 bits
TTL = 10.0                   # OpenVPN's FRAG_TTL_SEC
_FULL = 0xFFFFFFFF
_WHOLE = b"\0\0\0\0"


def max_fragment_size(spec: CipherSpec, auth: str, data_v2: bool, room: int) -> int:
    """The largest payload part (compression framing included, fragment header not) whose sealed
    datagram fits in `room` bytes of UDP payload: OpenVPN 2.6's frame_calculate_fragment (mss.c),
    CBC's block rounding and in-ciphertext packet id included (max_payload counts both)."""
    return spec.max_payload(room, auth, data_v2) - HEADER_LEN


def part_size(length: int, max_size: int) -> int:
    """The size of each part but the last for a `length`-byte payload (a multiple of 4): OpenVPN's
    optimal_fragment_size, which evens the parts out when the last would be small."""
    aligned = max_size & ~3
    div, mod = divmod(length, aligned)
    if div > 0 and 0 < mod < aligned * 3 // 4:
        return min(aligned, (max_size - (max_size - mod) // (div + 1) + 3) & ~3)
    return aligned


class _Slot:
    __slots__ = ("defined", "size", "map", "buf", "stamp")

    def __init__(self) -> None:
        self.defined = False
        self.size = 0
        self.map = 0
        self.buf = bytearray()
        self.stamp = 0.0


class Fragmenter:
    """One session's fragmentation state: the outgoing sequence id and the reassembly slots."""

    __slots__ = ("limit", "seq", "slots", "window_seq", "window_index", "error")

    def __init__(self, limit: int) -> None:
        self.limit = limit              # largest reassembled payload taken
        self.seq = 0
        self.slots = [_Slot() for _ in range(N_SLOTS)]
        self.window_seq = 0
        self.window_index = 0
        self.error: str | None = None   # why the last take() or split() dropped its packet

    # ------------------------------------------------------------------ sending
    def split(self, payload, max_size: int) -> list:
        """The framed payloads to seal for one outgoing payload: one whole, or 2-32 parts of a
        split. [] (with `error` set) when even 32 parts cannot carry it."""
        n = len(payload)
        if n <= max_size:
            return [_WHOLE + payload]
        size = part_size(n, max_size) if max_size >= 4 else 0
        if size <= 0 or n > size * MAX_PARTS:
            self.error = "fragment: too many parts would be needed"
            return []
        self.seq = seq = (self.seq + 1) % N_SEQ
        mv = memoryview(payload)
        out = []
        off = i = 0
        head = seq << 2
        while True:
            end = off + size
            if end >= n:
                flags = LAST | head | (i << 10) | ((size >> 2) & 0x3FFF) << 15
                out.append(flags.to_bytes(4, "big") + mv[off:])
                return out
            out.append((NOT_LAST | head | (i << 10)).to_bytes(4, "big") + mv[off:end])
            off, i = end, i + 1

    # ---------------------------------------------------------------- receiving
    def take(self, pt, now: float):
        """One decrypted payload in: the payload without its header (a whole packet, or the last
        missing part of a split one, put together), else None -- a part held for later, or a bad
        header (then `error` says why, and nothing is kept of it)."""
        if len(pt) < HEADER_LEN:
            self.error = "fragment: no header"
            return None
        flags = int.from_bytes(pt[:4], "big")
        kind = flags & 3
        if kind == WHOLE:
            # OpenVPN tests the low 8 bits here (FRAG_SEQ_ID_MASK | FRAG_ID_MASK, unshifted).
            if flags & 0xFF:
                self.error = "fragment: spurious flags on a whole packet"
                return None
            return pt[4:]
        if kind == TEST:
            self.error = "fragment: FRAG_TEST is not implemented (as in OpenVPN)"
            return None
        seq = (flags >> 2) & 0xFF
        n = (flags >> 10) & 0x1F
        data = pt[4:]
        size = ((flags >> 15) & 0x3FFF) << 2 if kind == LAST else len(data)
        if size & 3:
            self.error = "fragment: bad part size"
            return None
        slot = self._slot(seq)
        if not slot.defined or slot.size != size or slot.stamp + TTL <= now:
            slot.defined, slot.size, slot.map = True, size, 0
            slot.buf = bytearray()
        off = n * size
        end = off + len(data)
        if end > self.limit:
            self.error = "fragment: reassembled packet too big"
            return None
        buf = slot.buf
        if len(buf) < end:
            buf.extend(bytes(end - len(buf)))
        buf[off:end] = data
        slot.map |= ((_FULL << n) & _FULL) if kind == LAST else (1 << n)
        slot.stamp = now
        if slot.map == _FULL:
            slot.defined = False
            slot.buf = bytearray()
            return buf
        return None

    def _slot(self, seq: int) -> _Slot:
        """OpenVPN's fragment_list_get_buf: a window of 25 sequence ids ending at the newest; an id
        25 or more away (either way) starts the window afresh, a newer one moves it on."""
        d = seq - self.window_seq
        if d > N_SEQ // 2:
            d -= N_SEQ
        elif d < -(N_SEQ // 2):
            d += N_SEQ
        if abs(d) >= N_SLOTS:
            for s in self.slots:
                s.defined = False
                s.buf = bytearray()
            self.window_index, self.window_seq, d = 0, seq, 0
        while d > 0:
            self.window_index = (self.window_index + 1) % N_SLOTS
            s = self.slots[self.window_index]
            s.defined = False
            s.buf = bytearray()
            self.window_seq = (self.window_seq + 1) % N_SEQ
            d -= 1
        return self.slots[(self.window_index + d) % N_SLOTS]
