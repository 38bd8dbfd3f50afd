"""A client that names its data ciphers (IV_CIPHERS, or IV_NCP=2) and shares none with the
server is refused as OpenVPN 2.6.14 refuses it (multi.c multi_client_set_protocol_options):
AUTH_FAILED with "Data channel cipher negotiation failed (no shared cipher)", the server's log
saying both lists; data-ciphers-fallback is for a client that names none (compat47). Before,
ours gave such a client the fallback (which it then refused to use) or failed it with a TLS
error and no word, so it retried for ever."""
from __future__ import annotations

import pytest

from appliance.openvpn import events as ev
from tests.engine.test_memory_link import Link, make_pair, pki, up  # noqa: F401 - pki: the fixture

REASON = "Data channel cipher negotiation failed (no shared cipher)"


def _run(pki, info: str, fallback: str | None, server_ciphers=("AES-256-GCM",)):
    c, s, _ = make_pair(pki, cipher="AES-256-GCM")
    c.role._peer_info = lambda: info
    s.cfg.data_ciphers, s.cfg.data_ciphers_fallback = list(server_ciphers), fallback
    Link(c, s).run(lambda: up(c, s) or s.closed or c.closed, max_time=30)
    return c, s


def _closed(sess) -> list[ev.SessionClosed]:
    return [e for e in sess.events if isinstance(e, ev.SessionClosed)]


V26 = "IV_VER=2.6.14\nIV_PROTO=990\n"


@pytest.mark.parametrize("info,server_ciphers", [
    (V26 + "IV_CIPHERS=CHACHA20-POLY1305\n", ["AES-256-GCM"]),
    (V26 + "IV_CIPHERS=AES-128-GCM:CHACHA20-POLY1305\nIV_NCP=2\n", ["AES-256-GCM"]),   # IV_CIPHERS rules
    ("IV_VER=2.4.12\nIV_PROTO=2\nIV_NCP=2\n", ["CHACHA20-POLY1305"]),          # 2.4: the two GCMs only
])
@pytest.mark.parametrize("fallback", [None, "AES-256-GCM", "CHACHA20-POLY1305"])
def test_a_client_naming_no_cipher_of_ours_is_refused_with_26s_reason(pki, info, server_ciphers, fallback):
    c, s = _run(pki, info, fallback, server_ciphers)
    assert not up(c, s)
    said = _closed(s)[0].reason
    assert "No common cipher between server and client. Server data-ciphers: " in said, said
    assert s.stats.get("no common data cipher") == 1
    assert any(e.reason == f"AUTH_FAILED {REASON}" for e in _closed(c)), _closed(c)


@pytest.mark.parametrize("info", ["IV_VER=2.3.18\nIV_PROTO=2\n", V26 + "IV_CIPHERS=\nIV_NCP=2\n"])
def test_a_client_naming_no_ciphers_gets_the_fallback(pki, info):
    """No IV_CIPHERS nor IV_NCP (2.3, or --enable-small), or an empty IV_CIPHERS (2.6 reads
    that as naming none: tls_peer_ncp_list): data-ciphers-fallback, as 2.6."""
    c, s = _run(pki, info, "AES-256-GCM")
    assert up(c, s) and s.cipher == "AES-256-GCM"


def test_a_client_naming_no_ciphers_without_a_fallback_is_refused(pki):
    c, s = _run(pki, "IV_VER=2.3.18\nIV_PROTO=2\n", None)
    assert not up(c, s) and "No NCP or OCC cipher data received from peer" in _closed(s)[0].reason
    assert any(e.reason == f"AUTH_FAILED {REASON}" for e in _closed(c))


# review47d: 2.6's "poor man's NCP" (ssl_ncp.c ncp_get_best_cipher; multi.c): a client sending
# no IV_CIPHERS whose options string names a cipher (a pre-2.4 client always does) is given that
# cipher when data-ciphers lists it, and refused -- data-ciphers-fallback or not -- when it does
# not ("client supports cipher 'X'"). Before, ours gave it the fallback, a cipher the client
# never takes: both ends up, nothing carried.
V23 = "IV_VER=2.3.18\nIV_PROTO=2\n"


def _run_occ(pki, info: str, occ: str, fallback: str | None, server_ciphers, client_cipher="AES-256-GCM"):
    c, s, _ = make_pair(pki, cipher=client_cipher)
    c.role._peer_info = lambda: info
    c._options_string = lambda: f"V4,dev-type tun,link-mtu 1550,tun-mtu 1500,proto UDPv4,cipher {occ},auth SHA256,keysize 256,key-method 2,tls-client"
    s.cfg.data_ciphers, s.cfg.data_ciphers_fallback = list(server_ciphers), fallback
    Link(c, s).run(lambda: up(c, s) or s.closed or c.closed, max_time=30)
    return c, s


@pytest.mark.parametrize("fallback", [None, "AES-256-GCM"])
def test_an_old_client_naming_a_cipher_not_in_data_ciphers_is_refused_even_with_a_fallback(pki, fallback):
    c, s = _run_occ(pki, V23, "AES-128-GCM", fallback, ["AES-256-GCM"])
    assert not up(c, s)
    said = _closed(s)[0].reason
    assert "No common cipher between server and client. Server data-ciphers: 'AES-256-GCM', " \
           "client supports cipher 'AES-128-GCM'" in said, said
    assert s.stats.get("no common data cipher") == 1
    assert any(e.reason == f"AUTH_FAILED {REASON}" for e in _closed(c)), _closed(c)


def test_an_old_client_is_given_the_cipher_its_options_string_names_when_data_ciphers_lists_it(pki):
    c, s = _run_occ(pki, V23, "AES-128-GCM", "AES-256-GCM", ["AES-256-GCM", "AES-128-GCM"],
                    client_cipher="AES-128-GCM")
    assert up(c, s) and s.cipher == "AES-128-GCM"


def test_iv_ciphers_makes_the_options_string_cipher_moot(pki):
    c, s = _run_occ(pki, V26 + "IV_CIPHERS=AES-256-GCM\n", "AES-128-GCM", None, ["AES-128-GCM", "AES-256-GCM"])
    assert up(c, s) and s.cipher == "AES-256-GCM"


def test_the_clients_cipher_list_reaches_the_log_without_its_control_characters(pki):
    """review47d: IV_CIPHERS is the client's text; an ESC in it drove the terminal the log went to."""
    c, s = _run(pki, V26 + "IV_CIPHERS=\x1b[2J\x07X:FOO\n", None)
    said = _closed(s)[0].reason
    assert "client supported ciphers '\\x1b[2J\\x07X:FOO'" in said, said
    assert not any(ord(ch) < 0x20 for ch in said)
    c, s = _run_occ(pki, V23, "\x1b]0;x\x07", None, ["AES-256-GCM"])
    said = _closed(s)[0].reason
    assert "client supports cipher '\\x1b]0;x\\x07'" in said and not any(ord(ch) < 0x20 for ch in said), said
