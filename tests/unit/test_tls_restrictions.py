"""tls-cipher, tls-ciphersuites, tls-groups and ecdh-curve restrict the control channel's TLS:
parsed with file:line errors, and enforced on the context (in-memory handshakes between two
restricted contexts: disjoint lists fail, overlapping ones negotiate what was configured)."""
from __future__ import annotations

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from appliance.openvpn.config import ConfigError, parse_config
from appliance.openvpn.errors import RemoteProtocolError
from appliance.openvpn.settings import check_key_material, tls_settings
from appliance.openvpn.tls import (OPENVPN_TLS_CIPHER_DEFAULT, TlsEndpoint, TlsSettings, build_context,
                                   negotiated_group, openssl_cipher_list)

from .test_tls_eku_ku import _key, _pem


@pytest.fixture(scope="module")
def pki():
    ca = issue("CA", None, None)
    return ca, issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH), issue("client", ca, ExtendedKeyUsageOID.CLIENT_AUTH)


def _handshake(pki, server: dict | None = None, client: dict | None = None) -> tuple[TlsEndpoint, int]:
    """Client/server handshake in memory with the given TlsSettings fields; returns the client
    endpoint and its ClientHello size. Raises RemoteProtocolError when TLS finds nothing in common."""
    ca, srv, cli = pki
    s_set = TlsSettings(_pem(ca[0]), _pem(srv[0]), _key(srv[1]), True, **(server or {}))
    c_set = TlsSettings(_pem(ca[0]), _pem(cli[0]), _key(cli[1]), False, **(client or {}))
    s, c = TlsEndpoint(build_context(s_set), s_set), TlsEndpoint(build_context(c_set), c_set)
    out, _ = c.pump()
    hello = len(out)
    for _ in range(10):
        s.feed(out)
        back, _ = s.pump()
        c.feed(back)
        out, _ = c.pump()
        if c.handshake_done and s.handshake_done and not out:
            return c, hello
    raise AssertionError("handshake did not finish")


# ------------------------------------------------------------------ enforced on the context
@pytest.mark.parametrize("suite", ["TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"])
def test_tls13_ciphersuite_is_the_configured_one(pki, suite):
    c, _ = _handshake(pki, client={"tls_ciphersuites": suite})
    assert (c.version, c.cipher) == ("TLSv1.3", suite)


def test_openvpn_dashed_tls13_name_works(pki):
    c, _ = _handshake(pki, server={"tls_ciphersuites": "TLS-CHACHA20-POLY1305-SHA256"})
    assert c.cipher == "TLS_CHACHA20_POLY1305_SHA256"


def test_disjoint_tls13_ciphersuites_fail(pki):
    with pytest.raises(RemoteProtocolError, match="no shared cipher"):
        _handshake(pki, server={"tls_ciphersuites": "TLS_AES_128_GCM_SHA256"},
                   client={"tls_ciphersuites": "TLS_CHACHA20_POLY1305_SHA256"})


def test_tls12_cipher_by_iana_name_is_negotiated(pki):
    c, _ = _handshake(pki, client={"tls_version_max": "1.2",
                                   "tls_cipher": "TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256"})
    assert (c.version, c.cipher) == ("TLSv1.2", "ECDHE-ECDSA-CHACHA20-POLY1305")


def test_tls12_excluded_iana_name_is_excluded(pki):
    c, _ = _handshake(pki, client={"tls_version_max": "1.2"})
    first = c.cipher
    c, _ = _handshake(pki, client={"tls_version_max": "1.2", "tls_cipher": "DEFAULT:!TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384"})
    assert first == "ECDHE-ECDSA-AES256-GCM-SHA384" and c.cipher != first


def test_disjoint_tls12_ciphers_fail(pki):
    with pytest.raises(RemoteProtocolError, match="no shared cipher"):
        _handshake(pki, server={"tls_cipher": "ECDHE-ECDSA-CHACHA20-POLY1305"},
                   client={"tls_version_max": "1.2", "tls_cipher": "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256"})


