"""`verify-client-cert optional` and the certificate lock at renegotiation (control.py _advance).

OpenVPN 2.6 lets a renegotiation without a certificate pass its locks (ssl_verify.c
verify_final_auth_checks: a NULL common name or cert hash set skips the comparisons) and keeps
believing the session is the certificate's: its common name, address, ccd options, status line
and the hash set it locked stay the first certificate's, though that handshake proved no
possession of its key. Whoever completes a renegotiation on the session (the tls-crypt key every
client holds, the password or a pushed auth-token, or nothing at all when `optional` admits
clients without a password) would carry on as that certificate's holder. Ours refuses it: a
deviation kept on purpose (README, "The server"). The reverse too: a session that began without
a certificate does not become a certificate's mid-session (its address, ccd and client-connect
verdict were for the first identity); a client that now has one reconnects."""
from __future__ import annotations

from appliance.openvpn.tls import TlsSettings, build_context
from tests.engine.test_session_security import _closed, _renegotiate
from tests.engine.test_session_security import pki  # noqa: F401 - the fixture
from tests.engine.test_memory_link import Link, make_pair, up


def _optional_pair(pki, with_cert: bool):  # noqa: F811
    c, s, strip = make_pair(pki)
    s.cfg.tls = TlsSettings(pki["ca"], *pki["server"], True, verify_client_cert="optional")
    s.tls_context = build_context(s.cfg.tls)
    if not with_cert:
        _set_client_cert(c, pki, None)
    link = Link(c, s, strip_wkc=strip)
    link.run(lambda: up(c, s))
    assert up(c, s)
    return c, s, link


def _set_client_cert(c, pki, cert) -> None:  # noqa: F811
    c.cfg.tls = TlsSettings(pki["ca"], *(cert or (None, None)), False, remote_cert_tls="server")
    c.tls_context = build_context(c.cfg.tls)


def test_a_renegotiation_without_the_certificate_ends_the_session(pki):  # noqa: F811
    c, s, link = _optional_pair(pki, with_cert=True)
    assert s.peer_common_name == "alice"
    _set_client_cert(c, pki, None)
    _renegotiate(link, c, s)
    closed = _closed(s)
    assert s.closed and closed, "a renegotiation that proved no certificate went on as alice's session"
    assert "CN attempted to change" in closed[0].reason, closed[0].reason
    assert s.peer_common_name == "alice"


def test_a_renegotiation_with_the_same_certificate_goes_on(pki):  # noqa: F811
    c, s, link = _optional_pair(pki, with_cert=True)
    _renegotiate(link, c, s)
    assert not s.closed and s.send_key.key_id == 1 and s.peer_common_name == "alice"


def test_a_session_begun_without_a_certificate_does_not_become_a_certificates(pki):  # noqa: F811
    c, s, link = _optional_pair(pki, with_cert=False)
    assert s.peer_common_name is None
    _set_client_cert(c, pki, pki["client"])
    _renegotiate(link, c, s)
    assert s.closed and _closed(s), "a cert-less session took alice's identity mid-session"
    assert s.peer_common_name is None
