"""tls-cert-profile: OpenSSL's security level as OpenVPN 2.6 maps it (ssl_openssl.c
tls_ctx_set_cert_profile), enforced on our own certificate at start and on the peer's in the
handshake; without the directive we keep OpenSSL 4's level 2 where OpenVPN sets 1."""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from appliance.openvpn.config import ConfigError, parse_config
from appliance.openvpn.errors import RemoteProtocolError
from appliance.openvpn.settings import check_key_material, tls_settings
from appliance.openvpn.tls import TlsEndpoint, TlsSettings, build_context

from .test_tls_eku_ku import _key, _pem


@pytest.fixture(scope="module")
def pki():
    """A P-256 CA and server; clients with RSA keys of 1024 (80-bit security: level 1), 2048
    (112: level 2) and 3072 bits (128: level 3)."""
    ca = issue("CA", None, None)
    server = issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    clients = {bits: issue(f"rsa{bits}", ca, ExtendedKeyUsageOID.CLIENT_AUTH,
                           key=rsa.generate_private_key(65537, bits)) for bits in (1024, 2048, 3072)}
    return ca, server, clients


def _handshake(pki, bits: int, server_profile: str | None, client_profile: str | None = "insecure") -> None:
    """Our server (with `server_profile`) and our client holding the RSA-`bits` certificate, in
    memory; raises RemoteProtocolError when either end refuses."""
    ca, srv, clients = pki
    cli = clients[bits]
    s_set = TlsSettings(_pem(ca[0]), _pem(srv[0]), _key(srv[1]), True, cert_profile=server_profile)
    _run(s_set, TlsSettings(_pem(ca[0]), _pem(cli[0]), _key(cli[1]), False, cert_profile=client_profile))


def _run(s_set: TlsSettings, c_set: TlsSettings, made: list | None = None) -> TlsEndpoint:
    """A handshake in memory between these settings; the server's endpoint once both are done
    (also appended to `made` first, for a test of what a refusal leaves on it)."""
    s, c = TlsEndpoint(build_context(s_set), s_set), TlsEndpoint(build_context(c_set), c_set)
    if made is not None:
        made.append(s)
    out, _ = c.pump()
    for _ in range(10):
        s.feed(out)
        back, _ = s.pump()
        c.feed(back)
        out, _ = c.pump()
        if c.handshake_done and s.handshake_done and not out:
            return s
    raise AssertionError("handshake did not finish")


@pytest.mark.parametrize("bits, profile, accepted", [
    (1024, "insecure", True), (1024, "legacy", True), (1024, "preferred", False), (1024, None, False),
    (2048, "preferred", True), (2048, None, True), (2048, "suiteb", False), (3072, "suiteb", True),
])
def test_the_server_refuses_client_certificates_below_its_profile(pki, bits, profile, accepted):
    if accepted:
        _handshake(pki, bits, profile)
    else:
        with pytest.raises(RemoteProtocolError, match="certificate verify failed.*key too weak"):
            _handshake(pki, bits, profile)


def test_a_security_level_in_tls_cipher_wins_over_the_profile(pki):
    """OpenVPN sets the profile's level, then tls-cipher: its @SECLEVEL is the one in force."""
    ca, srv, clients = pki
    cli = clients[1024]
    weak = TlsSettings(_pem(ca[0]), _pem(cli[0]), _key(cli[1]), False, cert_profile="suiteb",
                       tls_cipher="DEFAULT:@SECLEVEL=1")
    build_context(weak)                                  # level 1: the 1024-bit key is ours to use
    with pytest.raises(ConfigError):
        build_context(TlsSettings(_pem(ca[0]), _pem(cli[0]), _key(cli[1]), False, cert_profile="suiteb"))


def _profile(pki, bits: int) -> str:
    ca, _, clients = pki
    cli = clients[bits]
    return (f"client\nremote 198.18.0.1\ndev tun\n<ca>\n{_pem(ca[0]).decode()}</ca>\n"
            f"<cert>\n{_pem(cli[0]).decode()}</cert>\n<key>\n{_key(cli[1]).decode()}</key>\n")


def test_our_own_weak_certificate_fails_at_start_naming_the_profile_line(pki):
    text = _profile(pki, 2048) + "tls-cert-profile suiteb\n"
    o = parse_config(text, "/etc/x.ovpn")
    assert tls_settings(o, False).cert_profile == "suiteb"
    with pytest.raises(ConfigError) as e:
        check_key_material(o)
    assert str(e.value).startswith(f"/etc/x.ovpn:{text.count(chr(10))}: tls-cert-profile: the certificate "
                                   "or its key is too weak"), str(e.value)
    assert "tls-cert-profile suiteb is level 3" in str(e.value)


def test_without_a_profile_a_1024_bit_key_is_refused_and_the_error_says_how_openvpn_differs(pki):
    o = parse_config(_profile(pki, 1024), "/etc/x.ovpn")
    with pytest.raises(ConfigError) as e:
        check_key_material(o)
    assert "too weak" in str(e.value) and "tls-cert-profile legacy" in str(e.value), str(e.value)
    check_key_material(parse_config(_profile(pki, 1024) + "tls-cert-profile legacy\n", "/etc/x.ovpn"))


def test_an_unknown_profile_is_an_error_at_its_line_and_insecure_is_noted(pki):
    with pytest.raises(ConfigError) as e:
        parse_config(_profile(pki, 2048) + "tls-cert-profile strict\n", "/etc/x.ovpn")
    assert "tls-cert-profile: unknown profile 'strict'" in str(e.value)
    o = parse_config(_profile(pki, 2048) + "tls-cert-profile insecure\n", "/etc/x.ovpn")
    assert any("level 0" in n for n in o.notes)


@pytest.mark.parametrize("bits, profile, accepted", [
    (1024, "preferred", False), (1024, None, False), (1024, "legacy", True), (2048, "suiteb", False),
    (3072, "suiteb", True), (2048, "preferred", True),
])
def test_a_pinned_peer_below_the_profile_is_refused_without_a_ca_too(pki, bits, profile, accepted):
    """peer-fingerprint alone (no ca): the pin names the certificate, but the level still bounds
    its key -- a profile that says 2048 bits must not take a pinned 1024-bit key, whose owner's
    identity a factoring attacker can take. (OpenVPN 2.6's verify callback ignores every
    OpenSSL error with peer-fingerprint alone, the security level's included; we keep those.)"""
    from cryptography.hazmat.primitives import hashes
    ca, srv, clients = pki
    cli = clients[bits]
    s_set = TlsSettings(None, _pem(srv[0]), _key(srv[1]), True, cert_profile=profile,
                        peer_fingerprints=[cli[0].fingerprint(hashes.SHA256())])
    c_set = TlsSettings(_pem(ca[0]), _pem(cli[0]), _key(cli[1]), False, cert_profile="insecure")
    if accepted:
        assert _run(s_set, c_set).peer_cert == cli[0]
    else:
        made: list = []
        with pytest.raises(RemoteProtocolError, match="key too weak|too small"):
            _run(s_set, c_set, made)
        assert made[0].peer_cert is None
