"""A crl-verify file whose CRL has its version written out as v1 (the optional version field
present, INTEGER 0; RFC 5280 has v1 CRLs leave it out, some CA tools write it), against Debian's
OpenVPN 2.6 in namespaces.

What OpenVPN 2.6 does: OpenSSL reads the CRL ("Version 1 (0x0)" to `openssl crl -text`) and
enforces it: the revoked client is refused ("certificate revoked"), the other gets in. Ours
read it with cryptography, which refuses that version (InvalidVersion): the CRL counted as
unreadable and everyone was refused, the client the CRL does not name too (crl.py _parse_der)."""
from __future__ import annotations

import pytest

from appliance.openvpn.crl import make_crl
from lab.configs import client_profile, server_config
from lab.netns import Lab
from lab.pki import ca_pair, client_serial
from lab.tools import OPENVPN

CLIENTS = ["client1", "client2"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=CLIENTS, tmp=tmp_path_factory.mktemp("crlv1")) as lab:
        yield lab


@pytest.fixture(scope="module")
def ns2(lab):
    """A second client namespace (198.18.6.2), for the revoked client."""
    return lab.add_client_ns(5)


@pytest.fixture(scope="module")
def crl_file(lab):
    """One file for both servers: client2 revoked, version written out as v1 (PEM: OpenVPN 2.6
    reads no DER file)."""
    crl = lab.tmp / "crl-v1.pem"
    crl.write_bytes(make_crl(*ca_pair(lab.pki), [client_serial(lab.pki, "client2")], v1=True))
    return crl


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_a_v1_crl_refuses_the_revoked_client_and_lets_the_other_in(lab, ns2, crl_file, procs, server):
    cfg = server_config(lab.pki, extra=f"crl-verify {crl_file}\n")
    if server == "openvpn":
        srv = lab.start(lab.srv, [OPENVPN, "--config", str(lab.write(f"ovsrv-{len(lab.procs)}.conf", cfg))],
                        "ovcrlv1")
        assert srv.wait_for("Initialization Sequence Completed", 20), srv.log()[-2000:]
    else:
        srv = lab.ours(lab.srv, cfg, f"crlv1-{len(lab.procs)}", pattern=r"listening on UDP")
    procs.append(srv)
    c2 = lab.openvpn(ns2, client_profile(lab.pki, client="client2", remotes=[("198.18.6.1", 1194, "udp")]),
                     f"v1c2-{server}-{len(lab.procs)}", wait=0)
    procs.append(c2)
    serial = client_serial(lab.pki, "client2")
    want = r"certificate revoked" if server == "openvpn" else rf"serial {serial} \(CN=client2\) is revoked by the CRL"
    assert srv.wait_for(want, 20), "\n".join(l for l in srv.log().splitlines() if "VERIFY" in l or "CRL" in l)
    assert not c2.wait_for("Initialization Sequence Completed", 3), "the revoked client got in"
    c2.stop(8)
    c1 = lab.openvpn(lab.cli, client_profile(lab.pki, client="client1"), f"v1c1-{server}-{len(lab.procs)}", wait=30)
    procs.append(c1)
    assert "unreadable" not in srv.log() and "CRL not loaded" not in srv.log()
