"""x509-username-field: the peer's name from other certificate fields, read as OpenVPN 2.6 reads
them (ssl_verify_openssl.c backend_x509_get_username, ssl_verify.c verify_cert): the last subject
attribute of that type, `ext:subjectAltName` the last e-mail address, `serialNumber` the serial as
0x<HEX>, several fields joined with `_`. The same certificates against Debian's OpenVPN 2.6:
tests/interop/test_x509_username_field_vs_openvpn.py."""
from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue, subject
from appliance.openvpn.config import parse_config
from appliance.openvpn.errors import ConfigError, RemoteProtocolError
from appliance.openvpn.tls import TlsSettings, _check_peer, peer_name

CA = issue("ca", None, None)
BASE = "client\ndev tun\nremote 198.18.0.1\nca ca.crt\ncert c.crt\nkey c.key\n"


def _cert(spec: str, emails: tuple[str, ...] = (), serial: int | None = None) -> x509.Certificate:
    cert, _key = issue("leaf", CA, ExtendedKeyUsageOID.CLIENT_AUTH, subject(spec), emails)
    if serial is None:
        return cert
    b = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
         .public_key(ec.generate_private_key(ec.SECP256R1()).public_key()).serial_number(serial)
         .not_valid_before(cert.not_valid_before_utc).not_valid_after(cert.not_valid_after_utc))
    return b.sign(CA[1], hashes.SHA256())


def _name(fields: tuple[str, ...], cert: x509.Certificate) -> str | None:
    return peer_name(TlsSettings(None, None, None, True, username_field=fields), cert)


def test_without_the_directive_the_last_cn_names_the_peer():
    assert _name((), _cert("/O=x/CN=alice/CN=admin")) == "admin"


def test_a_subject_field_gives_its_last_value():
    c = _cert("/O=x/OU=staff/OU=vpn-users/CN=alice/emailAddress=alice@example.org")
    assert _name(("emailAddress",), c) == "alice@example.org"
    assert _name(("OU",), c) == "vpn-users"
    # Long names and dotted OIDs name the same attribute (OpenSSL's OBJ_txt2obj).
    assert _name(("organizationalUnitName",), c) == _name(("2.5.4.11",), c) == "vpn-users"


def test_several_fields_are_joined_with_underscores():
    c = _cert("/O=acme/CN=alice")
    assert _name(("O", "CN"), c) == "acme_alice"


def test_subject_alt_name_gives_its_last_email_address():
    c = _cert("/CN=alice", emails=("first@example.org", "alice@example.org"))
    assert _name(("ext:subjectAltName",), c) == "alice@example.org"
    assert _name(("ext:subjectAltName",), _cert("/CN=alice")) is None     # no such extension


def test_serial_number_is_the_certificates_in_upper_case_hex():
    """Not the subject's serialNumber attribute: OpenVPN special-cases the long name."""
    assert _name(("serialNumber",), _cert("/CN=a", serial=0x1A2B3C)) == "0x1A2B3C"
    assert _name(("serialNumber",), _cert("/CN=a", serial=0xABC)) == "0x0ABC"      # whole bytes


def test_a_missing_or_overlong_field_refuses_the_certificate():
    s = TlsSettings(CA[0], None, None, True, username_field=("emailAddress",))
    with pytest.raises(RemoteProtocolError, match="could not extract emailAddress"):
        _check_peer(s, _cert("/CN=alice"))
    assert _name(("emailAddress",), _cert("/CN=a/emailAddress=" + "a" * 60 + "@x.org")) is None   # > 64 bytes
    assert _name(("CN",), _cert("/CN=a\x00b")) is None


def test_control_characters_become_underscores():
    assert _name(("OU", "CN"), _cert("/OU=a\nb/CN=c\td")) == "a_b_c_d"


def test_verify_x509_name_compares_with_the_username():
    """As OpenVPN: `verify-x509-name NAME name` compares with the session's common name, which
    x509-username-field made."""
    c = _cert("/CN=server1/emailAddress=vpn@example.org")
    s = TlsSettings(CA[0], None, None, False, verify_x509_name=("vpn@example.org", "name"),
                    username_field=("emailAddress",))
    assert _check_peer(s, c) == "vpn@example.org"
    s.verify_x509_name = ("server1", "name")
    with pytest.raises(RemoteProtocolError, match="verify-x509-name"):
        _check_peer(s, c)


def test_config_reads_fields_as_openvpn_does():
    o = parse_config(BASE + "x509-username-field emailAddress ou ext:subjectAltName\n", "/p/c.ovpn",
                     read_file=lambda p: b"")
    assert o.x509_username_field == ("emailAddress", "OU", "ext:subjectAltName")
    assert any("upper-cased 'ou' to 'OU'" in n for n in o.notes)
    # A second line replaces the fields at its places only (options.c).
    o = parse_config(BASE + "x509-username-field CN OU\nx509-username-field O\n", "/p/c.ovpn", read_file=lambda p: b"")
    assert o.x509_username_field == ("O", "OU")


@pytest.mark.parametrize("field, words", [
    ("emailaddress", "invalid X509 attribute name 'EMAILADDRESS'"),   # upper-cased first, as OpenVPN
    ("ext:keyUsage", "unsupported x509-username-field extension"),
    ("nosuchfield", "invalid X509 attribute name"),
])
def test_config_refuses_what_openvpn_cannot_read_at_the_line(field, words):
    with pytest.raises(ConfigError) as e:
        parse_config(BASE + f"x509-username-field {field}\n", "/p/c.ovpn", read_file=lambda p: b"")
    assert words in str(e.value) and ":7:" in str(e.value)


def test_a_field_that_is_no_string_refuses_the_certificate():
    """As OpenVPN 2.6 (extract_x509_field_ssl: ASN1_STRING_to_UTF8 fails on a BIT STRING): a
    subject attribute that holds no string names nobody. It was the Python text of its bytes
    (`b'\\x01\\x02'`), a name OpenVPN never gives, shared by every such value's look-alike."""
    from cryptography.x509.name import _ASN1Type
    from cryptography.x509.oid import NameOID
    n = x509.Name([x509.NameAttribute(NameOID.X500_UNIQUE_IDENTIFIER, b"\x01\x02", _type=_ASN1Type.BitString),
                   x509.NameAttribute(NameOID.COMMON_NAME, "alice")])
    cert, _key = issue("leaf", CA, ExtendedKeyUsageOID.CLIENT_AUTH, n)
    assert _name(("x500UniqueIdentifier",), cert) is None
    assert _name(("CN",), cert) == "alice"
