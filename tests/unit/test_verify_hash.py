"""verify-hash: the certificate that signed the peer's (depth 1 of the verified chain) must have
one of the fingerprints, SHA1 by default, as OpenVPN 2.6 checks it (ssl_verify.c verify_cert at
verify_hash_depth 1). Beside Debian's OpenVPN 2.6: tests/interop/test_verify_hash_vs_openvpn.py."""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from appliance.openvpn.errors import RemoteProtocolError
from appliance.openvpn.tls import TlsSettings, _check_peer

CA = issue("ca", None, None)
OTHER_CA = issue("other-ca", None, None)
LEAF, _ = issue("server", CA, ExtendedKeyUsageOID.SERVER_AUTH)


def _settings(fps: list[bytes], algo: str) -> TlsSettings:
    return TlsSettings(None, None, None, False, verify_hash=fps, verify_hash_algo=algo)


@pytest.mark.parametrize("algo, h", [("SHA1", hashes.SHA1()), ("SHA256", hashes.SHA256())])  # noqa: S303
def test_the_issuers_fingerprint_lets_the_peer_in_and_another_does_not(algo, h):
    ok = _settings([OTHER_CA[0].fingerprint(h), CA[0].fingerprint(h)], algo)
    assert _check_peer(ok, LEAF, [CA[0]]) == "server"
    bad = _settings([OTHER_CA[0].fingerprint(h)], algo)
    with pytest.raises(RemoteProtocolError, match="certificate hash verification failed"):
        _check_peer(bad, LEAF, [CA[0]])


def test_the_leafs_own_fingerprint_is_not_the_issuers():
    """verify-hash pins depth 1, not the peer's certificate (that is peer-fingerprint)."""
    s = _settings([LEAF.fingerprint(hashes.SHA1())], "SHA1")  # noqa: S303
    with pytest.raises(RemoteProtocolError):
        _check_peer(s, LEAF, [CA[0]])


def test_an_intermediate_is_depth_one():
    sub = issue("sub-ca", CA, ExtendedKeyUsageOID.SERVER_AUTH)
    # issue() makes a leaf when given an issuer; as a CA stand-in its certificate only has to be
    # in the chain's place: the check reads the chain OpenSSL verified, depth 1 first.
    leaf, _ = issue("server", sub, ExtendedKeyUsageOID.SERVER_AUTH)
    s = _settings([sub[0].fingerprint(hashes.SHA256())], "SHA256")
    assert _check_peer(s, leaf, [sub[0], CA[0]]) == "server"
    s = _settings([CA[0].fingerprint(hashes.SHA256())], "SHA256")
    with pytest.raises(RemoteProtocolError):
        _check_peer(s, leaf, [sub[0], CA[0]])


def _renewed(ca):
    """The CA certificate issued again (same name, same key; new serial, so a new fingerprint)."""
    import datetime

    from cryptography import x509
    cert, key = ca
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=60)))
    for ext in cert.extensions:
        b = b.add_extension(ext.value, ext.critical)
    return b.sign(key, hashes.SHA256())


def test_a_reload_compares_depth_one_of_the_chain_the_new_ca_file_verifies():
    """A reload checks a connected peer as OpenVPN checks it when it comes back after SIGHUP: the
    chain verified with the new `ca`, whose depth 1 is what verify-hash pins. It compared the chain
    of the handshake (the old `ca`'s): a client was dropped although the renewed CA certificate
    it now verifies against is the one pinned, and kept although the pinned one is gone."""
    from cryptography.hazmat.primitives import serialization

    from appliance.openvpn.tls import peer_rechecker
    ca = issue("reload-ca", None, None)
    renewed = _renewed(ca)
    leaf, _ = issue("alice", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    pem = renewed.public_bytes(serialization.Encoding.PEM)

    def settings(pinned):
        return TlsSettings(pem, None, None, True, verify_hash=[pinned.fingerprint(hashes.SHA256())],
                           verify_hash_algo="SHA256")
    # The handshake's chain holds the old CA certificate; the new file only the renewed one.
    assert peer_rechecker(settings(renewed))(leaf, lambda: [ca[0]])
    with pytest.raises(RemoteProtocolError, match="certificate hash verification failed"):
        peer_rechecker(settings(ca[0]))(leaf, lambda: [ca[0]])


@pytest.mark.parametrize("directive", ["verify-hash", "peer-fingerprint"])
@pytest.mark.parametrize("comment", ["# ", "; ", "  # ", "#\t"])
def test_a_fingerprint_commented_out_in_a_block_is_not_pinned(directive, comment):
    """As OpenVPN 2.6 (parse_hash_fingerprint_multiline): a line whose first non-blank character
    is `#` or `;` is a comment. The block was split into words, and only words starting with `#`
    skipped: `# AA:BB:...`, an admin taking an old CA (or peer) out, still let it in."""
    from appliance.openvpn.config import parse_config
    base = "client\ndev tun\nremote 198.18.0.1\nca ca.crt\ncert c.crt\nkey c.key\n"
    old, new = bytes([0xAA] * 32), bytes([0xBB] * 32)
    o = parse_config(base + f"<{directive}>\n{comment}{old.hex(':')}\n{new.hex(':')}\n</{directive}>\n",
                     "/p/c.ovpn", read_file=lambda p: b"")
    assert (o.verify_hash if directive == "verify-hash" else o.peer_fingerprint) == [new]


@pytest.mark.parametrize("directive", ["verify-hash", "peer-fingerprint"])
@pytest.mark.parametrize("body", ['{d} ""\n', "<{d}>\n# the CA of 2019, retired\n</{d}>\n", "<{d}>\n</{d}>\n"])
def test_a_line_or_block_without_a_fingerprint_is_refused(directive, body):
    """A block whose fingerprints were all commented out (or an empty argument) pinned nothing,
    silently: every certificate the CA signed got in where the admin meant one. Refused at its
    line (OpenVPN refuses the empty argument; its empty block pins nothing, as here before)."""
    from appliance.openvpn.config import parse_config
    from appliance.openvpn.errors import ConfigError
    base = "client\ndev tun\nremote 198.18.0.1\nca ca.crt\ncert c.crt\nkey c.key\n"
    with pytest.raises(ConfigError, match="no fingerprint"):
        parse_config(base + body.format(d=directive), "/p/c.ovpn", read_file=lambda p: b"")
