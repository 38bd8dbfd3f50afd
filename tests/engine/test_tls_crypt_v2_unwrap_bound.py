"""What a tls-crypt-v2 first packet makes the server do is bounded (v2keycache.py).

OpenVPN 2.6 unwraps the wrapped client key (WKc) of each HARD_RESET_CLIENT_V3 / CONTROL_WKC_V1
from an unknown address and builds that key's contexts before it can check anything else
(ssl_pkt.c tls_pre_decrypt_lite -> tls_crypt.c tls_crypt_v2_extract_client_key): the cookie is
inside what Kc encrypts. Ours did the same per packet in Python: ~55-60 us for a valid WKc
(a key holder's, or one seen on the wire: it travels in clear), 5x a forged tls-crypt packet,
with nothing to limit it. Now a valid WKc's key and context are kept for its next packets, and
building one for a WKc not kept spends a budget that only an authenticated WKc can spend.

What the operator checks: a key holder's flood of resets or of third packets with wrong cookies
builds its key once; keys beyond the budget at one instant are dropped and counted ("tls-crypt-v2
client keys over the unwrap rate"), and get in once it refilled; a stranger's forged WKcs spend
none of it, so a genuine client still gets in during such a flood.
"""
from __future__ import annotations

import os

from appliance.openvpn import keyfiles, v2keycache, wrapping
from appliance.openvpn.opcodes import Op, op_byte
from appliance.openvpn.packet import encode_body
from tests.engine.test_server_dispatcher import _client, _pump, _server, _up
from tests.engine.test_server_dispatcher import pki  # noqa: F401 - the fixture


def _v2_client(pki, v2, i=1):  # noqa: F811
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(keyfiles.generate_tls_crypt_v2_client_key(v2))
    return _client(pki, pki["clients"][i], lambda: wrapping.TlsCryptV2ClientWrapper(kc, wkc), early=True), kc, wkc


def _addr(i: int):
    return ("198.18.%d.%d" % (40 + i // 250, i % 250 + 1), 5000 + i % 1000)


def test_a_key_holders_flood_builds_its_key_once(pki, monkeypatch):  # noqa: F811
    v2 = keyfiles.parse_tls_crypt_v2_server_key(keyfiles.generate_tls_crypt_v2_server_key())
    d = _server(pki, "tls-crypt-v2", v2_server_key=v2, connect_freq_initial=(1, 10))
    _c, kc, wkc = _v2_client(pki, v2)
    built = []
    real = wrapping.TlsCryptWrapper
    monkeypatch.setattr(wrapping, "TlsCryptWrapper", lambda *a, **kw: built.append(1) or real(*a, **kw))
    w = wrapping.TlsCryptV2ClientWrapper(kc, wkc)
    for i in range(200):
        # Third packets echoing a wrong cookie, from 200 addresses: answered by nobody.
        p = w.wrap(op_byte(Op.CONTROL_WKC_V1, 0), os.urandom(8), encode_body([0], os.urandom(8), 1, b"x" * 100), 1.0)
        d.receive(p, _addr(i), 1.0)
    assert d.stats["invalid or expired session cookie"] == 200
    assert len(built) == 1, f"the key's tls-crypt context built {len(built)} times for 200 packets"
    for i in range(200):
        p = w.wrap(op_byte(Op.CONTROL_HARD_RESET_CLIENT_V3, 0), os.urandom(8), encode_body([], None, 0, b""), 1.0)
        d.receive(p, _addr(i), 1.0)
    assert d.stats["connect-freq-initial limit reached"] == 199
    assert len(built) <= 2, "one more for the one answer (its own packet ids), none per reset"


def test_keys_beyond_the_build_budget_wait_for_it_and_forgeries_spend_none(pki):  # noqa: F811
    v2 = keyfiles.parse_tls_crypt_v2_server_key(keyfiles.generate_tls_crypt_v2_server_key())
    d = _server(pki, "tls-crypt-v2", v2_server_key=v2, connect_freq_initial=(10_000, 10))
    # A stranger's forged WKcs first: many more than the budget, spending none of it.
    c, _kc, _wkc = _v2_client(pki, v2)
    reset = bytes(c.take_outgoing()[0])
    n_forged = int(v2keycache.BUILD_BURST) * 2
    for i in range(n_forged):
        forged = bytearray(reset)
        forged[-100] ^= 1 + i % 255                  # inside the WKc: fails its tag
        d.receive(bytes(forged), _addr(i), 1.0)
    assert d.stats["wrapped client key failed authentication"] == n_forged
    assert v2keycache.OVER_RATE not in d.stats
    # Then more distinct valid keys than the budget at one instant: the rest are dropped, counted.
    burst = int(v2keycache.BUILD_BURST)
    w = None
    for i in range(burst + 20):
        _kc2, wkc2 = keyfiles.parse_tls_crypt_v2_client_key(keyfiles.generate_tls_crypt_v2_client_key(v2))
        w = wrapping.TlsCryptV2ClientWrapper(_kc2, wkc2)
        p = w.wrap(op_byte(Op.CONTROL_HARD_RESET_CLIENT_V3, 0), os.urandom(8), encode_body([], None, 0, b""), 2.0)
        d.receive(p, _addr(i), 2.0)
    assert d.stats[v2keycache.OVER_RATE] == 20
    d.take_outgoing()                                  # the answers to the first ones
    # A genuine client at that instant is dropped too; a second later (its resend) it gets in.
    late, _kc, _wkc = _v2_client(pki, v2, 2)
    for p in late.take_outgoing():
        d.receive(p, ("198.18.60.1", 6000), 2.0)
    assert d.stats[v2keycache.OVER_RATE] == 21 and not d.take_outgoing()
    late.handle_timer(5.0)                             # its reset again, after the first timeout
    _pump(d, [(late, ("198.18.60.1", 6000))], now=5.0)
    assert _up(late)