def test_groups_restrict_the_key_exchange_and_shrink_the_client_hello(pki):
    c, default_hello = _handshake(pki)
    assert negotiated_group(c.conn) == "X25519MLKEM768"          # OpenSSL 4's default between our ends
    c, x25519_hello = _handshake(pki, client={"tls_groups": "X25519"})
    assert negotiated_group(c.conn).lower() == "x25519"
    assert x25519_hello < default_hello / 3                       # no ~1.2 KB ML-KEM key share
    c, _ = _handshake(pki, server={"tls_groups": "secp384r1"}, client={"tls_groups": "X25519:secp384r1"})
    assert negotiated_group(c.conn) == "secp384r1"                # via HelloRetryRequest


def test_disjoint_groups_fail(pki):
    with pytest.raises(RemoteProtocolError, match="key share|group"):
        _handshake(pki, server={"tls_groups": "secp384r1"}, client={"tls_groups": "X25519"})


def test_openvpn_default_tls12_list_drops_rsa_key_transport():
    ctx = build_context(TlsSettings(None, None, None, False, peer_fingerprints=[b"x" * 32]))
    from OpenSSL import SSL
    names = SSL.Connection(ctx, None).get_cipher_list()
    assert "ECDHE-ECDSA-AES256-GCM-SHA384" in names
    assert not [n for n in names if n.startswith(("AES", "PSK", "SRP", "DHE-DSS"))], names
    assert OPENVPN_TLS_CIPHER_DEFAULT.endswith("!kRSA")


def test_iana_respelling_keeps_operators_and_openssl_names():
    assert openssl_cipher_list("!TLS-RSA-WITH-AES-128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:HIGH") == \
        "!TLS_RSA_WITH_AES_128_GCM_SHA256:ECDHE-RSA-AES128-GCM-SHA256:HIGH"


# ------------------------------------------------------------------ the config: parsed, checked at its line
@pytest.fixture(scope="module")
def profile(pki):
    ca, _, cli = pki
    return (f"client\nremote 198.18.0.1\ndev tun\nremote-cert-tls server\n<ca>\n{_pem(ca[0]).decode()}</ca>\n"
            f"<cert>\n{_pem(cli[0]).decode()}</cert>\n<key>\n{_key(cli[1]).decode()}</key>\n")


def _load(profile: str, extra: str):
    o = parse_config(profile + extra, "/etc/x.ovpn")
    check_key_material(o)
    return o


def test_directives_reach_the_tls_settings(profile):
    o = _load(profile, "tls-cipher TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384\ntls-ciphersuites TLS_AES_256_GCM_SHA384\n"
                       "tls-groups X25519:secp256r1\n")
    s = tls_settings(o, False)
    assert (s.tls_cipher, s.tls_ciphersuites, s.tls_groups) == (
        "TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384", "TLS_AES_256_GCM_SHA384", "X25519:secp256r1")
    assert not [n for n in o.notes if "tls-" in n]                # applied, not "no effect"


def test_ecdh_curve_is_the_only_group(profile):
    o = _load(profile, "tls-groups X25519:secp256r1\necdh-curve prime256v1\n")
    assert tls_settings(o, False).tls_groups == "prime256v1"
    assert any("ecdh-curve: enforced" in n for n in o.notes)


@pytest.mark.parametrize("extra, where", [
    ("tls-cipher NOT-A-CIPHER\n", "tls-cipher: 'NOT-A-CIPHER' matches no TLS 1.2 cipher"),
    ("tls-ciphersuites TLS_AES_999_GCM\n", "tls-ciphersuites: 'TLS_AES_999_GCM' is no TLS 1.3"),
    ("tls-groups X25519:nosuchgroup\n", "tls-groups: 'nosuchgroup' is no group this OpenSSL knows"),
    ("ecdh-curve X25519:secp256r1\n", "ecdh-curve: expects one curve"),
    ("tls-groups X25519\necdh-curve secp384r1\n", "ecdh-curve: secp384r1 is not one of the tls-groups"),
    ("ecdh-curve secp384r1\ntls-groups X25519\n", "tls-groups: does not include the ecdh-curve"),
    ("tls-groups brainpoolP256r1\n", "tls-groups: with the TLS versions, ciphers and groups configured, no handshake"),
    ("tls-groups 'X25519\x00bogus'\n", "tls-groups: a NUL byte in the line"),   # C would stop at NUL: the lexer refuses it
    ("ecdh-curve DEFAULT\n", "ecdh-curve: expects one curve name"),
])
def test_bad_lists_are_config_errors_at_their_line(profile, extra, where):
    line = profile.count("\n") + extra.count("\n")                # the last line of `extra`
    with pytest.raises(ConfigError) as e:
        _load(profile, extra)
    assert str(e.value).startswith(f"/etc/x.ovpn:{line}: {where}"), str(e.value)


