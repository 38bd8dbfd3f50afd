"""crl-verify matches a CRL to its CA by name as OpenSSL (OpenVPN's backend) does: canonically,
not byte for byte. A CRL whose issuer is the CA's name written another way (other case, spaces or
string type) is that CA's CRL for OpenVPN; here it revoked nobody. A CRL that names no CA in
`ca` is refused at start; the issuer in log lines is named by its last CN."""
from __future__ import annotations

import datetime
import logging
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from OpenSSL._util import ffi, lib

from appliance.certs import issue, subject
from appliance.openvpn.config import parse_config
from appliance.openvpn.crl import CrlChecker, make_crl, name_key
from appliance.openvpn.errors import ConfigError
from appliance.openvpn.settings import check_key_material
from tests.gateway.conftest import server_conf

P, U = _ASN1Type.PrintableString, _ASN1Type.UTF8String
CA_NAME = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Org", P),
                     x509.NameAttribute(NameOID.COMMON_NAME, "Test CA", P)])
# The same name for OpenSSL: other string type, case and blanks.
CA_NAME_AGAIN = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, " example   ORG", U),
                           x509.NameAttribute(NameOID.COMMON_NAME, "TEST\tCA ", U)])
CA = issue("", None, None, CA_NAME)
ALICE = issue("alice", CA, ExtendedKeyUsageOID.CLIENT_AUTH)[0]
BOB = issue("bob", CA, ExtendedKeyUsageOID.CLIENT_AUTH)[0]
PEM = serialization.Encoding.PEM


def _openssl_equal(a: x509.Name, b: x509.Name) -> bool:
    """OpenSSL's own verdict (X509_NAME_cmp, what its CRL lookup uses) on two names."""
    names = []
    for n in (a, b):
        der = n.public_bytes()
        buf = ffi.new("unsigned char[]", der)
        p = ffi.new("unsigned char **", buf)
        x = lib.d2i_X509_NAME(ffi.NULL, p, len(der))
        assert x != ffi.NULL
        names.append(ffi.gc(x, lib.X509_NAME_free))
    return lib.X509_NAME_cmp(*names) == 0


def test_a_crl_naming_its_ca_another_way_revokes(tmp_path):
    """OpenSSL finds this CRL for ALICE's issuer (`openssl verify -crl_check` says "certificate
    revoked", and so does OpenVPN's server); it was ignored here, and ALICE got in."""
    assert CA_NAME_AGAIN != CA_NAME and _openssl_equal(CA_NAME_AGAIN, CA_NAME)
    f = tmp_path / "crl.pem"
    f.write_bytes(make_crl(*CA, [ALICE.serial_number], issuer=CA_NAME_AGAIN))
    c = CrlChecker("file", str(f), cas=[CA[0]])
    assert "CN=alice" in c.revoked(ALICE, [CA[0]])
    assert c.revoked(BOB, [CA[0]]) is None
    assert c.revoked(ALICE) is not None                   # without the chain too
    assert c.strays == []
    # Its signature is checked against that CA too: the same name under another key refuses.
    other_key = issue("", None, None, CA_NAME)[1]
    f.write_bytes(make_crl(CA[0], other_key, [], issuer=CA_NAME_AGAIN))
    os.utime(f, ns=(0, os.stat(f).st_mtime_ns + 10**9))
    assert "CRL signature failure" in c.revoked(BOB, [CA[0]])


def test_names_openssl_tells_apart_stay_apart():
    """The other direction: a NumericString and a PrintableString with the same digits are two
    names for OpenSSL (only the string types it canonicalises compare by content), one name for
    cryptography's Name equality; an inner letter change is another name for both."""
    num = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "123", _ASN1Type.NumericString)])
    prt = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "123", P)])
    assert num == prt and not _openssl_equal(num, prt) and name_key(num) != name_key(prt)
    cb = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CB", P)])
    cab = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test C B", P)])
    assert name_key(cb) != name_key(cab) and not _openssl_equal(cb, cab)


# The string types OpenSSL reads in a name (VisibleString is no name value to it: such a
# certificate does not parse there).
_TYPES = [U, P, _ASN1Type.IA5String, _ASN1Type.T61String, _ASN1Type.BMPString, _ASN1Type.UniversalString,
          _ASN1Type.NumericString]
_ASCII_ONLY = {P, _ASN1Type.IA5String, _ASN1Type.NumericString}
_OIDS = [NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME]


@st.composite
def _attribute(draw) -> x509.NameAttribute:
    t = draw(st.sampled_from(_TYPES))
    alphabet = "aAbZ 1" if t in _ASCII_ONLY else "aAbZ 1\t\n\u00e9\u00c9\u0130\u00a0"
    value = draw(st.text(alphabet, min_size=1, max_size=6))
    return x509.NameAttribute(draw(st.sampled_from(_OIDS)), value, t, _validate=False)


_NAMES = st.lists(st.lists(_attribute(), min_size=1, max_size=2, unique_by=lambda a: (a.oid, a.value))
                  .map(x509.RelativeDistinguishedName),
                  min_size=0, max_size=3).map(x509.Name)


