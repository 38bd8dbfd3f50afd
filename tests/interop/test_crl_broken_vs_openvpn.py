"""A crl-verify file that turns broken while the server runs (a download or copy cut short: the
file ends inside its PEM block), against Debian's OpenVPN 2.6 in namespaces.

What OpenVPN 2.6 does (ssl.c tls_ctx_reload_crl, ssl_openssl.c backend_tls_ctx_reload_crl): at
the next handshake it sees the file changed, takes every CRL out of its store, fails to read the
file ("CRL: cannot read CRL from file", "loaded 0 CRLs"), and then refuses every certificate
(ssl_verify.c verify_cert, ssl_verify_openssl.c tls_verify_crl_missing: "VERIFY ERROR: CRL not
loaded"). It does not keep the old CRL. Ours does the same: while the file cannot be read, every
certificate is refused, the unrevoked client's too. Before, a file cut short inside its last PEM
block read here as a file of no CRL, and everyone got in, the revoked client too.

Where they differ: a file holding several CRLs cut short after a complete one. OpenVPN keeps the
complete ones (and admits what a lost sub-CA CRL revoked); ours refuses everyone."""
from __future__ import annotations

import os

import pytest

from appliance.openvpn.crl import make_crl
from lab.configs import client_profile, server_config
from lab.netns import Lab
from lab.pki import ca_pair, client_serial
from lab.tools import OPENVPN

CLIENTS = ["client1", "client2"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=CLIENTS, tmp=tmp_path_factory.mktemp("crlbroken")) as lab:
        yield lab


@pytest.fixture(scope="module")
def ns2(lab):
    """A second client namespace (198.18.6.2), for the revoked client."""
    return lab.add_client_ns(5)


def _serial(lab, name: str) -> int:
    return client_serial(lab.pki, name)


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_a_crl_file_cut_short_while_running_refuses_everyone(lab, ns2, procs, server):
    ca = ca_pair(lab.pki)
    crl = lab.tmp / f"crl-broken-{server}.pem"
    whole = make_crl(*ca, [_serial(lab, "client2")])
    crl.write_bytes(whole)
    cfg = server_config(lab.pki, extra=f"crl-verify {crl}\n")
    if server == "openvpn":
        srv = lab.start(lab.srv, [OPENVPN, "--config", str(lab.write(f"ovsrv-{len(lab.procs)}.conf", cfg))],
                        "ovcrlbroken")
        assert srv.wait_for("Initialization Sequence Completed", 20), srv.log()[-2000:]
    else:
        srv = lab.ours(lab.srv, cfg, f"crlbroken-{len(lab.procs)}", pattern=r"listening on UDP")
    procs.append(srv)
    remote2 = [("198.18.6.1", 1194, "udp")]
    # client2 is revoked while the file is whole.
    c2 = lab.openvpn(ns2, client_profile(lab.pki, client="client2", remotes=remote2),
                     f"brokenc2a-{server}-{len(lab.procs)}", wait=0)
    procs.append(c2)
    want = r"certificate revoked" if server == "openvpn" else rf"serial {_serial(lab, 'client2')} \(CN=client2\) is revoked"
    assert srv.wait_for(want, 20), srv.log()[-2000:]
    c2.stop(8)
    # The file cut short inside its PEM block (another size, a new inode).
    part = crl.with_suffix(".part")
    part.write_bytes(whole[:len(whole) // 2])
    os.replace(part, crl)
    refused = r"VERIFY ERROR: CRL not loaded" if server == "openvpn" else r"unreadable"
    mark = len(srv.log())
    c2 = lab.openvpn(ns2, client_profile(lab.pki, client="client2", remotes=remote2),
                     f"brokenc2b-{server}-{len(lab.procs)}", wait=0)
    procs.append(c2)
    assert srv.wait_for(refused, 20, after=mark), srv.log()[-2000:]
    assert not c2.wait_for("Initialization Sequence Completed", 5), "the revoked client got in past a broken CRL"
    c2.stop(8)
    mark = len(srv.log())
    c1 = lab.openvpn(lab.cli, client_profile(lab.pki, client="client1"), f"brokenc1-{server}-{len(lab.procs)}",
                     wait=0)
    procs.append(c1)
    assert srv.wait_for(refused, 20, after=mark), srv.log()[-2000:]
    assert not c1.wait_for("Initialization Sequence Completed", 5), "an unrevoked client got in past a broken CRL"
