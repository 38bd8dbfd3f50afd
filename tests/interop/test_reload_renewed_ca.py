"""A reload whose `ca` holds the CA's certificate renewed (same name and key, another serial and
validity), our server against Debian's OpenVPN 2.6 client in namespaces: the client is kept and
its next renegotiation goes through, its tunnel with it.

OpenVPN 2.6's server on SIGHUP has every client handshake anew (each one's chain locked again,
ending in the renewed certificate). Ours keeps the clients the new `ca` admits, and its chain lock
(control.py) held the chain of the first handshake: the renegotiation under the reloaded `ca`
ends in the renewed certificate, and the client was dropped ("client-provided SSL certs
unexpectedly changed") for a change of the server's own, at its next renegotiation."""
from __future__ import annotations

import datetime
import signal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

LOCKED = "client-provided SSL certs unexpectedly changed"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1"], tmp=tmp_path_factory.mktemp("renewedca")) as lab:
        yield lab


def _renewed(d) -> bytes:
    cert = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), None)
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650)))
    for ext in cert.extensions:
        b = b.add_extension(ext.value, ext.critical)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_a_client_kept_by_a_reload_with_the_ca_renewed_renegotiates_and_keeps_its_tunnel(lab, procs):
    ca = lab.tmp / "renewed-ca.crt"
    ca.write_bytes((lab.pki.dir / "ca.crt").read_bytes())
    cfg = server_config(lab.pki).replace(f"ca {lab.pki.ca}", f"ca {ca}")
    assert f"ca {ca}" in cfg
    srv = lab.ours(lab.srv, cfg, "renewedca-srv", pattern=r"listening on UDP")
    procs.append(srv)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, extra="reneg-sec 20\n"), "renewedca-cli")
    procs.append(cli)
    ca.write_bytes(_renewed(lab.pki.dir))
    mark = len(srv.log())
    srv.p.send_signal(signal.SIGHUP)
    assert srv.wait_for(r"reload: config .* re-read; 1 clients kept", 10, after=mark), srv.log()[-2000:]
    # The client's own renegotiation (reneg-sec), under the reloaded `ca`.
    assert srv.wait_for(r"key renegotiated \(key id 1\)|" + LOCKED, 40, after=mark), srv.log()[-2000:]
    assert LOCKED not in srv.log()[mark:], srv.log()[-2000:]
    assert lab.ping(lab.cli, TUN_SERVER_IP, 3) == 3, "the client lost its tunnel at its renegotiation"
