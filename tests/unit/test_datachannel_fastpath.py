"""The data channel's fast paths against independent constructions.

seal() (bytes, one struct call, tag moved by slicing) and seal_into() (a caller's buffer) must give
the same wire bytes as each other and as the wire format built straight from `cryptography`'s AEAD
(OpenVPN's layout: header | packet-id | tag | ciphertext); open must undo both and refuse tampering
and replays. open now returns immutable bytes, so the data path's MSS clamp copies the SYNs it
edits (a read-only plaintext once crashed the client on the CBC path: every cipher is covered).
Every test runs on both AEAD paths, the compiled one and the Python one (tests/aead_paths.py).
"""
from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import given, settings, strategies as st

from appliance.openvpn.datachannel import DataKey
from appliance.openvpn.datapath import MssPolicy
from appliance.openvpn.errors import BadPacket
from appliance.openvpn.mss import clamp_mss
from appliance.tun.offload import checksum
from tests.aead_paths import aead_path  # noqa: F401 - the fixture: both AEAD paths, compiled and Python

pytestmark = pytest.mark.usefixtures("aead_path")

K1, K2 = bytes(range(64)), bytes(range(64, 128))
AEADS = {"AES-128-GCM": (AESGCM, 16), "AES-192-GCM": (AESGCM, 24), "AES-256-GCM": (AESGCM, 32),
         "CHACHA20-POLY1305": (ChaCha20Poly1305, 32)}


def test_keys_are_built_on_the_path_under_test(aead_path):  # noqa: F811 - the fixture
    """Else every test below could run the same path twice and prove nothing about the other."""
    for cipher in AEADS:
        a, _ = _pair(cipher, 1)
        assert (a._csend is not None and a._crecv is not None) == (aead_path == "c")
        assert (a.aead is not None) == (aead_path == "python")


def _pair(cipher: str, peer_id: int | None):
    a = DataKey(cipher, 2, K1, K2, K2, K1, peer_id=peer_id, auth="SHA256")
    b = DataKey(cipher, 2, K2, K1, K1, K2, peer_id=peer_id, auth="SHA256")
    return a, b


def _reference(cipher: str, peer_id: int | None, pid: int, payload: bytes) -> bytes:
    cls, n = AEADS[cipher]
    hdr = bytes((0x48 | 2,)) + peer_id.to_bytes(3, "big") if peer_id is not None else bytes((0x30 | 2,))
    p = struct.pack("!I", pid)
    aad = hdr + p if peer_id is not None else p
    r = cls(K1[:n]).encrypt(p + K2[:8], payload, aad)
    return hdr + p + r[-16:] + r[:-16]


@settings(max_examples=60, deadline=None)
@given(cipher=st.sampled_from(sorted(AEADS)), peer_id=st.sampled_from([None, 0, 7, 0xABCDEF]),
       payloads=st.lists(st.binary(min_size=0, max_size=1600), min_size=1, max_size=4))
def test_seal_equals_seal_into_equals_reference_and_opens(cipher, peer_id, payloads):
    a, b = _pair(cipher, peer_id)
    a2, _ = _pair(cipher, peer_id)
    buf = memoryview(bytearray(1700))
    for i, pl in enumerate(payloads, 1):
        w = a.seal(pl)
        n = a2.seal_into(pl, buf)
        assert bytes(buf[:n]) == w == _reference(cipher, peer_id, i, pl)
        assert len(w) == len(pl) + a.overhead()
        assert b.open_untrusted(w, 1.0) == pl
    assert a.packets_sent == a.send_pid == len(payloads) and b.packets_recv == len(payloads)
    assert a.bytes_sent == b.bytes_recv == sum(map(len, payloads))


@settings(max_examples=40, deadline=None)
@given(cipher=st.sampled_from(sorted(AEADS)), pl=st.binary(min_size=1, max_size=300), pos=st.integers(0, 400),
       bit=st.integers(0, 7))
