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
    """The tunnel packet inside one received payload, or None if it is empty or compressed."""
    if not len(pt):
        return None
    b0 = pt[0]
    if mode == "lzo-stub" or mode == "stub":
        if b0 == 0xFA:
            return pt[1:]
        if b0 == 0xFB:
            return bytearray(pt[-1:]) + pt[1:-1]
        return None
    if b0 == 0x50:
        if len(pt) >= 2 and pt[1] == 0:
            return pt[2:]
        return None
    return pt