def test_a_security_level_the_certificate_fails_is_blamed_on_tls_cipher_at_its_line(profile):
    """`tls-cipher ALL:@SECLEVEL=5` (256-bit security) refuses our P-256 certificate: OpenSSL's
    'ee key too small' read as 'certificate and key do not go together', without a line."""
    line = profile.count("\n") + 1
    with pytest.raises(ConfigError) as e:
        _load(profile, "tls-cipher ALL:@SECLEVEL=5\n")
    assert str(e.value).startswith(f"/etc/x.ovpn:{line}: tls-cipher: the certificate or its key is too weak"), \
        str(e.value)


# ------------------------------------------------------------------ each element checked: none skipped unseen
# Inside an otherwise valid list OpenSSL skips names it does not know; OpenVPN 2.6 passes them on.
@pytest.mark.parametrize("extra, where", [
    ("tls-cipher TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384:!ECDHE-RSA-AES128-GCM-SHA25\n",   # excluded nothing
     "tls-cipher: '!ECDHE-RSA-AES128-GCM-SHA25' matches no TLS 1.2 cipher this OpenSSL knows"),
    ("tls-cipher DEFAULT:!TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA38\n",                     # IANA spelling
     "tls-cipher: '!TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA38' matches no TLS 1.2 cipher"),
    ("tls-cipher HIGH,-ECDHE-RSA-AES128-GCM-SHA25\n",                                    # OpenSSL's ',' too
     "tls-cipher: '-ECDHE-RSA-AES128-GCM-SHA25' matches no TLS 1.2 cipher"),
    ("tls-cipher ECDHE+AESGXM:HIGH\n", "tls-cipher: 'ECDHE+AESGXM' matches no TLS 1.2 cipher"),
    ("tls-cipher HIGH:!EXPP\n", "tls-cipher: '!EXPP' matches no TLS 1.2 cipher"),
    ("tls-cipher HIGH:!DHE-RSA-AES256-SHX\n", "tls-cipher: '!DHE-RSA-AES256-SHX' matches no TLS 1.2 cipher"),
    ("tls-cipher HIGH:!DES-CBC3-SHAX+AES\n", "tls-cipher: '!DES-CBC3-SHAX+AES' matches no TLS 1.2 cipher"),
    ("tls-cipher HIGH:TLS_AES_256_GCM_SHA384\n",
     "tls-cipher: 'TLS_AES_256_GCM_SHA384' is a TLS 1.3 cipher suite: it belongs in tls-ciphersuites"),
    ("tls-cipher HIGH:@SECLEVL=2\n", "tls-cipher: '@SECLEVL=2' is not an OpenSSL command"),
    ("tls-ciphersuites TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA25\n",
     "tls-ciphersuites: 'TLS_CHACHA20_POLY1305_SHA25' is no TLS 1.3 cipher suite this OpenSSL knows"),
    ("tls-groups ?X2551:X25519\n", "tls-groups: '?X2551' is no group this OpenSSL knows"),
    ("tls-groups secp256r1/X2551:X25519\n", "tls-groups: 'X2551' is no group this OpenSSL knows"),
])
def test_an_element_openssl_would_skip_is_an_error_naming_it(profile, extra, where):
    line = profile.count("\n") + 1
    with pytest.raises(ConfigError) as e:
        _load(profile, extra)
    assert str(e.value).startswith(f"/etc/x.ovpn:{line}: {where}"), str(e.value)


