"""verify-hash (the CA that signed the peer's certificate pinned by its fingerprint) beside
Debian's OpenVPN 2.6, the same profiles: a client pinning the lab CA's SHA1 fingerprint comes up,
one pinning another fingerprint is refused with OpenVPN's words, ours and Debian's alike; a
server pinning the CA's SHA256 fingerprint (inline block) lets Debian's client in, and refuses it
under another fingerprint. Before, our config refused verify-hash at its line."""
from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

UP = {"openvpn": "Initialization Sequence Completed", "ours": "tunnel up"}
FAILED = "certificate hash verification failed"
# Quick to give up after a refusal: one attempt, a short hand-window.
GIVE_UP = "connect-retry-max 1\nhand-window 8\n"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("vhash")) as lab:
        yield lab


def _fp(lab, h) -> str:
    return x509.load_pem_x509_certificate(lab.pki.ca.read_bytes()).fingerprint(h).hex(":").upper()


def _wrong_fp(lab, h) -> str:
    """The CA's fingerprint with its last byte changed: never the right one (the last byte set
    to 00 was the right one whenever the CA's fingerprint ended in 00 -- 1 lab PKI in 256, ci27b)."""
    right = x509.load_pem_x509_certificate(lab.pki.ca.read_bytes()).fingerprint(h)
    return (right[:-1] + bytes([right[-1] ^ 0xFF])).hex(":").upper()


def _client(lab, procs, kind: str, extra: str, name: str):
    conf = client_profile(lab.pki, "udp", extra=extra)
    p = (lab.openvpn(lab.cli, conf, name, wait=0) if kind == "openvpn" else lab.ours(lab.cli, conf, name, wait=0))
    procs.append(p)
    return p


def _stop(procs):
    for p in reversed(procs):
        p.stop(8)
    procs.clear()


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_a_client_pins_the_servers_ca(lab, procs, kind):
    procs.append(lab.openvpn(lab.srv, server_config(lab.pki, "udp"), f"vh-srv-{kind}"))
    good = _client(lab, procs, kind, f"verify-hash {_fp(lab, hashes.SHA1())}\n", f"vh-good-{kind}")  # noqa: S303
    assert good.wait_for(UP[kind], 60), good.log()[-3000:]
    assert lab.ping(lab.cli, TUN_SERVER_IP) > 0
    good.stop(8)
    wrong = "AA:" * 31 + "AA"
    bad = _client(lab, procs, kind, f"verify-hash {wrong} SHA256\n{GIVE_UP}", f"vh-bad-{kind}")
    assert bad.wait_for(FAILED, 60), bad.log()[-3000:]
    assert UP[kind] not in bad.log()
    _stop(procs)


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_a_server_pins_the_clients_ca(lab, procs, kind):
    block = f"<verify-hash>\n{_fp(lab, hashes.SHA256())}\n</verify-hash>\n"
    conf = server_config(lab.pki, "udp", extra=block)
    procs.append(lab.openvpn(lab.srv, conf, f"vhs-srv-{kind}") if kind == "openvpn"
                 else lab.ours(lab.srv, conf, f"vhs-srv-{kind}", pattern=r"listening on UDP"))
    good = _client(lab, procs, "openvpn", "", f"vhs-good-{kind}")
    assert good.wait_for(UP["openvpn"], 60), (good.log()[-2000:], procs[0].log()[-2000:])
    _stop(procs)
    conf = server_config(lab.pki, "udp", extra=f"verify-hash {_wrong_fp(lab, hashes.SHA1())}\n")  # noqa: S303
    srv = (lab.openvpn(lab.srv, conf, f"vhs-srv2-{kind}") if kind == "openvpn"
           else lab.ours(lab.srv, conf, f"vhs-srv2-{kind}", pattern=r"listening on UDP"))
    procs.append(srv)
    bad = _client(lab, procs, "openvpn", GIVE_UP, f"vhs-bad-{kind}")
    assert srv.wait_for(FAILED, 60), srv.log()[-3000:]
    assert bad.exit_within(60), bad.log()[-2000:]
    assert UP["openvpn"] not in bad.log()
    _stop(procs)
