"""A crl-verify file whose CRL writes a version other than v1 or v2 (INTEGER 2, or -1), against
Debian's OpenVPN 2.6 in namespaces.

What OpenVPN 2.6 does (OpenSSL 3.0): the CRL is read ("Version unknown (2)" to `openssl crl
-text`) and enforced: the revoked client is refused ("certificate revoked"), the other gets in.
Ours read it with cryptography, which reads no version but 1 (InvalidVersion for 2, a parse
error for -1): the CRL counted as unreadable and everyone was refused (crl.py _parse_der)."""
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
    with Lab(clients=CLIENTS, tmp=tmp_path_factory.mktemp("crlversion")) as lab:
        yield lab


@pytest.fixture(scope="module")
def ns2(lab):
    """A second client namespace (198.18.6.2), for the revoked client."""
    return lab.add_client_ns(5)


@pytest.mark.parametrize("server", ["openvpn", "ours"])
@pytest.mark.parametrize("version", [2, -1])
def test_a_crl_of_another_version_refuses_the_revoked_client_and_lets_the_other_in(lab, ns2, procs, server,
                                                                                    version):
    crl = lab.tmp / f"crl-version{version}.pem"         # PEM: OpenVPN 2.6 reads no DER file
    crl.write_bytes(make_crl(*ca_pair(lab.pki), [client_serial(lab.pki, "client2")], version=version))
    revoked_refused_other_admitted(lab, ns2, procs, server, crl, f"ver{server}{version}-{len(lab.procs)}")


def revoked_refused_other_admitted(lab, ns2, procs: list, server: str, crl, tag: str) -> None:
    """`server` ("openvpn": Debian's, or "ours") with `crl-verify crl` (client2 revoked) refuses
    client2 (from ns2), saying so, and admits client1; the CRL read, not counted unreadable.
    Also test_crl_v1_vs_openvpn's. `tag`: unique per call (the processes' names)."""
    cfg = server_config(lab.pki, extra=f"crl-verify {crl}\n")
    if server == "openvpn":
        srv = lab.start(lab.srv, [OPENVPN, "--config", str(lab.write(f"ovsrv-{tag}.conf", cfg))], f"ovcrl{tag}")
        assert srv.wait_for("Initialization Sequence Completed", 20), srv.log()[-2000:]
    else:
        srv = lab.ours(lab.srv, cfg, f"crl{tag}", pattern=r"listening on UDP")
    procs.append(srv)
    c2 = lab.openvpn(ns2, client_profile(lab.pki, client="client2", remotes=[("198.18.6.1", 1194, "udp")]),
                     f"c2-{tag}", wait=0)
    procs.append(c2)
    serial = client_serial(lab.pki, "client2")
    want = r"certificate revoked" if server == "openvpn" else rf"serial {serial} \(CN=client2\) is revoked by the CRL"
    assert srv.wait_for(want, 20), "\n".join(l for l in srv.log().splitlines() if "VERIFY" in l or "CRL" in l)
    assert not c2.wait_for("Initialization Sequence Completed", 3), "the revoked client got in"
    c2.stop(8)
    c1 = lab.openvpn(lab.cli, client_profile(lab.pki, client="client1"), f"c1-{tag}", wait=30)
    procs.append(c1)
    assert "unreadable" not in srv.log() and "CRL not loaded" not in srv.log()
