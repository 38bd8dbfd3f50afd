"""Real compression framings (comp-lzo yes|adaptive, compress lzo|lz4|lz4-v2), as OpenVPN 2.6
runs them without `allow-compression yes`: what the peer compressed is decompressed, what we send
goes uncompressed in the same framing (its "not compressed" byte, or the v2 escape).

Why: many older profiles and servers carry real compression; OpenVPN 2.6 keeps working with them
by decompressing only (comp.c, COMP_F_ALLOW_COMPRESS unset), and never compressing what it sends
(VORACLE). The decompressors are the safe ones (lzo1x_decompress_safe, LZ4_decompress_safe) with
an output bound: at most `limit` bytes (the largest packet the tunnel carries), so a peer's
decompression bomb or garbage ends as a dropped, counted packet, never as an allocation.

The libraries are imported on first use: a build without them refuses such a config up front
(config/d_security.py asks `missing_library`), and the data path of a session without real
compression never touches this module.
"""
from __future__ import annotations

# OpenVPN 2.6's compression flags (comp.h), kept as its parser keeps them (config/d_security.py):
# which lines came in which order decides what a client advertises and whether it takes pushed
# compression (settings.py: comp_flags, comp_peer_info).
COMP_F_ADAPTIVE = 1 << 0
COMP_F_SWAP = 1 << 2
COMP_F_ADVERTISE_STUBS_ONLY = 1 << 3
COMP_F_ALLOW_STUB_ONLY = 1 << 4
COMP_F_MIGRATE = 1 << 5
COMP_F_ALLOW_ASYM = 1 << 6

# A 2.6 client's compression peer-info when it advertises stubs only (settings.comp_peer_info)
STUB_PEER_INFO = ("IV_LZO_STUB=1", "IV_COMP_STUB=1", "IV_COMP_STUBv2=1")

# mode -> the stub framing used for sending: the same header bytes, nothing compressed
SEND_FRAMING = {"lzo": "lzo-stub", "lz4": "stub", "lz4-v2": "stub-v2"}
MODES = tuple(SEND_FRAMING)

LZO_COMPRESS_BYTE = 0x66        # comp-lzo / compress lzo: compressed, no swap
NO_COMPRESS_BYTE = 0xFA
LZ4_COMPRESS_BYTE = 0x69        # compress lz4: compressed, first byte swapped with the last
NO_COMPRESS_BYTE_SWAP = 0xFB
V2_INDICATOR = 0x50             # compress lz4-v2: 0x50 then the algorithm byte
V2_UNCOMPRESSED = 0x00
V2_LZ4 = 0x01

_PACKAGE = {"lzo": ("lzo", "python-lzo"), "lz4": ("lz4.block", "lz4"), "lz4-v2": ("lz4.block", "lz4")}


def missing_library(mode: str) -> str | None:
    """The Python package this mode needs when it cannot be imported here (None: usable)."""
    module, package = _PACKAGE[mode]
    try:
        __import__(module)
    except ImportError:
        return package
    return None


class DecompressError(Exception):
    """A payload the peer framed as compressed that does not decompress within the bound."""


def _lzo(data, limit: int) -> bytes:
    import lzo
    try:
        out = lzo.decompress(bytes(data), False, limit)
    except lzo.error as e:
        raise DecompressError(f"LZO: {e}") from None
    return out


def _lz4(data, limit: int) -> bytes:
    import lz4.block
    try:
        return lz4.block.decompress(bytes(data), uncompressed_size=limit)
    except lz4.block.LZ4BlockError as e:
        raise DecompressError(f"LZ4: {e}") from None


def decompress(mode: str, pt, limit: int):
    """The tunnel packet inside one received payload, as OpenVPN 2.6's decompressor for `mode`
    reads it. None: a framing byte this mode does not know, or nothing left (OpenVPN drops these
    too). Raises DecompressError for a compressed payload that is malformed or would exceed
    `limit` bytes."""
    n = len(pt)
    if not n:
        return None
    b0 = pt[0]
    if mode == "lzo":
        if b0 == NO_COMPRESS_BYTE:
            out = pt[1:]
        elif b0 == LZO_COMPRESS_BYTE:
            out = _lzo(memoryview(pt)[1:], limit)
        else:
            return None
    elif mode == "lz4":
        if n < 2:
            return None
        body = bytearray(pt[-1:]) + pt[1:-1]         # undo the swap: the last byte was the first
        if b0 == NO_COMPRESS_BYTE_SWAP:
            out = body
        elif b0 == LZ4_COMPRESS_BYTE:
            out = _lz4(body, limit)
        else:
            return None
    else:                                            # lz4-v2: only 0x50 starts a header
        if b0 != V2_INDICATOR:
            return pt
        if n < 2:
            return None
        if pt[1] == V2_UNCOMPRESSED:
            out = pt[2:]
        elif pt[1] == V2_LZ4:
            out = _lz4(memoryview(pt)[2:], limit)
        else:
            return None
    return out if len(out) else None


def compressed(mode: str, pt) -> bool:
    """Whether the peer framed this payload as compressed (not just carried in the framing)."""
    if not pt:
        return False
    if mode == "lzo":
        return pt[0] == LZO_COMPRESS_BYTE
    if mode == "lz4":
        return pt[0] == LZ4_COMPRESS_BYTE
    return len(pt) > 1 and pt[0] == V2_INDICATOR and pt[1] == V2_LZ4


def pushed_compression(compress: str | None, comp_lzo: str | None, stub_only: bool) -> str:
    """The session's framing after a push carrying `compress X` or `comp-lzo X` (compress wins,
    as our parse of the reply keeps both). As OpenVPN 2.6's client (init.c, "server pushed
    compression settings that are not allowed"): real compression is refused, ending the
    connection attempt, when the profile allows stubs only (no compression line, `comp-lzo no`,
    `allow-compression no`)."""
    from .errors import PushError
    if compress is not None:
        mode = {"stub": "stub", "stub-v2": "stub-v2"}.get(compress, compress)
    else:
        mode = "lzo-stub" if comp_lzo == "no" else "lzo"
    if mode not in ("stub", "stub-v2", "lzo-stub") and mode not in SEND_FRAMING:
        raise PushError(f"server pushed compression {compress}, not supported")
    if mode in SEND_FRAMING:
        pushed = f"compress {compress}" if compress is not None else f"comp-lzo {comp_lzo}"
        if stub_only:
            raise PushError(f"server pushed `{pushed}`, which this profile does not allow (as OpenVPN 2.6: "
                            "add `allow-compression asym` or the server's compression line to the profile "
                            "to decompress what the server compresses)")
        pkg = missing_library(mode)
        if pkg is not None:
            raise PushError(f"server pushed `{pushed}`: decompressing it needs the Python package {pkg}, "
                            "which this installation lacks")
    return mode
