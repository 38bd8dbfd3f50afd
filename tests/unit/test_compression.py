"""Real compression framings (appliance/openvpn/compression.py) as OpenVPN 2.6 reads them
(lzo.c, comp-lz4.c): packets built the way 2.6's compressors build them decompress to the
original; everything else -- garbage, bad framing, a decompression bomb -- ends as None or
DecompressError within the output bound, never as an exception of another kind or a big
allocation. Config and push rules as options.c / init.c."""
from __future__ import annotations

import lz4.block
import lzo
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.openvpn.compression import DecompressError, decompress, pushed_compression
from appliance.openvpn.compstub import compress_stub
from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError, PushError
from appliance.openvpn.settings import comp_flags, comp_framing, comp_peer_info

LIMIT = 1600
PACKET = bytes([0x45, 0]) + bytes(range(256)) * 5          # an IP-looking, compressible packet


def _lz4(data: bytes) -> bytes:
    return lz4.block.compress(data, store_size=False)


def framed_by_openvpn(mode: str, data: bytes) -> bytes:
    """A compressed payload as 2.6's compressor with allow-compression yes sends it."""
    if mode == "lzo":
        return b"\x66" + lzo.compress(data, 1, False)
    z = _lz4(data)
    if mode == "lz4":
        return b"\x69" + z[1:] + z[:1]                      # head byte moved to the tail
    return b"\x50\x01" + z


@pytest.mark.parametrize("mode", ["lzo", "lz4", "lz4-v2"])
def test_openvpn_compressed_packets_decompress(mode):
    assert bytes(decompress(mode, framed_by_openvpn(mode, PACKET), LIMIT)) == PACKET


@pytest.mark.parametrize("mode", ["lzo", "lz4", "lz4-v2"])
def test_what_we_send_is_uncompressed_and_reads_back(mode):
    """Our send side is the stub framing of the same family; a 2.6 peer's decompressor (ours
    mirrors it) reads it as "not compressed"."""
    for pkt in (PACKET, b"\x50\x01xyz", b"\x66abc", b"\x69\x00"):
        sent = compress_stub(mode, pkt)
        assert len(sent) <= len(pkt) + 2
        assert bytes(decompress(mode, bytearray(sent), LIMIT)) == pkt


def test_framing_bytes_of_each_mode():
    assert compress_stub("lzo", b"\x45ab") == b"\xfa\x45ab"
    assert compress_stub("lz4", b"\x45ab") == b"\xfbab\x45"
    assert compress_stub("lz4-v2", b"\x45ab") == b"\x45ab"
    assert decompress("lz4-v2", b"\x45ab", LIMIT) == b"\x45ab"      # v2: only 0x50 starts a header
    assert decompress("lzo", b"\xfb\x45ab", LIMIT) is None          # 2.6's lzo knows 0x66 and 0xFA only
    assert decompress("lz4", b"\xfa\x45ab", LIMIT) is None
    assert decompress("lz4-v2", b"\x50\x02abc", LIMIT) is None      # v2 LZO: not an algorithm of 2.6
    assert decompress("lz4-v2", b"\x50", LIMIT) is None
    assert decompress("lzo", b"\xfa", LIMIT) is None                # nothing left


@pytest.mark.parametrize("mode", ["lzo", "lz4", "lz4-v2"])
def test_a_decompression_bomb_is_refused_within_the_bound(mode):
    bomb = framed_by_openvpn(mode, bytes(200_000))
    assert len(bomb) < 2000
    with pytest.raises(DecompressError):
        decompress(mode, bomb, LIMIT)
    # exactly at the bound still decompresses
    assert len(decompress(mode, framed_by_openvpn(mode, bytes(LIMIT)), LIMIT)) == LIMIT


# A size field the libraries would trust in their default modes: python-lzo's header (0xF0 and a
# 4-byte big-endian length: it allocates that length before it decompresses) and lz4.block's
# stored size (4 bytes little-endian in front). 2.6's framing carries neither; we pass the bound
# instead, so these bytes are only compressed data that does not decompress.
_LYING = {"lzo": b"\x66\xf0\x7f\xff\xff\xff\x11\x00\x00",
          "lz4": b"\x69\x00\x00\x7f\x10a\xff",
          "lz4-v2": b"\x50\x01\xff\xff\xff\x7f\x10a"}


@pytest.mark.parametrize("mode", ["lzo", "lz4", "lz4-v2"])
@pytest.mark.parametrize("what", ["lying size", "bomb"])
def test_decompression_allocates_no_more_than_the_bound(mode, what):
    """Peak allocation while a hostile payload is refused: the output bound plus a copy of the
    input, whatever the payload claims or expands to (python-lzo's header mode and lz4.block's
    stored size would allocate the 2 GB these claim; a 1 MB bomb is ~4 kB on the wire)."""
    import tracemalloc
    payload = _LYING[mode] if what == "lying size" else framed_by_openvpn(mode, bytes(1_000_000))
    assert len(payload) < 5000
    tracemalloc.start()
    try:
        with pytest.raises(DecompressError):
            decompress(mode, payload, LIMIT)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= LIMIT + 2 * len(payload) + 4096, peak


