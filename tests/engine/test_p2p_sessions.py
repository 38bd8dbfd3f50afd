"""A point-to-point TLS pair (tls-client and tls-server without pull) in memory: OpenVPN 2.6's p2p NCP.

Both ends must reach the same data channel from the two key-method messages alone (nothing is
pushed): the tls-server's preferred cipher of the ones both list, keys by TLS-EKM when both
offer it, the same peer-id on both sides (from TLS-EKM, or 'vpn' without), data both ways, and
renegotiation. A peer without p2p NCP (older than 2.6) gets the fallback cipher or no tunnel.
"""
from __future__ import annotations

import pytest

from appliance.openvpn import events as ev
from appliance.openvpn import keyfiles, wrapping
from appliance.openvpn.p2p import P2P_DEFAULT_PEER_ID, p2p_cipher, p2p_peer_info
from appliance.openvpn.session import Role, Session, SessionConfig
from appliance.openvpn.tls import TlsSettings
from tests.engine.test_memory_link import Link, payloads, pki, up  # noqa: F401 - pki: the fixture
from tests.aead_paths import aead_path  # noqa: F401 - the fixture: both AEAD paths, compiled and Python

pytestmark = pytest.mark.usefixtures("aead_path")


def _pair(pki, client_ciphers, server_ciphers, ekm=(True, True), fallback=None):  # noqa: F811
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    c = Session(SessionConfig(Role.CLIENT, TlsSettings(pki["ca"], *pki["client"], False, remote_cert_tls="server"),
                              lambda: wrapping.TlsCryptWrapper(key, False), data_ciphers=client_ciphers,
                              data_ciphers_fallback=fallback, advertise_ekm=ekm[0], p2p=True), 0.0)
    s = Session(SessionConfig(Role.SERVER, TlsSettings(pki["ca"], *pki["server"], True, remote_cert_tls="client"),
                              lambda: wrapping.TlsCryptWrapper(key, True), data_ciphers=server_ciphers,
                              data_ciphers_fallback=fallback, advertise_ekm=ekm[1], p2p=True), 0.0)
    c.start(0.0)
    s.start(0.0)
    link = Link(c, s)
    link.run(lambda: up(c, s) or c.closed or s.closed)
    return c, s, link


def _up(sess) -> ev.TunnelUp:
    ups = [e for e in sess.events if isinstance(e, ev.TunnelUp)]
    assert ups, list(sess.events)
    return ups[0]


def test_the_tls_servers_preference_decides_the_cipher_and_both_agree(pki):  # noqa: F811
    c, s, link = _pair(pki, ["AES-128-GCM", "CHACHA20-POLY1305", "AES-256-GCM"],
                       ["AES-256-GCM", "CHACHA20-POLY1305"])
    assert up(c, s)
    assert _up(c).cipher == _up(s).cipher == "AES-256-GCM"
    assert c.ekm and s.ekm
    assert c.peer_id == s.peer_id and c.peer_id is not None and c.peer_id != P2P_DEFAULT_PEER_ID
    assert _up(c).pushed is None and _up(s).pushed is None       # nothing pushed either way
    data = payloads(30)
    assert link.send(c, s, data) == data
    assert link.send(s, c, data) == data
    c.renegotiate(link.now)
    link.run(lambda: c.send_key.key_id == 1 and s.send_key.key_id == 1, max_time=30)
    assert c.send_key.key_id == s.send_key.key_id == 1
    assert link.send(c, s, data) == data and link.send(s, c, data) == data


def test_without_tls_ekm_keys_come_from_the_prf_and_the_peer_id_is_vpn(pki):  # noqa: F811
    c, s, link = _pair(pki, ["AES-256-GCM"], ["AES-256-GCM"], ekm=(False, True))
    assert up(c, s)
    assert not c.ekm and not s.ekm
    assert c.peer_id == s.peer_id == P2P_DEFAULT_PEER_ID
    data = payloads(10)
    assert link.send(c, s, data) == data and link.send(s, c, data) == data


def test_no_common_cipher_and_no_fallback_brings_no_tunnel(pki):  # noqa: F811
    c, s, _link = _pair(pki, ["CHACHA20-POLY1305"], ["AES-256-GCM"])
    assert not c.established and not s.established
    assert s.closed or c.closed


def test_peer_info_is_2_6s_p2p_detail_1():
    info = p2p_peer_info(["AES-256-GCM", "AES-128-GCM"], True)
    # DATA_V2|TLS_EKM|NCP_P2P|DNS_OPTION|CC_EXIT: Debian's 2.6.14 p2p peer sends 746, these and
    # DYN_TLS_CRYPT (512), which this engine does not do
    assert info == "IV_CIPHERS=AES-256-GCM:AES-128-GCM\nIV_PROTO=234\n"
    assert p2p_cipher(["AES-256-GCM"], ["AES-256-GCM"]) == "AES-256-GCM"
    assert p2p_cipher(["aes-256-gcm"], ["AES-256-GCM"]) is None      # strcmp, as 2.6.14 (compat48)
    assert p2p_cipher(["AES-256-GCM"], ["AES-128-GCM"]) is None


def test_either_peer_announces_its_exit_and_the_other_waits_for_it_again(pki):  # noqa: F811
    """explicit-exit-notify on a p2p link: EXIT on the control channel (both announce
    CC_EXIT_NOTIFY), from the tls-server too; the other side restarts (2.6's SIGUSR1), it
    does not end its run."""
    for leaving in ("server", "client"):
        c, s, link = _pair(pki, ["AES-256-GCM"], ["AES-256-GCM"])
        assert c.cc_exit and s.cc_exit
        go, stay = (s, c) if leaving == "server" else (c, s)
        assert go.notify_exit(link.now, first=True)
        link.run(lambda: stay.closed, max_time=5)
        closed = [e for e in stay.events if isinstance(e, ev.SessionClosed)]
        assert closed and closed[0].restart and "EXIT" in closed[0].reason, (leaving, closed)
