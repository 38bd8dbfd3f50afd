"""Decrypted packets must be writable: the gateways clamp TCP MSS in place (a read-only view
once crashed the client on the CBC path)."""
import pytest

from appliance.openvpn.datachannel import DataKey


@pytest.mark.parametrize("cipher", ["AES-256-GCM", "CHACHA20-POLY1305", "AES-256-CBC", "AES-128-CBC"])
def test_open_returns_writable_plaintext(cipher):
    k = bytes(range(64))
    a = DataKey(cipher, 0, k, k[::-1], k[::-1], k, peer_id=3, auth="SHA256")
    b = DataKey(cipher, 0, k[::-1], k, k, k[::-1], peer_id=3, auth="SHA256")
    pt = b.open_untrusted(bytes(a.seal(b"\x45" + bytes(59))))
    assert bytes(pt) == b"\x45" + bytes(59)
    pt[1] = 7          # must not raise
