"""The certificate strings OpenVPN 2.6 compares and gives scripts, checked against its source
(ssl_verify.c verify_cert / verify_cert_set_env / verify_peer_cert, ssl_verify_openssl.c
x509_setenv, buffer.c char_class CC_PRINT):

- `verify-x509-name S subject` compares S with OpenVPN's subject string only (strcmp); the
  RFC 4514 form (`CN=srv,O=x`, reversed, no blanks) passed here as well.
- Names are remapped with CC_PRINT on their UTF-8 bytes: bytes below 0x20 and 0x7f become `_`;
  U+0080-U+009F (bytes C2 80..C2 9F) stay, so the same name picks the same ccd file and passes
  the same verify-x509-name as there. They were made `_` here.
- X509_<depth>_* values are C strings there: a NUL ends the value.
- Every certificate of the verified chain gets tls_serial_hex_N, tls_serial_N,
  tls_digest_sha256_N, tls_digest_N, tls_id_N and X509_N_* (N = its depth); depth 0 had only
  some of them here, and the CA's depth 1 none.
"""
from __future__ import annotations

import hashlib
import io
import logging

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance import logsetup
from appliance.certs import issue, subject
from appliance.openvpn.errors import RemoteProtocolError
from appliance.openvpn.keymethod import remap_name
from appliance.openvpn.tls import TlsSettings, _check_peer, cert_env, common_name, openvpn_subject, subject_env

CA = issue("Strings CA", None, None, subject("/O=Org/CN=Strings CA"))


def _cert(spec: str) -> x509.Certificate:
    return issue("unused", CA, ExtendedKeyUsageOID.SERVER_AUTH, subject(spec))[0]


def _check(cert: x509.Certificate, name: str, kind: str) -> None:
    _check_peer(TlsSettings(b"", b"", b"", False, verify_x509_name=(name, kind)), cert)


def test_verify_x509_name_subject_is_openvpns_form_only():
    cert = _cert("/C=NL/O=x/CN=srv")
    assert cert.subject.rfc4514_string() == "CN=srv,O=x,C=NL"
    _check(cert, "C=NL, O=x, CN=srv", "subject")
    with pytest.raises(RemoteProtocolError, match="does not match"):
        _check(cert, "CN=srv,O=x,C=NL", "subject")            # OpenVPN: VERIFY X509NAME ERROR


def test_remap_keeps_c1_characters_as_openvpn():
    assert remap_name("a\u0085b\u009bc\u0080") == "a\u0085b\u009bc\u0080"
    assert remap_name("a\tb\nc\x7fd\x1fe\u00e9") == "a_b_c_d_e\u00e9"
    cert = _cert("/O=x/CN=srv\u0085x")
    assert common_name(cert) == "srv\u0085x"
    _check(cert, "srv\u0085x", "name")
    with pytest.raises(RemoteProtocolError):
        _check(cert, "srv_x", "name")


def test_x509_values_end_at_a_nul_as_c_strings_do():
    cert = _cert("/O=a\x00b\nc/CN=srv")
    assert subject_env(cert)["X509_0_O"] == "a"
    assert openvpn_subject(cert) == "O=a\\00b\\0Ac, CN=srv"   # the subject string escapes instead


def test_repeated_fields_are_numbered_on_in_order_each_field_apart():
    """OpenVPN's numbering (X509_0_OU, X509_0_OU_1, ...), counted per field: a certificate of
    thousands of repeated attributes is numbered in one pass (a search for the next free name
    per attribute took seconds of the loop for 7,000)."""
    env = subject_env(_cert("/OU=a/O=x/OU=b/CN=c1/OU=c/CN=c2" + "/OU=n" * 2000))
    assert [k for k in env][:6] == ["X509_0_OU", "X509_0_O", "X509_0_OU_1", "X509_0_CN", "X509_0_OU_2", "X509_0_CN_1"]
    assert (env["X509_0_OU"], env["X509_0_OU_1"], env["X509_0_OU_2"], env["X509_0_CN_1"]) == ("a", "b", "c", "c2")
    assert env["X509_0_OU_2002"] == "n" and "X509_0_OU_2003" not in env and len(env) == 2006


