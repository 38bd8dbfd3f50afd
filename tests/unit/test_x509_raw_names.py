"""Names cryptography will not read but OpenSSL, so OpenVPN 2.6, does (openvpn/dername.py): a
T61String CN holding Latin-1 bytes (`caf\\xe9`), an IA5String with a byte over 0x7F. OpenVPN
names such a client by OpenSSL's reading (`café`, its UTF-8 in the ccd file name and scripts);
ours refused the certificate as unreadable. The reference is OpenSSL's own reading (pyOpenSSL's
X509Name: ASN1_STRING_to_UTF8, as OpenVPN's extract_x509_field_ssl).
A UTF8String that is not UTF-8 stays refused: OpenSSL cannot convert it, OpenVPN refuses it. (A
PrintableString with `_` or `@` is not among them: cryptography refuses that whole certificate
when it loads it, not only its name.)"""
from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings, strategies as st
from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto

from appliance.certs import issue, subject
from appliance.openvpn import dername
from appliance.openvpn.crl import name_key
from appliance.openvpn.tls import TlsSettings, _check_peer, common_name, openvpn_subject, subject_env
from lab.pki import with_raw_bytes

CA = issue("Raw CA", None, None, subject("/O=Org/CN=Raw CA"))


def _raw_cert(placeholder: str, raw: bytes, asn1_type: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x"),
                      x509.NameAttribute(NameOID.COMMON_NAME, placeholder, _type=getattr(_ASN1Type, asn1_type))])
    cert = issue("unused", CA, ExtendedKeyUsageOID.CLIENT_AUTH, name)[0]
    return with_raw_bytes(cert, CA[1], placeholder.encode(), raw)


def _openssl_cn(cert: x509.Certificate) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                 # pyOpenSSL's X509Name is deprecated
        return crypto.X509.from_cryptography(cert).get_subject().CN


@pytest.mark.parametrize("raw,asn1_type", [(b"caf\xe9", "T61String"), (b"\xe9t\xe9", "IA5String"),
                                           (b"caf\xc3\xa9\xff", "T61String")])
def test_a_name_cryptography_refuses_is_read_as_openssl_reads_it(raw, asn1_type):
    cert = _raw_cert("p" * len(raw), raw, asn1_type)
    with pytest.raises(ValueError):
        cert.subject                                    # noqa: B018 - what cryptography does with it
    want = _openssl_cn(cert)
    assert want == raw.decode("latin-1")
    assert common_name(cert) == want
    assert subject_env(cert) == {"X509_0_O": "x", "X509_0_CN": want}
    assert openvpn_subject(cert) == f"O=x, CN={want}"
    _check_peer(TlsSettings(b"", b"", b"", False, verify_x509_name=(want, "name")), cert)
    # The CRL lookup's name of its issuer is the CA's as cryptography reads it.
    assert name_key(dername.issuer(cert)) == name_key(CA[0].subject)


def test_a_utf8string_that_is_not_utf8_stays_unreadable():
    cert = _raw_cert("pppp", b"caf\xe9", "UTF8String")
    with pytest.raises(ValueError):
        common_name(cert)


