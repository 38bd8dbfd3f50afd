"""A client certificate whose CN is a T61String holding Latin-1 bytes (`caf\\xe9`, what `openssl
req` with `string_mask nombstr` writes for Latin-1 input), against Debian's OpenVPN 2.6 in
namespaces: OpenSSL reads the bytes as Latin-1, so OpenVPN names the client `café` (its UTF-8):
the ccd file of that name, a client-connect script's $common_name, $X509_0_CN and $tls_id_0. Ours
refused the certificate as unreadable (cryptography reads T61String as UTF-8 and refuses the
name); now the same server config gives the same client the same address and the same names
(openvpn/dername.py).

A CA whose name is such a T61String (`Caf\\xe9 Lab CA`), with crl-verify: its CRL's issuer, its
subject and its clients' issuer are read the same way; both servers refuse the revoked client
and let the other in. Ours could read none of the three names and refused every client."""
from __future__ import annotations

import re

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.certs import issue
from appliance.openvpn.crl import make_crl
from lab.configs import client_profile, server_config
from lab.netns import Lab
from lab.pki import _write, add_raw_name_cert, with_raw_bytes


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("t61latin1")) as lab:
        add_raw_name_cert(lab.pki, "latin1", "cafX", b"caf\xe9")
        _add_usa_latin1(lab.pki)
        yield lab


def _add_usa_latin1(pki) -> None:
    """Client `usa`: subject C=USA (three letters: cryptography warns, OpenSSL reads it), CN caf\xe9
    in a T61String."""
    import warnings
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    ca_key = serialization.load_pem_private_key((pki.dir / "ca.key").read_bytes(), None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "USA", _validate=False),
                          x509.NameAttribute(NameOID.COMMON_NAME, "cafX", _type=_ASN1Type.T61String)])
        cert, key = issue("usa", (ca, ca_key), ExtendedKeyUsageOID.CLIENT_AUTH, name)
        pki.clients["usa"] = _write(pki.dir / "usa", with_raw_bytes(cert, ca_key, b"cafX", b"caf\xe9"), key)


def _tun_ip(ns) -> str:
    m = re.search(r"inet (\S+)/", ns.run("ip -4 -o addr show dev tun0", check=False).stdout)
    return m.group(1) if m else ""


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_a_latin1_t61string_cn_is_the_name_openssl_reads(lab, procs, server):
    ccd = lab.tmp / f"ccd-{server}"
    ccd.mkdir()
    (ccd / "café").write_text("ifconfig-push 198.19.0.78 255.255.255.0\n")
    seen = lab.tmp / f"connect-{server}.log"
    script = lab.write(f"connect-{server}.sh",
                       f"#!/bin/sh\nprintf '%s\\n' \"$common_name\" \"$X509_0_CN\" \"$tls_id_0\" >> {seen}\n")
    script.chmod(0o755)
    cfg = server_config(lab.pki, extra=f"client-config-dir {ccd}\nscript-security 2\nclient-connect {script}\n")
    procs.append(lab.udp_server(server, cfg, f"t61lsrv-{len(lab.procs)}"))
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="latin1"), f"t61lcli-{len(lab.procs)}", wait=0)
    procs.append(cli)
    assert cli.wait_for("Initialization Sequence Completed", 60), procs[0].log()[-2000:]
    assert _tun_ip(lab.cli) == "198.19.0.78", procs[0].log()[-2000:]
    assert seen.read_bytes().decode("utf-8").splitlines() == ["café", "café", "O=x, CN=café"]


def _latin1_ca_pki(lab) -> dict:
    """A CA named `Caf\\xe9 Lab CA` (T61String, Latin-1), its server and two clients, and its CRL
    revoking `bad`: the paths, by name."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CafX Lab CA", _type=_ASN1Type.T61String)])
    ca0, key = issue("unused", None, None, name)
    raw = {"ca": (with_raw_bytes(ca0, key, b"CafX", b"Caf\xe9"), key)}
    for n, eku in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("good", ExtendedKeyUsageOID.CLIENT_AUTH),
                   ("bad", ExtendedKeyUsageOID.CLIENT_AUTH)):
        cert, k = issue(n, (ca0, key), eku)
        raw[n] = (with_raw_bytes(cert, key, b"CafX", b"Caf\xe9"), k)
    paths = {n: _write(lab.tmp / f"latin1ca-{n}", c, k) for n, (c, k) in raw.items()}
    crl = x509.load_pem_x509_crl(make_crl(ca0, key, [raw["bad"][0].serial_number]))
    paths["crl"] = lab.tmp / "latin1ca-crl.pem"
    paths["crl"].write_bytes(with_raw_bytes(crl, key, b"CafX", b"Caf\xe9").public_bytes(serialization.Encoding.PEM))
    return paths


def _with(text: str, new_ca, cert_key: tuple) -> str:
    """A lab config with another CA and certificate/key."""
    out = []
    for line in text.splitlines():
        word = line.split(" ", 1)[0]
        line = {"ca": f"ca {new_ca}", "cert": f"cert {cert_key[0]}", "key": f"key {cert_key[1]}"}.get(word, line)
        out.append(line)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_a_ca_named_in_latin1_t61string_and_its_crl(lab, procs, server):
    p = _latin1_ca_pki(lab)
    ca = p["ca"][0]
    cfg = _with(server_config(lab.pki, extra=f"crl-verify {p['crl']}\n"), ca, p["server"])
    if server == "openvpn":
        srv = lab.openvpn(lab.srv, cfg, f"l1casrv-{len(lab.procs)}")
    else:
        srv = lab.ours(lab.srv, cfg, f"l1casrv-{len(lab.procs)}", pattern=r"listening on UDP")
    procs.append(srv)
    bad = lab.openvpn(lab.cli, _with(client_profile(lab.pki, "udp"), ca, p["bad"]),
                      f"l1cabad-{len(lab.procs)}", wait=0)
    procs.append(bad)
    assert srv.wait_for(r"certificate revoked" if server == "openvpn" else r"is revoked", 30), srv.log()[-2000:]
    assert not bad.wait_for("Initialization Sequence Completed", 3), "the revoked client got in"
    bad.stop(8)
    good = lab.openvpn(lab.cli, _with(client_profile(lab.pki, "udp"), ca, p["good"]),
                       f"l1cagood-{len(lab.procs)}", wait=0)
    procs.append(good)
    assert good.wait_for("Initialization Sequence Completed", 60), srv.log()[-2000:]


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_a_three_letter_country_beside_a_latin1_cn_is_read_too(lab, procs, server):
    """C=USA beside the T61String CN: Debian's server names the client `café` and lets it in;
    ours refused it as unreadable (the DER reader checked the country's length, which
    cryptography only warns about)."""
    ccd = lab.tmp / f"ccd-usa-{server}"
    ccd.mkdir()
    (ccd / "café").write_text("ifconfig-push 198.19.0.79 255.255.255.0\n")
    cfg = server_config(lab.pki, extra=f"client-config-dir {ccd}\n")
    procs.append(lab.udp_server(server, cfg, f"t61usrv-{len(lab.procs)}"))
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="usa"), f"t61ucli-{len(lab.procs)}", wait=0)
    procs.append(cli)
    assert cli.wait_for("Initialization Sequence Completed", 60), procs[0].log()[-2000:]
    assert _tun_ip(lab.cli) == "198.19.0.79", procs[0].log()[-2000:]
