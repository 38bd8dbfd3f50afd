"""OpenVPN's compression framing without compression ("stub"): the byte that says "not compressed".

Why: servers still push `compress`/`comp-lzo`; OpenVPN then expects a framing byte (or the v2
escape) in front of every data packet even though nothing is compressed. We speak that framing
and refuse actually compressed packets (counted by the caller).

`mode` is the session's: "lzo-stub" (comp-lzo: 0xFA prefix), "stub" (compress: 0xFB with the
first byte moved to the end, as OpenVPN's swap), "stub-v2" (only a leading 0x50 is escaped).
"""
from __future__ import annotations


def compress_stub(mode: str, payload):
    """Frame one tunnel packet for sending. The real modes (compression.py) send uncompressed in
    their stub's framing: lzo as lzo-stub, lz4 as stub, lz4-v2 as stub-v2."""
    if mode == "lzo-stub" or mode == "lzo":
        return b"\xfa" + bytes(payload)
    if mode == "stub" or mode == "lz4":
        p = bytes(payload)
        return b"\xfb" + p[1:] + p[:1] if p else b"\xfb"
    # stub-v2: only a packet starting with 0x50 needs an escape; IP packets never do
    return b"\x50\x00" + bytes(payload) if payload[:1] == b"\x50" else payload


def decompress_stub(mode: str, pt):
    """The tunnel packet inside one received payload (empty: nothing, or nothing after a right
    header; dropped as 2.6 drops it); None when its framing is not this mode's, as OpenVPN 2.6's
    stubs read it (compstub.c): `comp-lzo no` takes only 0xFA, `compress` (stub, swapped) only 0xFB -- each
    drops the other's byte and a compressed one ("Bad compression stub decompression header
    byte") --, stub-v2 passes anything not starting with 0x50 and takes 0x50 only before 0x00.
    Before, both v1 stubs took 0xFA and 0xFB alike, and a lone 0xFB came out as a one-byte packet."""
    if not len(pt):
        return b""
    b0 = pt[0]
    if mode == "lzo-stub":
        return pt[1:] if b0 == 0xFA else None
    if mode == "stub":
        if b0 != 0xFB:
            return None
        return bytearray(pt[-1:]) + pt[1:-1] if len(pt) > 1 else b""     # the last byte was the first
    if b0 != 0x50:                                  # stub-v2: only 0x50 starts a header
        return pt
    if len(pt) == 1:
        return b""
    return pt[2:] if pt[1] == 0 else None


def framing_byte(mode: str, pt) -> int:
    """The header byte 2.6 names when it drops a payload decompress_stub refused (not empty)."""
    return pt[1] if mode == "stub-v2" and pt[0] == 0x50 else pt[0]
