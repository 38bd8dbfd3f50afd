"""Issue test certificates in memory (ECDSA P-256), the way OpenVPN's remote-cert-tls wants them.

Why in the package and not in tests: the in-memory bench and the VM self-test use it too, and the
interop lab writes the same certificates to disk.
"""
from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def subject(spec: str) -> x509.Name:
    """A subject from OpenSSL's `/O=x/CN=alice/CN=admin` form, attributes in that order, `+`
    joining the attributes of one multi-valued RDN (`/O=x+OU=y/CN=a`): names with a field twice
    (several CNs) are how a CA that lets users add to their subject is tested. Only the fields
    the tests use (C, ST, L, O, OU, CN, emailAddress), unchecked."""
    oids = {"C": NameOID.COUNTRY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "L": NameOID.LOCALITY_NAME,
            "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "CN": NameOID.COMMON_NAME,
            "emailAddress": NameOID.EMAIL_ADDRESS}
    # Unvalidated: a lax CA issues what X.509 bounds forbid (a CN over 64 characters), and the
    # tests need such names to show what a peer does with them.
    return x509.Name([x509.RelativeDistinguishedName([x509.NameAttribute(oids[k], v, _validate=False) for k, v in
                                                      (a.split("=", 1) for a in rdn.split("+"))])
                      for rdn in spec.strip("/").split("/")])


def issue(cn: str, issuer, eku, name: x509.Name | None = None,
          san_emails: tuple[str, ...] = (), key=None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A CA certificate when `issuer` is None, else a leaf signed by `issuer` (cert, key) with
    keyUsage and the extendedKeyUsage `eku` (serverAuth/clientAuth). `name`, if given, is the
    subject instead of `CN=<cn>` (see subject()); `san_emails`, e-mail addresses of a
    subjectAltName (x509-username-field ext:subjectAltName), after a DNS name. `key`: the private
    key to certify (tests of key strength: RSA of a given size); a new P-256 key by default."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(name or _name(cn)).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
         .not_valid_after(now + datetime.timedelta(days=30)))
    if issuer is None:
        b = (b.issuer_name(name or _name(cn)).add_extension(x509.BasicConstraints(True, None), True)
             .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True))
        return b.sign(key, hashes.SHA256()), key
    icert, ikey = issuer
    b = (b.issuer_name(icert.subject).add_extension(x509.BasicConstraints(False, None), True)
         .add_extension(x509.KeyUsage(True, False, False, False, True, False, False, False, False), True)
         .add_extension(x509.ExtendedKeyUsage([eku]), False))
    if san_emails:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(f"{cn}.example")]
                                                        + [x509.RFC822Name(e) for e in san_emails]), False)
    return b.sign(ikey, hashes.SHA256()), key