def test_every_depth_gets_openvpns_variables_in_its_order():
    leaf = _cert("/O=x/CN=srv")
    e0, e1 = cert_env(leaf, 0), cert_env(CA[0], 1)
    der = leaf.public_bytes(serialization.Encoding.DER)
    assert list(e0) == ["tls_serial_hex_0", "tls_serial_0", "tls_digest_sha256_0", "tls_digest_0", "tls_id_0",
                        "X509_0_CN", "X509_0_O"]
    assert e0["tls_digest_0"] == hashlib.sha1(der).digest().hex(":")      # noqa: S324 - OpenVPN's variable
    assert e0["tls_digest_sha256_0"] == hashlib.sha256(der).digest().hex(":")
    assert e0["tls_serial_0"] == str(leaf.serial_number)
    assert int(e0["tls_serial_hex_0"].replace(":", ""), 16) == leaf.serial_number
    assert e0["tls_id_0"] == "O=x, CN=srv"
    assert e1["tls_id_1"] == "O=Org, CN=Strings CA" and e1["X509_1_CN"] == "Strings CA"
    assert e1["tls_serial_1"] == str(CA[0].serial_number)


def test_the_log_writes_c1_characters_escaped(restore_logging):
    """Names keep U+0080-U+009F (OpenVPN's), but a terminal showing the log must not act on them."""
    root = logging.getLogger()
    saved = root.handlers[:]
    try:
        root.handlers = []
        logsetup.setup_logging(logging.INFO)
        out = io.StringIO()
        root.handlers[0].setStream(out)
        logging.getLogger("vpn-appliance").warning("user %s", "a\u009b31mb\u00e9\x85")
        assert out.getvalue().endswith("WARNING user a\\x9b31mb\u00e9\\x85\n")
    finally:
        for h in root.handlers:
            if h not in saved:
                h.close()



@pytest.mark.parametrize("kind", ["subject", "name", "name-prefix"])
def test_an_empty_verify_x509_name_is_refused_at_its_line(kind):
    """OpenVPN 2.6 refuses it (the option needs a non-empty name); `"" name-prefix` matched
    every certificate here."""
    from appliance.openvpn.config import parse_config
    from appliance.openvpn.errors import ConfigError
    with pytest.raises(ConfigError, match="verify-x509-name: the name is empty") as e:
        parse_config(f'client\ndev tun\nremote 198.18.0.1\nca ca.crt\nverify-x509-name "" {kind}\n', "/p/c.ovpn",
                     lambda path: b"")
    assert e.value.line == 5


@pytest.mark.parametrize("asn1_type", ["T61String", "IA5String", "NumericString", "UTF8String", "BMPString"])
def test_names_are_read_as_openssl_reads_their_string_type(asn1_type):
    """OpenSSL reads a T61String's, IA5String's or NumericString's bytes one per character (Latin-1), cryptography
    as UTF-8: a T61String holding the UTF-8 bytes of `café` (`openssl req` without -utf8 writes
    such names) is `cafÃ©` to OpenVPN. Read as cryptography reads it, it was `café` here: the
    common name, ccd file, pool address and verify-x509-name match of the UTF8String `café` that
    another certificate of the CA holds. The reference is OpenSSL's own reading (pyOpenSSL's
    X509Name goes through ASN1_STRING_to_UTF8, as OpenVPN's extract_x509_field_ssl)."""
    import warnings

    from cryptography.x509.name import _ASN1Type
    from cryptography.x509.oid import NameOID
    from OpenSSL import crypto
    t = getattr(_ASN1Type, asn1_type)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bür", _type=t),
                      x509.NameAttribute(NameOID.COMMON_NAME, "café", _type=t)])
    cert = issue("unused", CA, ExtendedKeyUsageOID.CLIENT_AUTH, name)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                 # pyOpenSSL's X509Name is deprecated
        ossl = crypto.X509.from_cryptography(cert).get_subject()
        want_cn, want_o = ossl.CN, ossl.O
    assert (want_cn == "café") is (asn1_type in ("UTF8String", "BMPString"))
    assert common_name(cert) == want_cn
    assert subject_env(cert) == {"X509_0_O": want_o, "X509_0_CN": want_cn}
    assert openvpn_subject(cert) == f"O={want_o}, CN={want_cn}"
    _check(cert, want_cn, "name")
    if want_cn != "café":
        with pytest.raises(RemoteProtocolError, match="does not match"):
            _check(cert, "café", "name")
        with pytest.raises(RemoteProtocolError, match="does not match"):
            _check(cert, "O=Bür, CN=café", "subject")
