"""The stub framings' first byte, as OpenVPN 2.6's compstub.c reads it (`comp-lzo no`: 0xFA only;
`compress`: 0xFB only, swapped; `compress stub-v2`: 0x50 only before 0x00). Before, both v1 stubs
took either byte and a lone 0xFB came out as a one-byte packet. The session's side:
tests/engine/test_stub_framing_session.py."""
from __future__ import annotations

import pytest

from appliance.openvpn.compstub import decompress_stub


# What OpenVPN 2.6's stubs (compstub.c) make of each first byte: the packet, dropped silently
# (empty), or dropped as a bad header byte (None), per framing.
@pytest.mark.parametrize("mode, payload, out", [
    ("lzo-stub", b"\xfa\x45ab", b"\x45ab"),
    ("lzo-stub", b"\xfb\x45ab", None),          # `compress`'s byte: not comp-lzo's (before: taken)
    ("lzo-stub", b"\x66\x45ab", None),          # LZO-compressed
    ("lzo-stub", b"\x45ab", None),              # no header at all
    ("lzo-stub", b"\xfa", b""),
    ("stub", b"\xfbab\x45", b"\x45ab"),
    ("stub", b"\xfa\x45ab", None),              # comp-lzo's byte: not `compress`'s (before: taken)
    ("stub", b"\x69ab\x45", None),              # LZ4-compressed
    ("stub", b"\xfb", b""),                     # before: a one-byte packet 0xFB
    ("stub-v2", b"\x45ab", b"\x45ab"),
    ("stub-v2", b"\x50\x00\x50ab", b"\x50ab"),
    ("stub-v2", b"\x50\x01ab", None),           # LZ4 v2
    ("stub-v2", b"\xfa\x45", b"\xfa\x45"),      # no 0x50: a packet as it is
    ("stub-v2", b"\x50", b""),
    ("stub-v2", b"", b""),
])
def test_stub_first_bytes_as_2_6(mode, payload, out):
    got = decompress_stub(mode, payload)
    assert (bytes(got) if got is not None else None) == out
