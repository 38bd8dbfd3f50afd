"""Which CRLs apply (2befad4d, OpenVPN's "Fix some CRL mixups"), against Debian's OpenVPN 2.6 in
namespaces.

A CRL inside the `ca` file: OpenVPN 2.6 adds it to its OpenSSL store but turns CRL checks on only
with crl-verify (or capath), and then its reload of crl-verify's file, before each handshake,
first deletes every CRL of the store -- so a CRL there never refuses anybody (2.7, after that
fix, keeps it and checks it beside crl-verify). Ours took no CRL from `ca` either, silently; a
`ca` holding one is now refused at its line: a revocation the admin wrote down is enforced or
refused, never ignored, and the two OpenVPN versions disagree on it.

crl-verify in a client profile: OpenVPN's client checks the server's certificate against it.
Ours read it and checked nothing (the checker was built for the server role only), so a revoked
server (a stolen key) still got our client's tunnel.
"""
from __future__ import annotations

import subprocess

import pytest
from cryptography import x509

from appliance.openvpn.crl import make_crl
from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab
from lab.pki import ca_pair
from lab.tools import OPENVPN, OUR_BIN

CLIENTS = ["client1", "client2"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=CLIENTS, tmp=tmp_path_factory.mktemp("crlinca")) as lab:
        yield lab


@pytest.fixture(scope="module")
def ns2(lab):
    """A second client namespace (198.18.6.2)."""
    return lab.add_client_ns(5)


def _ca(lab):
    return ca_pair(lab.pki)


def _serial(path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def _ca_with_crl(lab, tag: str):
    """The lab CA followed by a CRL that revokes client2."""
    f = lab.tmp / f"ca-crl-{tag}.pem"
    f.write_bytes(lab.pki.ca.read_bytes() + make_crl(*_ca(lab), [_serial(lab.pki.clients["client2"][0])]))
    return f


@pytest.mark.parametrize("crl_verify", [False, True], ids=["alone", "beside-crl-verify"])
def test_openvpn_26_never_checks_a_crl_in_the_ca_file(lab, ns2, procs, crl_verify):
    """Why ours refuses such a file: Debian's OpenVPN 2.6 server lets the client that CRL revokes
    in, with or without a crl-verify (here one revoking nobody)."""
    tag = f"ov-{int(crl_verify)}"
    extra = ""
    if crl_verify:
        empty = lab.tmp / f"empty-{tag}.pem"
        empty.write_bytes(make_crl(*_ca(lab), []))
        extra = f"crl-verify {empty}\n"
    cfg = server_config(lab.pki, extra=extra).replace(f"ca {lab.pki.ca}\n", f"ca {_ca_with_crl(lab, tag)}\n")
    srv = lab.start(lab.srv, [OPENVPN, "--config", str(lab.write(f"srv-{tag}.conf", cfg))], f"srv-{tag}")
    procs.append(srv)
    assert srv.wait_for("Initialization Sequence Completed", 20), srv.log()[-2000:]
    c2 = lab.openvpn(ns2, client_profile(lab.pki, client="client2", remotes=[("198.18.6.1", 1194, "udp")]),
                     f"c2-{tag}", wait=0)
    procs.append(c2)
    assert c2.wait_for("Initialization Sequence Completed", 20), "OpenVPN 2.6 applied the CRL in `ca`"
    c2.stop(8)
    srv.stop(8)


@pytest.mark.parametrize("role", ["server", "client"])
def test_ours_refuses_a_ca_file_holding_a_crl_at_its_line(lab, role):
    tag = f"ours-{role}"
    text = server_config(lab.pki) if role == "server" else client_profile(lab.pki)
    cfg = lab.write(f"{tag}.conf", text.replace(f"ca {lab.pki.ca}\n", f"ca {_ca_with_crl(lab, tag)}\n"))
    r = subprocess.run([OUR_BIN, "check", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    line = next(i for i, t in enumerate(cfg.read_text().splitlines(), 1) if t.startswith("ca "))
    assert f"{cfg}:{line}: ca: " in r.stderr and "CRL" in r.stderr, r.stderr


@pytest.mark.parametrize("client", ["openvpn", "ours"])
def test_a_client_with_crl_verify_refuses_a_revoked_server(lab, procs, client):
    """The server's certificate revoked by the client profile's crl-verify: OpenVPN 2.6's client
    never brings the tunnel up, and neither may ours. Then, with a CRL revoking nobody, both do."""
    ca = _ca(lab)
    srv = lab.openvpn(lab.srv, server_config(lab.pki), f"srv-rev-{client}", wait=20)
    procs.append(srv)
    for revoked, want_up in (([_serial(lab.pki.server_cert)], False), ([], True)):
        crl = lab.tmp / f"client-crl-{client}-{len(revoked)}.pem"
        crl.write_bytes(make_crl(*ca, revoked))
        profile = client_profile(lab.pki, client="client1", extra=f"crl-verify {crl}\n")
        name = f"c-rev-{client}-{len(revoked)}"
        if client == "openvpn":
            c = lab.openvpn(lab.cli, profile, name, wait=0)
            up = "Initialization Sequence Completed"
        else:
            c = lab.ours(lab.cli, profile, name, wait=0)
            up = "tunnel up"
        procs.append(c)
        if want_up:
            assert c.wait_for(up, 30), c.log()[-2000:]
            assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2
        else:
            refused = "certificate revoked" if client == "openvpn" else "is revoked"
            assert c.wait_for(refused, 30), c.log()[-2000:]
            assert not c.wait_for(up, 3), f"{client}'s client took a revoked server"
        c.stop(8)