def test_attribute_lengths_cryptography_only_warns_about_do_not_refuse_a_name_read_from_the_der():
    """cryptography reads `C=USA` or an empty CN with a warning; beside a T61String CN holding
    Latin-1 (dername's reading) they raised ValueError and the client was refused as unreadable,
    where OpenSSL reads the name. The peer's name keeps OpenVPN's limits (the last CN, 64 bytes)."""
    for first in (x509.NameAttribute(NameOID.COUNTRY_NAME, "USA", _validate=False),
                  x509.NameAttribute(NameOID.COMMON_NAME, "", _validate=False),
                  x509.NameAttribute(NameOID.COMMON_NAME, "o" * 65, _validate=False)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            name = x509.Name([first, x509.NameAttribute(NameOID.COMMON_NAME, "pppp", _type=_ASN1Type.T61String)])
            cert = with_raw_bytes(issue("unused", CA, ExtendedKeyUsageOID.CLIENT_AUTH, name)[0], CA[1], b"pppp",
                                  b"caf\xe9")
        with pytest.raises(ValueError):
            cert.subject                                # noqa: B018 - what cryptography does with it
        # OpenSSL reads it (pyOpenSSL's CN is the first one; OpenVPN's the last)
        assert _openssl_cn(cert) == (first.value if first.oid == NameOID.COMMON_NAME else "caf\xe9")
        assert common_name(cert) == "caf\xe9"
        assert openvpn_subject(cert).endswith(", CN=caf\xe9")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "p" * 65, _type=_ASN1Type.T61String,
                                             _validate=False)])
        long_last = with_raw_bytes(issue("unused", CA, ExtendedKeyUsageOID.CLIENT_AUTH, name)[0], CA[1], b"p" * 65,
                                   b"\xe9" * 65)
    assert common_name(long_last) is None               # over 64 bytes: no name, as OpenVPN


def test_the_der_reading_is_cryptographys_where_it_reads_the_name():
    """Every attribute, its type and value, in order, multi-valued RDNs too, for the types a CA writes."""
    names = [subject("/C=NL/O=Org+OU=Dept/CN=a/CN=b/emailAddress=a@b"),
             x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Zo\u00eb\U0001f600", _type=t)
                        for t in (_ASN1Type.BMPString, _ASN1Type.UTF8String, _ASN1Type.UniversalString)][:1]),
             x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "café", _type=_ASN1Type.T61String)])]
    for name in names:
        cert = issue("unused", CA, ExtendedKeyUsageOID.CLIENT_AUTH, name)[0]
        issuer, subj = dername._tbs_names(cert.tbs_certificate_bytes, certificate=True)
        assert (issuer, subj) == (cert.issuer, cert.subject)
        assert [a._type for a in subj] == [a._type for a in cert.subject]


def test_a_crl_of_a_ca_with_a_latin1_name_revokes_as_openssl_says(tmp_path):
    """crl-verify with a CA named `Caf\\xe9 CA` in a T61String: its CRL's issuer, the CA's subject
    and the client's issuer are read from the DER; the revoked client is refused, as `openssl
    verify -crl_check` (OpenSSL's check, which OpenVPN's crl-verify uses) says. Ours could not
    read any of the three names."""
    import shutil
    import subprocess

    from cryptography.hazmat.primitives import serialization

    from appliance.openvpn.crl import CrlChecker, make_crl
    t61 = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CafX CA", _type=_ASN1Type.T61String)])
    ca0, key = issue("unused", None, None, t61)
    ca = with_raw_bytes(ca0, key, b"CafX", b"Caf\xe9")
    good, bad = (with_raw_bytes(issue(n, (ca0, key), ExtendedKeyUsageOID.CLIENT_AUTH)[0], key, b"CafX", b"Caf\xe9")
                 for n in ("good", "bad"))
    crl = with_raw_bytes(x509.load_pem_x509_crl(make_crl(ca0, key, [bad.serial_number])), key, b"CafX", b"Caf\xe9")
    pem = serialization.Encoding.PEM
    (tmp_path / "crl.pem").write_bytes(crl.public_bytes(pem))
    checker = CrlChecker("file", str(tmp_path / "crl.pem"), cas=[ca])
    assert checker.error is None and not checker.strays
    assert checker.revoked(good, [ca]) is None
    assert "is revoked" in (checker.revoked(bad, [ca]) or "")
    if shutil.which("openssl"):
        (tmp_path / "ca.pem").write_bytes(ca.public_bytes(pem))
        for c, want in ((good, "OK"), (bad, "certificate revoked")):
            (tmp_path / "c.pem").write_bytes(c.public_bytes(pem))
            r = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", str(tmp_path / "ca.pem"), "-CRLfile",
                                str(tmp_path / "crl.pem"), str(tmp_path / "c.pem")], capture_output=True, text=True)
            assert want in r.stdout + r.stderr


