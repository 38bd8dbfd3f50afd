"""ns-cert-type (tls.ns_cert_type_ok), as OpenVPN 2.6 checks it: OpenSSL's purpose check for a TLS
server/client, then an nsCertType with the bit alone. Each certificate below is built with exactly
the extensions named; the expectations are OpenSSL 3's v3_purp.c rules. Before, the directive was
refused as "removed in OpenVPN 2.5" (it is not: 2.6 checks it), so old provider profiles failed."""
from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID as EKU
from cryptography.x509.oid import NameOID

from appliance.openvpn.config import ConfigError, parse_config
from appliance.openvpn.tls import ns_cert_type_ok

NS = x509.ObjectIdentifier("2.16.840.1.113730.1.1")
MS_SGC = x509.ObjectIdentifier("1.3.6.1.4.1.311.10.3.3")


def _ku(**on) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: on.get(n, False) for n in names})


def _cert(*exts) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "peer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)))
    for e in exts:
        b = b.add_extension(e, False)
    return b.sign(key, hashes.SHA256())


def _ns(bits: int) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(NS, bytes([0x03, 0x02, 0x00, bits]))


@pytest.mark.parametrize("exts,server,client", [
    ((), True, True),                                                          # nothing says otherwise
    ((x509.ExtendedKeyUsage([EKU.SERVER_AUTH]), _ku(digital_signature=True, key_encipherment=True)), True, False),
    ((x509.ExtendedKeyUsage([EKU.CLIENT_AUTH]), _ku(digital_signature=True)), False, True),
    ((x509.ExtendedKeyUsage([EKU.CLIENT_AUTH]), _ns(0x40)), True, False),     # nsCertType server alone passes
    ((x509.ExtendedKeyUsage([EKU.SERVER_AUTH]), _ns(0x80)), False, True),
    ((_ku(key_cert_sign=True),), False, False),
    ((_ku(key_encipherment=True),), True, False),                             # a client must sign or agree
    ((x509.ExtendedKeyUsage([MS_SGC]),), True, False),
    ((x509.ExtendedKeyUsage([EKU.ANY_EXTENDED_KEY_USAGE]),), False, False),
    ((_ns(0x00),), False, False),
])
def test_purpose_then_netscape_type(exts, server, client):
    c = _cert(*exts)
    assert (ns_cert_type_ok(c, "server"), ns_cert_type_ok(c, "client")) == (server, client)


def test_the_directive_is_read_and_checked_values():
    base = "client\ndev tun\nremote 198.18.0.1 1194\n<ca>\n</ca>\n"
    assert parse_config(base + "ns-cert-type server\n", "/p/c.ovpn").ns_cert_type == "server"
    with pytest.raises(ConfigError) as ei:
        parse_config(base + "ns-cert-type peer\n", "/p/c.ovpn")
    assert "/p/c.ovpn:6: ns-cert-type: expects server or client" in str(ei.value)
