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
from lab.netns import Lab
from lab.pki import ca_pair, client_serial
from tests.interop.test_crl_version_vs_openvpn import revoked_refused_other_admitted

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
    revoked_refused_other_admitted(lab, ns2, procs, server, crl_file, f"v1{server}-{len(lab.procs)}")
