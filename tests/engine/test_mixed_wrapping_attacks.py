"""A tls-crypt-v2 server with a shared tls-auth/tls-crypt key beside it (compat50), attacked
(review50e). What 2.6.14 does, read in its ssl.c/ssl_pkt.c/mudp.c: the key is picked once, at a
session's first packet (read_control_auth: the client's own from a HARD_RESET_CLIENT_V3 or
CONTROL_WKC_V1, the shared one otherwise); every later packet of that session -- a soft reset
too -- is read with that session's key alone, a WKc on a later packet cut off and ignored; a
shared-key reset gets the HMAC-cookie answer and no state (do_pre_decrypt_check). Ours the same:
_unwrap_first picks, _make_wrapper builds, and the session keeps its wrapper."""
from __future__ import annotations

import pytest

from appliance.openvpn import events as ev
from appliance.openvpn import keyfiles, wrapping
from appliance.openvpn.config import parse_config
from appliance.openvpn.opcodes import Op
from appliance.openvpn.settings import server_settings

from .test_server_dispatcher import _client, _pump, _server, _up, pki  # noqa: F401 - pki: the fixture


def _keys():
    shared = keyfiles.parse_static_key(keyfiles.generate_static_key())
    v2 = keyfiles.parse_tls_crypt_v2_server_key(keyfiles.generate_tls_crypt_v2_server_key())
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key(keyfiles.generate_tls_crypt_v2_client_key(v2))
    return shared, v2, kc, wkc


def _mixed(pki, shared, v2, **kw):
    return _server(pki, "tls-crypt-v2", static_key=shared, key_direction=0, v2_server_key=v2,
                   shared_protection="tls-auth", **kw)


def test_a_mixed_config_gives_the_dispatcher_both_keys():
    """The config's two lines reach the dispatcher as 2.6's init.c keeps them: the tls-crypt-v2
    server key and the shared key side by side (settings.server_settings)."""
    shared_text = keyfiles.generate_static_key()
    v2_text = keyfiles.generate_tls_crypt_v2_server_key()
    files = {"ta.key": shared_text.encode(), "v2.key": v2_text.encode()}
    o = parse_config("dev tun\nserver 198.18.61.0 255.255.255.0\ntls-auth ta.key 0\ndh none\nca ca.crt\n"
                     "cert s.crt\nkey s.key\ntls-crypt-v2 v2.key\n", "/p/s.conf",
                     lambda p: files.get(p.rsplit("/", 1)[-1], b"x"))
    st = server_settings(o)
    assert (st.protection, st.shared_protection) == ("tls-crypt-v2", "tls-auth")
    assert st.static_key == keyfiles.parse_static_key(shared_text)
    assert st.v2_server_key == keyfiles.parse_tls_crypt_v2_server_key(v2_text)


@pytest.mark.parametrize("first, then", [("tls-auth", "v2"), ("v2", "tls-auth")])
def test_a_renegotiation_under_the_other_key_is_not_taken(pki, first, then):
    """A session begun under one key, its soft reset wrapped with the other (a holder of both
    keys, or a v2 client's own key on a shared-key session): dropped, counted; the session runs on
    with its key 0 and no new key state."""
    shared, v2, kc, wkc = _keys()
    d = _mixed(pki, shared, v2)
    mk = {"tls-auth": lambda: wrapping.TlsAuthWrapper(shared, 1),
          "v2": lambda: wrapping.TlsCryptV2ClientWrapper(kc, wkc)}
    s = _client(pki, pki["clients"][0], mk[first], early=first == "v2")
    addr = ("198.18.0.2", 40000)
    _pump(d, [(s, addr)])
    assert _up(s)
    rec = d.by_addr[addr]
    d.take_outgoing()
    dropped = sum(rec.session.stats.values()) + sum(d.stats.values())
    s.wrapper = mk[then]()
    s.renegotiate(1.0)
    sent = s.take_outgoing()
    assert sent and sent[0][0] >> 3 == Op.CONTROL_SOFT_RESET_V1
    for p in sent:
        d.receive(p, addr, 1.0)
    d.handle_timer(1.5)
    assert rec.alive and rec.session.established and set(rec.session.keys) == {0}, rec.session.keys
    assert sum(rec.session.stats.values()) + sum(d.stats.values()) >= dropped + len(sent), (rec.session.stats, d.stats)
    assert not any(p[0] >> 3 == Op.CONTROL_SOFT_RESET_V1 for p, _ in d.take_outgoing())


def test_a_shared_key_client_gets_no_state_before_its_cookie_even_with_force_cookie(pki):
    """force-cookie beside a shared key: a shared-key client still proves its address by the
    cookie exchange first (as any tls-auth server's client): 200 resets from as many addresses,
    authenticated by the shared key, make 200 answers of one packet each and no record."""
    shared, v2, _kc, _wkc = _keys()
    d = _mixed(pki, shared, v2, force_cookie=True, connect_freq_initial=(10_000, 10))
    for i in range(200):
        s = _client(pki, pki["clients"][0], lambda: wrapping.TlsAuthWrapper(shared, 1))
        reset = s.take_outgoing()
        assert len(reset) == 1
        d.receive(reset[0], ("198.18.1.%d" % (i % 250 + 1), 30000 + i), 0.5)
    out = d.take_outgoing()
    assert len(out) == 200 and all(p[0] >> 3 == Op.CONTROL_HARD_RESET_SERVER_V2 for p, _ in out)
    assert not d.by_addr and not d.pending and not d._cookie_keys and d.admission.oldest_in_progress() is None


def test_unauthenticated_packets_of_every_kind_cost_a_mixed_server_nothing(pki):
    """Garbage of each first-packet kind (both resets, a WKc packet, CONTROL_V1, ACK_V1), wrapped
    by no key, or by a tls-crypt key where the shared one is tls-auth: no answer, no record, no
    kept key, each counted."""
    shared, v2, kc, wkc = _keys()
    d = _mixed(pki, shared, v2, connect_freq_initial=(10_000, 10))
    makers = [wrapping.PlainWrapper, lambda: wrapping.TlsCryptWrapper(shared, False),
              lambda: wrapping.TlsCryptV2ClientWrapper(kc, wkc[:-40] + bytes(40))]
    n = 0
    for mk in makers:
        for early in (False, True):
            s = _client(pki, pki["clients"][0], mk, early=early)
            reset = bytes(s.take_outgoing()[0])
            for op in (Op.CONTROL_HARD_RESET_CLIENT_V2, Op.CONTROL_HARD_RESET_CLIENT_V3, Op.CONTROL_WKC_V1,
                       Op.CONTROL_V1, Op.ACK_V1):
                d.receive(bytes([op << 3]) + reset[1:], ("198.18.2.%d" % (n % 250 + 1), 20000 + n), 0.5)
                n += 1
    assert d.take_outgoing() == []
    assert not d.by_addr and not d.pending and not d._cookie_keys
    assert sum(d.stats.values()) >= n, d.stats

