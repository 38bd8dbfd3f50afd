"""A certificate subject with several CNs (`/O=x/CN=alice/CN=admin`): OpenVPN 2.6 takes the LAST
CN as the peer's name (extract_x509_field_ssl) and checks verify-x509-name name/name-prefix
against that one value. A CA that lets users add a CN of their choosing must not let them pass
a check under one name and be known by another, nor pass a check OpenVPN would refuse."""
from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.certs import issue, subject
from appliance.openvpn.errors import RemoteProtocolError
from appliance.openvpn.tls import TlsSettings, _check_peer, common_name, openvpn_subject

CA = issue("Multi-CN CA", None, None)


def _cert(spec: str) -> x509.Certificate:
    return issue("unused", CA, ExtendedKeyUsageOID.SERVER_AUTH, subject(spec))[0]


def _check(cert: x509.Certificate, name: str, kind: str) -> None:
    _check_peer(TlsSettings(b"", b"", b"", False, verify_x509_name=(name, kind)), cert)


def test_the_last_cn_is_the_name():
    assert common_name(_cert("/O=x/CN=alice/CN=admin")) == "admin"
    assert common_name(_cert("/CN=admin/O=x/CN=alice")) == "alice"
    assert common_name(_cert("/O=x/CN=alice")) == "alice"


@pytest.mark.parametrize(("name", "kind", "ok"), [
    ("admin", "name", True),
    ("alice", "name", False),            # the first CN: OpenVPN refuses it
    ("adm", "name-prefix", True),
    ("ali", "name-prefix", False),
    ("O=x, CN=alice, CN=admin", "subject", True),   # the whole DN, every CN in order
    ("O=x, CN=admin", "subject", False),
])
def test_verify_x509_name_checks_the_last_cn(name, kind, ok):
    cert = _cert("/O=x/CN=alice/CN=admin")
    if ok:
        _check(cert, name, kind)
    else:
        with pytest.raises(RemoteProtocolError, match="does not match"):
            _check(cert, name, kind)


def test_a_control_character_counts_as_in_the_name_everyone_sees():
    """OpenVPN remaps the name (`_` for control characters) before verify-x509-name compares."""
    cert = _cert("/O=x/CN=srv\nx")
    _check(cert, "srv_x", "name")
    with pytest.raises(RemoteProtocolError):
        _check(cert, "srv\nx", "name")


def test_a_certificate_without_a_cn_is_refused():
    """OpenVPN: "VERIFY ERROR: could not extract CN from X509 subject string" for the peer's
    own certificate, with or without verify-x509-name."""
    cert = _cert("/O=x/OU=no name")
    assert common_name(cert) is None
    with pytest.raises(RemoteProtocolError, match="could not extract CN"):
        _check_peer(TlsSettings(b"", b"", b"", False), cert)


def _long_cn_cert(value: str) -> x509.Certificate:
    # Past X.509's upper bound: cryptography builds it only unvalidated, a CA need not refuse it.
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x"),
                      x509.NameAttribute(NameOID.COMMON_NAME, value, _validate=False)])
    return issue("unused", CA, ExtendedKeyUsageOID.SERVER_AUTH, name)[0]


@pytest.mark.filterwarnings("ignore:Attribute's length")     # cryptography's, on parsing such a name
def test_a_cn_longer_than_openvpns_64_bytes_is_refused():
    """OpenVPN's name buffer holds 64 bytes of UTF-8 (TLS_USERNAME_LEN); a longer last CN is
    no name and the certificate is refused, even when an earlier CN is short."""
    _check_peer(TlsSettings(b"", b"", b"", False), _long_cn_cert("a" * 64))
    for value in ("a" * 65, "ü" * 33):          # 33 characters, 66 bytes
        cert = _long_cn_cert(value)
        assert common_name(cert) is None
        with pytest.raises(RemoteProtocolError, match="could not extract CN"):
            _check_peer(TlsSettings(b"", b"", b"", False), cert)


@pytest.mark.parametrize(("spec", "printed"), [
    ("/O=x/CN=alice/CN=admin", "O=x, CN=alice, CN=admin"),
    ("/O=Org+CN=server", "O=Org + CN=server"),                       # one multi-valued RDN
    ("/CN=s/emailAddress=a@b", "CN=s, emailAddress=a@b"),            # OpenSSL's short name
    ("/CN=a\\b\x01c\x7fd", "CN=a\\\\b\\01c\\7Fd"),                   # backslash doubled, controls as \XX
])
def test_the_subject_string_is_openvpns(spec, printed):
    """As OpenVPN 2.6 prints a subject (X509_NAME_print_ex, XN_FLAG_SEP_CPLUS_SPC | XN_FLAG_FN_SN
    | UTF-8 | ESC_CTRL): what `verify-x509-name ... subject` compares and scripts see as tls_id_0."""
    assert openvpn_subject(_cert(spec)) == printed


def test_verify_x509_name_subject_tells_a_multi_valued_rdn_from_two_rdns():
    """`O=Org, CN=server` (two RDNs) is not the subject `O=Org + CN=server` (one RDN of two
    attributes): OpenVPN refuses that certificate, so must we."""
    _check(_cert("/O=Org/CN=server"), "O=Org, CN=server", "subject")
    with pytest.raises(RemoteProtocolError, match="does not match"):
        _check(_cert("/O=Org+CN=server"), "O=Org, CN=server", "subject")


def test_a_cn_with_a_nul_is_refused():
    """OpenVPN's name stops at a NUL (a C string): `admin\\0x` would be admin there, `admin_x`
    here; neither is a name the CA meant to give, so the certificate is refused."""
    cert = _cert("/O=x/CN=admin\x00x")
    assert common_name(cert) is None
    with pytest.raises(RemoteProtocolError, match="could not extract CN"):
        _check(cert, "admin", "name")
