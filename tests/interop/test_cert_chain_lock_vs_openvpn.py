"""A renegotiation that presents the same leaf certificate under a re-issued sub-CA (same name and
key, another serial), against Debian's OpenVPN 2.6 server and ours, in namespaces.

OpenVPN 2.6 remembers the SHA-256 of the certificate at every depth of the verified chain
(ssl_verify.c cert_hash_remember, from the verify callback), locks them once the client is
established (tls_lock_cert_hash_set) and compares them at each renegotiation (cert_hash_compare in
verify_final_auth_checks): "client-provided SSL certs unexpectedly changed during mid-session
reauth", the tunnel disabled. Ours compared the leaf only, and the renegotiation went on.

The client is the engine's own Session in the client namespace (_CLIENT, run with
lab.attacks.run_py), which swaps its certificate chain before it renegotiates -- what a hostile
client can do and OpenVPN's own client never does. OpenVPN's server tells the client nothing (it
disables the tunnel); ours ends the session. Both log the line."""
from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.certs import issue
from lab.attacks import run_py
from lab.configs import client_profile, server_config
from lab.netns import Lab
from lab.tools import OPENVPN

LOCKED = "client-provided SSL certs unexpectedly changed during mid-session reauth"

# Runs in the client namespace: argv = profile, the other chain's PEM (leaf + re-issued sub-CA).
_CLIENT = r"""
import dataclasses, select, socket, sys, time
from appliance.openvpn.config import load_config
from appliance.openvpn.session import Session
from appliance.openvpn.settings import client_session_config
from appliance.openvpn.tls import build_context
profile, other_chain = sys.argv[1:3]
opts = load_config(profile)
cfg = client_session_config(opts, "udp")
s = Session(cfg, time.monotonic())
r = opts.remotes[0]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.connect((r.host, r.port))
sock.setblocking(False)

def pump(until, limit):
    end = time.monotonic() + limit
    while time.monotonic() < end and not until():
        for p in s.take_outgoing():
            try:
                sock.send(p)
            except OSError:
                pass
        if select.select([sock], [], [], 0.05)[0]:
            try:
                s.receive(sock.recv(65535), time.monotonic())
            except OSError:
                pass
        dl = s.next_deadline()
        if dl is not None and time.monotonic() >= dl:
            s.handle_timer(time.monotonic())
    return until()

s.start(time.monotonic())
print("established", pump(lambda: s.established, 30), flush=True)
s.cfg.tls = dataclasses.replace(cfg.tls, cert=open(other_chain, "rb").read())
s.tls_context = build_context(s.cfg.tls)
s.renegotiate(time.monotonic())
pump(lambda: s.closed, 8)       # OpenVPN's server says nothing to the client: it disables the tunnel
"""


def _sub_ca(root, key):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lab sub CA")]))
            .issuer_name(root[0].subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(True, 0), True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
            .sign(root[1], hashes.SHA256()))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("chainlock")) as lab:
        d = lab.pki.dir
        root = (x509.load_pem_x509_certificate((d / "ca.crt").read_bytes()),
                serialization.load_pem_private_key((d / "ca.key").read_bytes(), None))
        sub_key = ec.generate_private_key(ec.SECP256R1())
        sub, sub_again = _sub_ca(root, sub_key), _sub_ca(root, sub_key)
        leaf, leaf_key = issue("chained", (sub, sub_key), ExtendedKeyUsageOID.CLIENT_AUTH)
        pem = serialization.Encoding.PEM
        (d / "chained.crt").write_bytes(leaf.public_bytes(pem) + sub.public_bytes(pem))
        (d / "chained-again.crt").write_bytes(leaf.public_bytes(pem) + sub_again.public_bytes(pem))
        (d / "chained.key").write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                               serialization.NoEncryption()))
        (d / "chained.key").chmod(0o600)
        lab.pki.clients["chained"] = (d / "chained.crt", d / "chained.key")
        yield lab


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_the_same_leaf_under_a_reissued_sub_ca_is_refused_at_renegotiation(lab, procs, server):
    cfg = server_config(lab.pki)                # `ca` is the lab root alone: the client sends its sub-CA
    if server == "openvpn":
        srv = lab.start(lab.srv, [OPENVPN, "--config", str(lab.write(f"ovlock-{len(lab.procs)}.conf", cfg))],
                        "ovchainlock")
        assert srv.wait_for("Initialization Sequence Completed", 20), srv.log()[-2000:]
    else:
        srv = lab.ours(lab.srv, cfg, f"chainlock-{len(lab.procs)}", pattern=r"listening on UDP")
    procs.append(srv)
    profile = lab.write(f"chained-{server}.ovpn", client_profile(lab.pki, client="chained"))
    out = run_py(lab.cli, _CLIENT, profile, lab.pki.dir / "chained-again.crt")
    assert "established True" in out, out + srv.log()[-2000:]
    assert srv.wait_for(LOCKED, 15), srv.log()[-3000:]