@pytest.mark.parametrize("extra, attr", [
    (f"tls-cipher {OPENVPN_TLS_CIPHER_DEFAULT}\n", "tls_cipher"),    # !EXP, !kDH...: retired keywords excluded
    ("tls-cipher HIGH:!aNULL:!eNULL:kEECDH:+SHA1:@SECLEVEL=2:@STRENGTH\n", "tls_cipher"),
    ("tls-cipher DEFAULT:!TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384:ECDHE+AESGCM\n", "tls_cipher"),
    ("tls-ciphersuites TLS-AES-256-GCM-SHA384:TLS_CHACHA20_POLY1305_SHA256\n", "tls_ciphersuites"),
    ("tls-groups X25519:*secp256r1/prime256v1:ffdhe2048\n", "tls_groups"),
    # Legacy profiles: ciphers of an algorithm this OpenSSL lacks altogether (3DES, RC4, KRB5 here)
    # cannot be negotiated whether allowed or excluded; OpenVPN 2.6 takes the list.
    ("tls-cipher TLS-DHE-RSA-WITH-AES-256-CBC-SHA:TLS-DHE-RSA-WITH-3DES-EDE-CBC-SHA:TLS-RSA-WITH-RC4-128-SHA\n",
     "tls_cipher"),
    ("tls-cipher HIGH:!aNULL:!MD5:!EDH-DSS-DES-CBC3-SHA:!EDH-RSA-DES-CBC3-SHA:!KRB5-DES-CBC3-SHA:!DES-CBC-SHA\n",
     "tls_cipher"),
])
def test_lists_of_known_names_and_keywords_are_accepted(profile, extra, attr):
    o = _load(profile, extra)
    assert getattr(tls_settings(o, False), attr) == extra.split(" ", 1)[1].strip()


def test_check_command_shows_the_skipped_element(profile, tmp_path, capsys):
    from appliance.cli import main
    conf = tmp_path / "x.ovpn"
    conf.write_text(profile + "tls-cipher TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384:!ECDHE-RSA-AES128-GCM-SHA25\n")
    assert main(["check", str(conf)]) == 2
    assert capsys.readouterr().err.startswith(
        f"{conf}:{profile.count(chr(10)) + 1}: tls-cipher: '!ECDHE-RSA-AES128-GCM-SHA25' matches no TLS 1.2 cipher")


# ------------------------------------------------------------------ the verdict per name is kept, the check is not weakened
@pytest.mark.parametrize("directive, good, bad, where", [
    ("tls-groups", "X25519:secp256r1:secp384r1", "X25519:nosuchgroup7:secp256r1",
     "'nosuchgroup7' is no group this OpenSSL knows"),
    ("tls-cipher", "HIGH:!aNULL:!MD5", "HIGH:!aNULL:!ECDHE-RSA-AES128-GCM-SHA25",
     "'!ECDHE-RSA-AES128-GCM-SHA25' matches no TLS 1.2 cipher"),
    ("tls-ciphersuites", "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256",
     "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA25", "'TLS_AES_128_GCM_SHA25' is no TLS 1.3 cipher suite"),
])
def test_an_unknown_name_seen_before_is_still_an_error_at_each_of_its_lines(profile, directive, good, bad, where):
    """A name's verdict is kept once worked out (tls._VERDICTS_KEPT): the second time an unknown
    name comes, from the kept verdict, it is an error naming it at its own line all the same, and
    known names seen before stay accepted."""
    first = profile.count("\n") + 1
    extra = "".join(f"{directive} {v}\n" for v in (good, bad, good, bad, good))
    with pytest.raises(ConfigError) as e:
        _load(profile, extra)
    errors = str(e.value).splitlines()
    assert [line.split(": ", 2)[:2] for line in errors] == [[f"/etc/x.ovpn:{first + 1}", directive],
                                                            [f"/etc/x.ovpn:{first + 3}", directive]], errors
    assert all(line.split(": ", 2)[2].startswith(where) for line in errors), errors


def test_many_lines_of_the_same_names_take_a_scratch_context_per_line_not_per_element(profile, monkeypatch):
    """The cost of checking each element alone (an OpenSSL context, ~150 us) is paid once per
    distinct name, not once per element of every line: a config of 1000 lines of 36 names took
    seconds to parse. Counted in contexts made, not timed."""
    from OpenSSL import SSL
    made = [0]

    class Counting(SSL.Context):
        def __init__(self, method: int) -> None:
            made[0] += 1
            super().__init__(method)
    names = ["X25519", "secp256r1", "secp384r1", "secp521r1", "X448", "ffdhe2048", "ffdhe3072", "ffdhe4096"]
    lines = [":".join(names[i % len(names):] + names[:i % len(names)]) for i in range(40)]   # 40 different lists
    monkeypatch.setattr(SSL, "Context", Counting)
    _load(profile, "".join(f"tls-groups {v}\n" for v in lines))
    assert made[0] <= len(lines) + len(names) + 10, made[0]   # a context per element per line: 404
