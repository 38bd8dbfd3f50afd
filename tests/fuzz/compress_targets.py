"""The "compress" fuzz target: real compression's receive side (appliance/openvpn/compression.py)
and its framing inside `Session.receive`.

Why a target of its own: comp-lzo yes|adaptive and compress lzo|lz4|lz4-v2 feed what an
authenticated peer sent to C decompressors (python-lzo's lzo1x_decompress_safe, lz4's
LZ4_decompress_safe). Their contract: a DecompressError or None for anything they do not take,
never more than `limit` bytes out, and what a real compressor made comes back exactly.

First byte (`sel`): bits 0-1 the part --
  0: `decompress(mode, bytes, limit)` directly (only DecompressError may escape; the output is
     never empty, and at most `limit` bytes when it was compressed);
  1: the bytes compressed by the real compressor and framed as OpenVPN 2.6 frames them, then
     `decompress`: the same bytes back when they fit `limit`, else DecompressError;
  2: an established pair with that compression: the bytes are the payload the peer seals
     (framing byte included), fed to `Session.receive` (never raises; what it returns fits the
     session's bound);
  3: the same with the payload compressed and framed by the peer: `Session.receive` returns the
     bytes (unless too big, a ping or an OCC message, which it keeps);
bits 2-3 the mode (lzo / lz4 / lz4-v2 / lzo with fragment in parts 2-3, lzo in 0-1), bits 4-5
the limit in parts 0-1 (LIMITS), bit 6 towards the client.
"""
from __future__ import annotations

from appliance.openvpn import compression
from appliance.openvpn.compression import DecompressError, decompress
from appliance.openvpn.opcodes import OCC_MAGIC, PING_MAGIC

from . import harness as h

MODES = ("lzo", "lz4", "lz4-v2", "lzo")
LIMITS = (1600, 1, 64, 1500)
# The pairs of parts 2-3: each real compression mode, and lzo under `fragment` (the framing is
# inside the reassembled payload there).
COMP_KINDS = [
    dict(protection="tls-crypt", cipher="AES-256-GCM", comp="lzo"),
    dict(protection="plain", cipher="AES-128-GCM", comp="lz4"),
    dict(protection="tls-auth", cipher="AES-256-CBC", comp="lz4-v2"),
    dict(protection="tls-crypt", cipher="CHACHA20-POLY1305", comp="lzo", fragment_room=1400),
]


def compressed_frame(mode: str, data: bytes) -> bytes:
    """`data` compressed by the real library and framed as OpenVPN 2.6 sends it in `mode`."""
    if mode == "lzo":
        import lzo
        return bytes([compression.LZO_COMPRESS_BYTE]) + lzo.compress(data, 1, False)
    import lz4.block
    c = lz4.block.compress(data, store_size=False)
    if mode == "lz4":                     # the first byte swapped to the end (COMP_F_SWAP)
        return bytes([compression.LZ4_COMPRESS_BYTE]) + c[1:] + c[:1]
    return bytes([compression.V2_INDICATOR, compression.V2_LZ4]) + c


def _check_out(out, limit: int, given: int) -> None:
    """Decompressed output is at most `limit` bytes; an uncompressed payload (its framing byte
    says so) is at most what was `given`."""
    if out is not None and not 0 < len(out) <= max(limit, given):
        raise AssertionError(f"decompress gave {len(out)} bytes from {given} for a limit of {limit}")


def _seal(src, payload: bytes):
    """The payload sealed as it is (no stub framing added: the fuzzer's bytes carry the framing),
    split into fragments when the session fragments. Uses Session._seal_parts (private)."""
    sk = src.send_key
    if sk is None:
        return []
    if src.frag is not None:
        return [bytes(w) for w in src._seal_parts(sk, payload)]
    return [bytes(sk.seal(payload))]


def make_compress():
    pairs: dict[int, list] = {}

    def pair(i: int):
        p = pairs.get(i)
        if p is None or p[0].closed or p[1].closed or not (p[0].established and p[1].established) or p[2] > 20000:
            c, s = h.established_pair(**COMP_KINDS[i])
            p = pairs[i] = [c, s, 0]
        p[2] += 1
        return p

    def one(data: bytes) -> None:
        if not data:
            return
        sel, rest = data[0], data[1:]
        part, m = sel & 3, (sel >> 2) & 3
        if part < 2:
            mode, limit = MODES[m], LIMITS[(sel >> 4) & 3]
            if part == 0:
                try:
                    out = decompress(mode, rest, limit)
                except DecompressError:
                    return
                _check_out(out, limit, len(rest))
                return
            framed = compressed_frame(mode, rest)
            try:
                out = decompress(mode, framed, limit)
            except DecompressError:
                if len(rest) <= limit:
                    raise AssertionError(f"{mode}: {len(rest)} bytes compressed by the library do not "
                                         f"decompress within {limit}") from None
                return
            if len(rest) > limit or bytes(out or b"") != rest:
                raise AssertionError(f"{mode}: {len(rest)} bytes came back as {None if out is None else len(out)}"
                                     f" (limit {limit})")
            return
        c, s, _ = pair(m)
        src, dst = (s, c) if sel & 0x40 else (c, s)
        limit = dst._decompress_limit                       # private: the session's own bound
        payload = rest if part == 2 else compressed_frame(dst.comp, rest)
        got = []
        for w in _seal(src, payload):
            got += dst.receive(w, 1.0)                      # must never raise
        dst.take_outgoing()
        src.take_outgoing()
        for pt in got:
            _check_out(pt, limit, len(payload))
        if part == 3:
            kept = not rest or len(rest) > limit or rest == PING_MAGIC or \
                (len(rest) >= 17 and rest[:16] == OCC_MAGIC)
            if [bytes(p) for p in got] != ([] if kept else [rest]):
                raise AssertionError(f"{dst.comp}: {len(rest)} bytes compressed by the peer came out as "
                                     f"{[len(p) for p in got]}")
    return one


def seeds() -> list[bytes]:
    """Real compressed payloads, garbage behind each framing byte, bombs, a ping and an IP packet."""
    ip = bytes.fromhex("4500001c0001000040010000c6130002c6130001") + b"\x08\x00\xf7\xff\x00\x00\x00\x00"
    big = ip + bytes(1400)
    bomb = bytes(60000)
    out = []
    for m, mode in enumerate(MODES[:3]):
        for part in (0, 1):
            for lim in range(4):
                sel = part | m << 2 | lim << 4
                out.append(bytes([sel]) + (compressed_frame(mode, ip) if part == 0 else ip))
        out.append(bytes([m << 2]) + compressed_frame(mode, bomb))            # a bomb: 60 kB from ~300 bytes
        out.append(bytes([m << 2]) + compressed_frame(mode, big)[:40])        # cut short
        out.append(bytes([1 | m << 2]) + big)
    for m, mode in enumerate(MODES):
        for toward in (0, 0x40):
            sel = m << 2 | toward
            for pl in (compressed_frame(mode, ip), compressed_frame(mode, bomb), b"\xfa" + ip, b"\xfb" + ip[1:] + ip[:1],
                       b"\x50\x00" + ip, b"\x50\x01\x00", ip, b"\x66\xff\xff", b"\x69" + bytes(8)):
                out.append(bytes([2 | sel]) + pl)
            for pl in (ip, big, PING_MAGIC, bomb[:1700], b"\x50" + ip):
                out.append(bytes([3 | sel]) + pl)
    return out
