"""A client certificate that OpenSSL reads and cryptography cannot, from Debian's OpenVPN 2.6
client, against our server with `peer-fingerprint` and no CA (tests/engine/test_unreadable_peer_cert.py
has the cases in memory).

With only peer-fingerprint, OpenSSL's chain check is waived, so any stranger gets as far as our
conversion of its certificate; one with a PrintableString CN holding `_` made that conversion
raise out of the engine, and our server logged an internal error (with its traceback) for a
stranger's handshake. It must be refused as the peer's error, as a certificate that does not
match the fingerprint is, and the server must go on serving the known client.
"""
from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from lab.configs import client_profile, server_config
from lab.netns import Lab
from tests.engine.der_edit import unreadable_certificate

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]


def _pem(der: bytes) -> bytes:
    b64 = base64.encodebytes(der).decode().replace("\n", "")
    return ("-----BEGIN CERTIFICATE-----\n" + "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
            + "\n-----END CERTIFICATE-----\n").encode()


def test_a_strangers_unreadable_certificate_is_refused_as_its_error(tmp_path, procs):
    with Lab(tmp=tmp_path) as lab:
        der, key = unreadable_certificate("printable-underscore")
        (lab.pki.dir / "odd.crt").write_bytes(_pem(der))
        (lab.pki.dir / "odd.key").write_bytes(key)
        lab.pki.clients["odd"] = (lab.pki.dir / "odd.crt", lab.pki.dir / "odd.key")
        known = x509.load_pem_x509_certificate(lab.pki.clients["client1"][0].read_bytes())
        fp = hashlib.sha256(known.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
        fp = ":".join(fp[i:i + 2] for i in range(0, len(fp), 2))
        cfg = server_config(lab.pki).replace(f"ca {lab.pki.ca}\n", f"peer-fingerprint {fp}\n")
        srv = lab.ours(lab.srv, cfg, "odd-srv", pattern=r"listening on UDP")
        procs.append(srv)
        stranger = lab.openvpn(lab.cli, client_profile(lab.pki, client="odd"), "odd-cli", wait=0)
        procs.append(stranger)
        assert srv.wait_for("peer certificate cannot be read", 20), srv.log()[-3000:]
        assert "internal error" not in srv.log(), srv.log()[-3000:]
        stranger.stop(8)
        ok = lab.openvpn(lab.cli, client_profile(lab.pki), "known-cli")     # the known client still gets in
        procs.append(ok)
        assert lab.ping(lab.cli, "198.19.0.1", 2) == 2