def test_any_flipped_bit_is_refused(cipher, pl, pos, bit):
    a, b = _pair(cipher, 5)
    w = bytearray(a.seal(pl))
    pos %= len(w)
    if pos < 1:
        pos = 1          # the opcode byte picks the key, not the cipher's business
    w[pos] ^= 1 << bit
    with pytest.raises(BadPacket):
        b.open_untrusted(bytes(w), 1.0)


@pytest.mark.parametrize("cipher", [*AEADS, "AES-256-CBC"])
def test_replays_refused_out_of_order_accepted_and_memoryview_input(cipher):
    a, b = _pair(cipher, 1)
    w = [a.seal(bytes([0x45, i])) for i in range(5)]
    assert b.open_untrusted(memoryview(w[2]), 1.0) == bytes([0x45, 2])
    assert b.open_untrusted(w[0], 1.0) == bytes([0x45, 0])          # older, inside the window
    for x in (w[2], w[0]):
        with pytest.raises(BadPacket):
            b.open_untrusted(x, 1.0)
    assert b.open_untrusted(bytearray(w[4]), 1.0) == bytes([0x45, 4])
    with pytest.raises(BadPacket):
        b.open_untrusted(w[4][:10], 1.0)


def _syn(mss: int) -> bytes:
    ip = bytearray(b"\x45\x00\x00\x2c\x00\x01\x40\x00\x40\x06\x00\x00" + bytes([198, 19, 0, 2, 198, 18, 0, 1]))
    ip[10:12] = checksum(ip).to_bytes(2, "big")
    tcp = bytearray(struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 6 << 4, 0x02, 65535, 0, 0) + b"\x02\x04" +
                    mss.to_bytes(2, "big"))
    pseudo = bytes(ip[12:20]) + b"\x00\x06" + len(tcp).to_bytes(2, "big")
    tcp[16:18] = checksum(pseudo + tcp).to_bytes(2, "big")
    return bytes(ip + tcp)


class _S:
    def __init__(self, key):
        self.send_key = key


@pytest.mark.parametrize("cipher", ["AES-256-GCM", "CHACHA20-POLY1305", "AES-256-CBC", "AES-128-CBC"])
def test_clamp_of_an_opened_syn_copies_it_and_equals_the_in_place_clamp(cipher):
    a, b = _pair(cipher, 3)
    pt = b.open_untrusted(a.seal(_syn(1460)), 1.0)
    assert isinstance(pt, bytes)
    policy = MssPolicy(lambda c, v2: 1300)
    out = policy.clamp(pt, _S(a))
    want = bytearray(_syn(1460))
    assert clamp_mss(want, 1300)
    assert bytes(out) == bytes(want) and pt == _syn(1460)
    assert policy.clamp(_syn(1200), _S(a)) == _syn(1200)        # nothing to lower: no copy needed
    data = _syn(1460)[:33] + b"\x10" + _syn(1460)[34:]          # an ACK, not a SYN: untouched
    assert policy.clamp(data, _S(a)) is data


@settings(max_examples=300, deadline=None)
@given(head=st.sampled_from([b"\x45", b"\x46", b"\x60", b"\x4f", b"\x00"]), body=st.binary(min_size=0, max_size=90),
       proto=st.sampled_from([6, 17]), flags=st.integers(0, 255), writable=st.booleans())
def test_clamp_with_prefilter_equals_the_full_check_on_random_packets(head, body, proto, flags, writable):
    """The cheap per-packet pre-filter must never skip a packet the full SYN check would clamp."""
    from appliance.openvpn.datapath import _is_tcp_syn
    p = bytearray(head + body)
    for i, v in ((9, proto), (6, proto), (33, flags), (53, flags)):
        if len(p) > i:
            p[i] = v
    ref = bytearray(p)
    if _is_tcp_syn(ref):
        clamp_mss(ref, 1200)
    policy = MssPolicy(lambda c, v2: 1200)
    k = _pair("AES-256-GCM", 1)[0]
    out = policy.clamp(bytearray(p) if writable else bytes(p), _S(k))
    assert bytes(out) == bytes(ref)