@settings(max_examples=300, deadline=None)
@given(mode=st.sampled_from(["lzo", "lz4", "lz4-v2"]), head=st.sampled_from([b"", b"\x66", b"\x69", b"\x50\x01"]),
       body=st.binary(max_size=1500))
def test_hostile_payloads_end_as_none_or_decompress_error_within_the_bound(mode, head, body):
    try:
        out = decompress(mode, bytearray(head + body), LIMIT)
    except DecompressError:
        return
    assert out is None or 0 < len(out) <= max(LIMIT, len(head + body))


@settings(max_examples=100, deadline=None)
@given(mode=st.sampled_from(["lzo", "lz4", "lz4-v2"]), data=st.binary(min_size=1, max_size=LIMIT))
def test_any_packet_compressed_by_openvpn_comes_back_intact(mode, data):
    assert bytes(decompress(mode, framed_by_openvpn(mode, data), LIMIT)) == data


# ------------------------------------------------------------------ config, as options.c
BASE = "client\ndev tun\nremote 198.18.0.1\n<ca>\n</ca>\n"


def _opts(extra: str):
    return parse_config(BASE + extra, "/p/c.ovpn")


@pytest.mark.parametrize("line, framing", [
    ("comp-lzo", "lzo"), ("comp-lzo yes", "lzo"), ("comp-lzo adaptive", "lzo"), ("comp-lzo no", "lzo-stub"),
    ("compress lzo", "lzo"), ("compress lz4", "lz4"), ("compress lz4-v2", "lz4-v2"),
    ("compress stub-v2", "stub-v2"), ("compress lz4\ncomp-lzo no", "lzo-stub"), ("comp-lzo\ncompress lz4-v2", "lz4-v2"),
])
def test_compression_lines_give_the_framing_of_the_last(line, framing):
    o = _opts(line + "\n")
    assert comp_framing(o) == framing
    if framing in ("lzo", "lz4", "lz4-v2"):
        assert any("compression for receiving only" in n for n in o.notes), o.notes


STUBS = ("IV_LZO_STUB=1", "IV_COMP_STUB=1", "IV_COMP_STUBv2=1")
ALL = ("IV_LZ4=1", "IV_LZ4v2=1", "IV_LZO=1", "IV_COMP_STUB=1", "IV_COMP_STUBv2=1")


@pytest.mark.parametrize("extra, peer_info, stub_only", [     # as Debian's 2.6 client sends them (interop)
    ("", STUBS, True),
    ("comp-lzo no\n", STUBS, True),
    ("compress\n", STUBS, False),
    ("compress stub-v2\n", STUBS, False),   # flags set: 2.6 takes pushes
    ("allow-compression no\n", STUBS, True),
    ("comp-lzo yes\n", ALL, False),
    ("compress lz4-v2\n", ALL, False),
    ("allow-compression asym\n", ALL, False),
])
def test_peer_info_and_pushed_compression_policy_as_2_6(extra, peer_info, stub_only):
    o = _opts(extra)
    assert comp_peer_info(o) == peer_info
    assert bool(comp_flags(o) & 0x10) == stub_only


@pytest.mark.parametrize("extra, line, why", [
    ("allow-compression yes\n", 6, "VORACLE"),
    ("compress lz4\nallow-compression no\n", 7, "conflicts"),
    ("allow-compression no\ncomp-lzo yes\n", 7, "allow-compression no"),
    ("allow-compression no\nallow-compression asym\n", 7, "after"),
    ("compress snappy\n", 6, "snappy"),
])
def test_refused_compression_settings_name_their_line(extra, line, why):
    with pytest.raises(ConfigError) as ei:
        _opts(extra)
    errs = list(getattr(ei.value, "errors", [ei.value]))
    assert len(errs) == 1 and errs[0].line == line and why in str(errs[0]), str(errs[0])


def test_allow_compression_asym_and_no_with_stubs_are_accepted():
    assert comp_framing(_opts("allow-compression asym\ncompress lz4-v2\n")) == "lz4-v2"
    assert comp_framing(_opts("allow-compression no\ncomp-lzo no\n")) == "lzo-stub"


def test_pushed_compression_as_2_6():
    assert pushed_compression("lz4-v2", None, stub_only=False) == "lz4-v2"
    assert pushed_compression(None, "yes", stub_only=False) == "lzo"
    assert pushed_compression(None, "no", stub_only=True) == "lzo-stub"
    assert pushed_compression("stub-v2", None, stub_only=True) == "stub-v2"
    for compress, lzo_ in (("lz4-v2", None), ("lz4", None), ("lzo", None), (None, "yes"), (None, "adaptive")):
        with pytest.raises(PushError, match="does not allow"):
            pushed_compression(compress, lzo_, stub_only=True)
    with pytest.raises(PushError, match="not supported"):
        pushed_compression("snappy", None, stub_only=False)


@pytest.mark.parametrize("mode", ["lzo", "lz4", "lz4-v2"])
def test_compressed_tells_a_compressed_payload_from_a_framed_one(mode):
    from appliance.openvpn.compression import compressed
    assert compressed(mode, framed_by_openvpn(mode, PACKET))
    assert not compressed(mode, compress_stub(mode, PACKET))
    assert not compressed(mode, b"") and not compressed(mode, b"\x50")
