"""review48e: forge48's containment of TLS failures (Session._contain_tls_failure) must never
take a refusal of the peer's IDENTITY at a renegotiation for a failure on the bytes. Each check a
handshake runs on the peer's certificate -- crl-verify, verify-hash, peer-fingerprint,
remote-cert-tls, verify-x509-name, tls-verify's refusal, OpenSSL's own verification -- refuses
the renegotiation's certificate here (the settings change between the first handshake and the
renegotiation, as a reload's do), and the refusing end's session must END with that reason: not
"renegotiation failed", not its old key kept for tran-window.

(Checked by reverting: with TlsEndpoint.identity_refused never set, every case but tls-verify --
its VerifyRefused is excluded by type -- fails: the session goes on.)
"""
from __future__ import annotations

import dataclasses

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.bench import _cert, _pems
from appliance.openvpn import events as ev
from appliance.openvpn.tls import build_context
from tests.engine.test_memory_link import connected
from tests.engine.test_session_security import _closed, _renegotiate, pki  # noqa: F401 - the fixture

CONTAINED = ("renegotiation failed", "TLS failed on an established key (its data channel kept)")


class _RevokesAll:
    """A crl-verify checker under which every certificate is revoked (crl.CrlChecker's interface)."""

    def revoked(self, cert, chain, refresh: bool = True) -> str:  # noqa: ANN001, ARG002
        return f"certificate revoked (serial {cert.serial_number})"


# (which end refuses, the change to its TlsSettings, what the reason says)
CASES = {
    "crl-verify (server)": ("server", {"crl": _RevokesAll()}, "certificate revoked"),
    "crl-verify (client)": ("client", {"crl": _RevokesAll()}, "certificate revoked"),
    "verify-hash": ("server", {"verify_hash": [bytes(20)]}, "certificate hash verification failed"),
    "peer-fingerprint": ("server", {"peer_fingerprints": [bytes(32)]}, "does not match peer-fingerprint"),
    "remote-cert-tls (server)": ("server", {"remote_cert_tls": "server"}, "remote-cert-tls server"),
    "remote-cert-tls (client)": ("client", {"remote_cert_tls": "client"}, "remote-cert-tls client"),
    "verify-x509-name": ("client", {"verify_x509_name": ("not-the-server", "name")}, "verify-x509-name"),
    "another CA": ("server", {"ca": None}, "verify failed"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_refused_identity_at_renegotiation_ends_the_session(pki, case):
    who, change, reason = CASES[case]
    if case == "another CA":
        change = {"ca": _pems(_cert("someone else's CA"))[0]}
    c, s, link = connected(pki)
    refusing = s if who == "server" else c
    refusing.cfg.tls = dataclasses.replace(refusing.cfg.tls, **change)
    refusing.tls_context = build_context(refusing.cfg.tls)
    _renegotiate(link, c, s)
    closed = _closed(refusing)
    assert refusing.closed and closed, (case, refusing.stats)
    assert reason.lower() in closed[0].reason.lower(), closed[0].reason
    assert not any(refusing.stats.get(k) for k in CONTAINED), refusing.stats


def test_tls_verify_refusing_a_renegotiation_ends_the_session(pki):
    """tls-verify's "no" on the renegotiation's chain (VerifyRefused): the session ends."""
    c, s, link = connected(pki)
    s.cfg.tls = dataclasses.replace(s.cfg.tls, hold_for_verdict=True)
    s.tls_context = build_context(s.cfg.tls)
    c.renegotiate(link.now)
    asked: list[ev.TlsVerifyRequested] = []

    def held() -> bool:
        asked.extend(e for e in s.events if isinstance(e, ev.TlsVerifyRequested) and e not in asked)
        return bool(asked) or s.closed
    link.run(held, max_time=30)
    assert asked and not s.closed, s.stats
    s.tls_verify_result(asked[0].key_id, False, link.now, check=asked[0].check)
    link.run(lambda: s.closed, max_time=5)
    closed = _closed(s)
    assert s.closed and closed and "tls-verify refused" in closed[0].reason, closed
    assert not any(s.stats.get(k) for k in CONTAINED), s.stats