@settings(max_examples=400, deadline=None)
@given(_NAMES, _NAMES)
def test_name_key_agrees_with_openssl(a, b):
    """name_key(a) == name_key(b) exactly when OpenSSL's X509_NAME_cmp says the names are equal:
    case, blanks, string types (T61String read as Latin-1, as OpenSSL does), multi-valued RDNs."""
    assert (name_key(a) == name_key(b)) == _openssl_equal(a, b), (a, b)


@settings(max_examples=200, deadline=None)
@given(_NAMES, st.randoms(use_true_random=False))
def test_name_key_agrees_with_openssl_on_rewritings(a, rnd):
    """The same, on a name and a rewriting of it (case, blanks, type): random pairs are mostly
    unequal, these mostly equal."""
    rdns = []
    for rdn in a.rdns:
        attrs = []
        for at in rdn:
            v = at.value
            v = "".join(ch.swapcase() if rnd.random() < 0.5 else ch for ch in v)
            v = " " * rnd.randint(0, 2) + v.replace(" ", " " * rnd.randint(1, 3)) + "\t" * rnd.randint(0, 1)
            t = rnd.choice([at._type, U, _ASN1Type.BMPString])
            if (at.oid, v) not in [(x.oid, x.value) for x in attrs]:
                attrs.append(x509.NameAttribute(at.oid, v, t, _validate=False))
        rnd.shuffle(attrs)
        rdns.append(x509.RelativeDistinguishedName(attrs))
    b = x509.Name(rdns)
    assert (name_key(a) == name_key(b)) == _openssl_equal(a, b), (a, b)


def _pki_conf(crl_pem: bytes) -> str:
    srv = issue("server", CA, ExtendedKeyUsageOID.SERVER_AUTH)
    pki = {"ca": CA[0].public_bytes(PEM).decode(),
           "server": (srv[0].public_bytes(PEM).decode(),
                      srv[1].private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()).decode())}
    return server_conf(pki, extra=f"<crl-verify>\n{crl_pem.decode()}</crl-verify>\n")


def test_a_crl_naming_no_ca_refuses_to_start():
    """A CRL of another CA (or of a sub-CA not in `ca`) revokes nothing under our CAs; OpenVPN
    keeps it silently (its "unable to get certificate CRL" is ignored). Refused here, with the
    line of crl-verify; the same name written another way is our CA's CRL and starts."""
    other = issue("Other CA", None, None)
    opts = parse_config(_pki_conf(make_crl(*other, [ALICE.serial_number])), "/mem/s.conf")
    with pytest.raises(ConfigError) as e:
        check_key_material(opts)
    assert e.value.directive == "crl-verify" and e.value.line is not None
    assert "CN=Other CA" in str(e.value) and "names no certificate in `ca`" in str(e.value)
    check_key_material(parse_config(_pki_conf(make_crl(*CA, [], issuer=CA_NAME_AGAIN)), "/mem/s.conf"))


def test_a_crl_file_changing_to_one_naming_no_ca_is_logged(tmp_path, caplog):
    f = tmp_path / "crl.pem"
    f.write_bytes(make_crl(*CA, []))
    c = CrlChecker("file", str(f), cas=[CA[0]])
    assert c.strays == []
    other = issue("Other CA", None, None)
    f.write_bytes(make_crl(*other, [ALICE.serial_number]))
    os.utime(f, ns=(0, os.stat(f).st_mtime_ns + 10**9))
    with caplog.at_level(logging.WARNING):
        assert c.revoked(ALICE, [CA[0]]) is None           # as OpenVPN: it revokes nothing here
    assert any("CN=Other CA" in r.getMessage() and "names no certificate" in r.getMessage()
               for r in caplog.records)


def test_the_issuer_in_a_crl_log_line_is_named_by_its_last_cn(tmp_path):
    """A sub-CA `/CN=first/CN=Sub CA` is `Sub CA` to OpenVPN (the last CN), as every peer is."""
    # issue() makes a leaf under CA; the checker reads only the sub-CA's names and key.
    sub = issue("", CA, ExtendedKeyUsageOID.CLIENT_AUTH, subject("/CN=first/CN=Sub CA"))
    leaf = issue("carol", sub, ExtendedKeyUsageOID.CLIENT_AUTH)[0]
    now = datetime.datetime.now(datetime.timezone.utc)
    expired = (x509.CertificateRevocationListBuilder().issuer_name(sub[0].subject)
               .last_update(now - datetime.timedelta(days=10)).next_update(now - datetime.timedelta(days=1))
               .sign(sub[1], hashes.SHA256()).public_bytes(PEM))
    f = tmp_path / "crl.pem"
    f.write_bytes(expired)
    why = CrlChecker("file", str(f)).revoked(leaf, [sub[0], CA[0]])
    assert "of CN=Sub CA: CRL has expired" in why, why


@pytest.mark.filterwarnings("ignore:Attribute's length")      # past X.509's bound: a lax CA's name
def test_a_long_value_is_compared_the_same_way():
    """Values past the length whose canonical form is kept are put in that form all the same."""
    long_name = "Test CA " + "x" * 300
    a = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, long_name, P, _validate=False)])
    b = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "  " + long_name.upper(), U, _validate=False)])
    assert name_key(a) == name_key(b) and _openssl_equal(a, b)