# The DER reader is hand-written and reads a peer's certificate: whatever the bytes, it answers or
# raises ValueError (the certificate refused as unreadable), never anything else, and soon.
_TBS = _raw_cert("PLACEHOLDER", "caf\xe9".encode("latin-1").ljust(11, b"x"), "T61String").tbs_certificate_bytes


@settings(max_examples=400, deadline=None)
@given(st.one_of(
    st.binary(max_size=600),
    st.tuples(st.integers(0, len(_TBS) - 1), st.binary(min_size=1, max_size=8)).map(
        lambda m: _TBS[:m[0]] + m[1] + _TBS[m[0] + len(m[1]):]),
    st.integers(1, len(_TBS) - 1).map(lambda n: _TBS[:n]),
))
def test_hostile_der_names_give_a_name_or_value_error(data):
    for certificate in (True, False):
        try:
            dername._tbs_names(data, certificate=certificate)
        except ValueError:
            pass


def test_a_ca_whose_name_cannot_be_read_makes_the_crl_refuse_every_peer_not_raise(tmp_path):
    """A CA OpenSSL loads whose subject neither cryptography nor the DER reader reads: an
    x500UniqueIdentifier (a BIT STRING) beside a T61String CN in Latin-1. With crl-verify,
    reading the CRL against `ca` raised ValueError: a traceback at the config check, before
    start. Now the CRL is unusable and every peer refused with the reason, as for a CRL that
    cannot be read."""
    from appliance.openvpn.crl import CrlChecker, make_crl
    name = x509.Name([x509.NameAttribute(NameOID.X500_UNIQUE_IDENTIFIER, b"\x01\x02", _type=_ASN1Type.BitString),
                      x509.NameAttribute(NameOID.COMMON_NAME, "cafX CA", _type=_ASN1Type.T61String)])
    ca0, key = issue("unused", None, None, name)
    ca = with_raw_bytes(ca0, key, b"cafX", b"caf\xe9")
    assert crypto.X509.from_cryptography(ca).get_subject().CN == "caf\xe9 CA"     # OpenSSL reads it
    (tmp_path / "crl.pem").write_bytes(make_crl(ca0, key, [5]))
    checker = CrlChecker("file", str(tmp_path / "crl.pem"), cas=[ca])
    client = issue("client", (ca0, key), ExtendedKeyUsageOID.CLIENT_AUTH)[0]
    assert "name of a certificate of `ca` cannot be read" in (checker.error or "")
    assert "cannot be read" in (checker.revoked(client, [ca]) or "")


def test_a_relative_name_with_an_attribute_twice_is_read_and_compared_as_openssl_does():
    """`O=LabA + O=LabA`: cryptography refuses the name, OpenSSL reads it (and OpenVPN with it).
    Read from the DER, it prints and compares as there: X509_NAME_cmp tells it from `O=LabA`."""
    from OpenSSL._util import lib
    from appliance.openvpn.tls import cert_env
    rdn = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "LabA"),
                                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "LabB")])
    one = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "LabA")])
    cn = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "Dup CA")])
    dup0, key = issue("unused", None, None, x509.Name([rdn, cn]))
    dup = with_raw_bytes(dup0, key, b"LabB", b"LabA")
    single = issue("unused", None, None, x509.Name([one, cn]))[0]
    with pytest.raises(ValueError):
        dup.subject                                     # noqa: B018 - what cryptography does with it
    env = cert_env(dup, 1)
    assert (env["X509_1_O"], env["X509_1_O_1"], env["tls_id_1"]) == ("LabA", "LabA", "O=LabA + O=LabA, CN=Dup CA")
    names = [crypto.X509.from_cryptography(c).get_subject()._name for c in (dup, single)]   # noqa: SLF001
    assert lib.X509_NAME_cmp(names[0], names[1]) != 0 and lib.X509_NAME_cmp(names[0], names[0]) == 0
    assert name_key(dername.subject(dup)) != name_key(single.subject)
    assert name_key(dername.subject(dup)) == name_key(dername.issuer(dup))
