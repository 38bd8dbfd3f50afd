"""A test PKI: a CA, server and client certificates, a client from another CA, and the OpenVPN
static and tls-crypt-v2 keys (made with Debian's openvpn)."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue as _issue
from appliance.certs import subject as _subject

from .tools import OPENVPN


@dataclass
class Pki:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    clients: dict[str, tuple[Path, Path]] = field(default_factory=dict)
    rogue: tuple[Path, Path] | None = None


def ca_pair(pki: Pki):
    """The lab CA's certificate and private key (to sign CRLs and more certificates in tests)."""
    return (x509.load_pem_x509_certificate((pki.dir / "ca.crt").read_bytes()),
            serialization.load_pem_private_key((pki.dir / "ca.key").read_bytes(), None))


def client_serial(pki: Pki, name: str) -> int:
    """The serial number of client `name`'s certificate (what a CRL names)."""
    return x509.load_pem_x509_certificate(pki.clients[name][0].read_bytes()).serial_number


def _write(path: Path, cert, key) -> tuple[Path, Path]:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp = path.with_suffix(".key")
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    kp.chmod(0o600)
    return path.with_suffix(".crt"), kp


def add_cert(pki: Pki, name: str, subject: str, server: bool = False,
             san_emails: tuple[str, ...] = (), rsa_bits: int | None = None) -> tuple[Path, Path]:
    """Another certificate from the lab CA, with the subject `subject` in OpenSSL's
    `/O=x/CN=a/CN=b` form (several CNs allowed): written as <name>.crt/.key; a client one joins
    pki.clients (for client_profile), a server one is returned for a `cert`/`key` pair. `rsa_bits`:
    an RSA key of that size instead of P-256 (tls-cert-profile tests)."""
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    ca_key = serialization.load_pem_private_key((pki.dir / "ca.key").read_bytes(), None)
    eku = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    key = rsa.generate_private_key(65537, rsa_bits) if rsa_bits else None
    paths = _write(pki.dir / name, *_issue(name, (ca, ca_key), eku, _subject(subject), san_emails, key))
    if not server:
        pki.clients[name] = paths
    return paths


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    head = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + head + body


def _tlv_end(der: bytes, pos: int) -> int:
    n = der[pos + 1]
    if n < 0x80:
        return pos + 2 + n
    k = n & 0x7F
    return pos + 2 + k + int.from_bytes(der[pos + 2:pos + 2 + k], "big")


def with_raw_bytes(signed, ca_key, placeholder: bytes, raw: bytes):
    """A certificate or CRL `signed` with the bytes `placeholder` of its TBS (e.g. a CN's ASCII
    value, wherever it is: a self-signed CA's subject and issuer) made `raw` (as long) and signed
    again by `ca_key` (EC): what cryptography cannot issue, a T61String CN holding the Latin-1
    bytes `caf\\xe9` (what `openssl req` with `string_mask nombstr` writes for Latin-1 input)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    assert len(placeholder) == len(raw)
    cert = isinstance(signed, x509.Certificate)
    tbs0 = signed.tbs_certificate_bytes if cert else signed.tbs_certlist_bytes
    tbs = tbs0.replace(placeholder, raw)
    assert tbs != tbs0, placeholder
    der = signed.public_bytes(serialization.Encoding.DER)
    at = der.index(tbs0) + len(tbs0)
    alg = der[at:_tlv_end(der, at)]
    out = _der(0x30, tbs + alg + _der(0x03, b"\0" + ca_key.sign(tbs, ec.ECDSA(hashes.SHA256()))))
    return x509.load_der_x509_certificate(out) if cert else x509.load_der_x509_crl(out)


def add_raw_name_cert(pki: Pki, name: str, placeholder: str, raw: bytes, asn1_type: str = "T61String") -> None:
    """A client certificate `name` of the lab CA whose subject is O=x, CN=`raw` (bytes) in a string of
    `asn1_type`; `placeholder`: an ASCII name as long as `raw`, to issue it first."""
    from cryptography.x509.name import _ASN1Type
    from cryptography.x509.oid import NameOID
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    ca_key = serialization.load_pem_private_key((pki.dir / "ca.key").read_bytes(), None)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x"),
                         x509.NameAttribute(NameOID.COMMON_NAME, placeholder, _type=getattr(_ASN1Type, asn1_type))])
    cert, key = _issue(name, (ca, ca_key), ExtendedKeyUsageOID.CLIENT_AUTH, subject)
    pki.clients[name] = _write(pki.dir / name, with_raw_bytes(cert, ca_key, placeholder.encode(), raw), key)


def make_pki(d: Path, clients: list[str]) -> Pki:
    """ECDSA P-256 CA; server cert with serverAuth, one client cert per name with clientAuth
    (OpenVPN's remote-cert-tls needs keyUsage + extendedKeyUsage); a client from another CA."""
    d.mkdir(parents=True, exist_ok=True)
    ca = _issue("Lab CA", None, None)
    (d / "ca.crt").write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    _write(d / "ca", *ca)                    # ca.key too: the CRL tests sign revocation lists with it
    sc, sk = _write(d / "server", *_issue("server", ca, ExtendedKeyUsageOID.SERVER_AUTH))
    pki = Pki(d, d / "ca.crt", sc, sk)
    for name in clients:
        pki.clients[name] = _write(d / name, *_issue(name, ca, ExtendedKeyUsageOID.CLIENT_AUTH))
    other = _issue("Other CA", None, None)
    pki.rogue = _write(d / "rogue", *_issue("rogue", other, ExtendedKeyUsageOID.CLIENT_AUTH))
    subprocess.run([OPENVPN, "--genkey", "secret", str(d / "static.key")], check=True, capture_output=True)
    subprocess.run([OPENVPN, "--genkey", "tls-crypt-v2-server", str(d / "v2server.key")], check=True,
                   capture_output=True)
    for name in clients:
        subprocess.run([OPENVPN, "--tls-crypt-v2", str(d / "v2server.key"), "--genkey", "tls-crypt-v2-client",
                        str(d / f"{name}.v2.key")], check=True, capture_output=True)
    return pki
