"""x509-username-field on Debian's OpenVPN 2.6 server and ours, the same config, certificates and
client-config-dir, Debian's client: the name made from the fields (an e-mail address in the
subject; the subjectAltName's last e-mail address and the certificate's serial number, joined
with `_`) picks the same ccd file on both servers, so the client gets the address that file
pushes, and a certificate without the field is refused by both. Before, our server refused the
directive at its line. (Field reading in detail: tests/unit/test_x509_username_field.py.)"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab
from lab.pki import add_cert, client_serial

UP = "Initialization Sequence Completed"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1"], tmp=tmp_path_factory.mktemp("x509user")) as lab:
        add_cert(lab.pki, "laptop7", "/O=acme/CN=laptop-7/emailAddress=alice@example.org",
                 san_emails=("old@example.org", "alice@example.net"))
        yield lab


def _server(lab, procs, kind: str, fields: str, ccd_name: str, address: str):
    ccd = lab.tmp / f"ccd-{kind}-{len(lab.procs)}"
    ccd.mkdir()
    (ccd / ccd_name).write_text(f"ifconfig-push {address} 255.255.255.0\n")
    cfg = server_config(lab.pki, extra=f"x509-username-field {fields}\nclient-config-dir {ccd}\n")
    name = f"x509srv-{kind}-{len(lab.procs)}"
    procs.append(lab.openvpn(lab.srv, cfg, name) if kind == "openvpn"
                 else lab.ours(lab.srv, cfg, name, pattern=r"listening on UDP"))


def _tun_address(lab) -> str:
    return lab.cli.run("ip -4 -o addr show dev tun0", check=False).stdout


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_the_subject_email_names_the_client(lab, procs, kind):
    _server(lab, procs, kind, "emailAddress", "alice@example.org", "198.19.0.77")
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="laptop7"), f"x509cli-{kind}-{len(lab.procs)}")
    procs.append(cli)
    assert "198.19.0.77/" in _tun_address(lab), (_tun_address(lab), procs[0].log()[-2000:])
    cli.stop(8)
    # A certificate without an e-mail address: no name, refused by the server (a TLS error).
    bad = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="client1", extra="connect-retry-max 1\nhand-window 8\n"),
                      f"x509bad-{kind}-{len(lab.procs)}", wait=0)
    procs.append(bad)
    assert bad.wait_for(r"TLS Error|TLS key negotiation failed|AUTH_FAILED|Exiting", 90), bad.log()[-2000:]
    assert UP not in bad.log(), f"{kind}'s server let a certificate without the field in"
    srv_log = procs[0].log()
    assert "could not extract emailAddress" in srv_log, srv_log[-2000:]
    for p in reversed(procs):
        p.stop(8)
    procs.clear()


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_alt_name_and_serial_joined_name_the_client(lab, procs, kind):
    serial = client_serial(lab.pki, "laptop7")
    hexed = serial.to_bytes((serial.bit_length() + 7) // 8, "big").hex().upper()
    _server(lab, procs, kind, "ext:subjectAltName serialNumber", f"alice@example.net_0x{hexed}", "198.19.0.78")
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", client="laptop7"), f"x509cli2-{kind}-{len(lab.procs)}")
    procs.append(cli)
    assert "198.19.0.78/" in _tun_address(lab), (_tun_address(lab), procs[0].log()[-2000:])
    for p in reversed(procs):
        p.stop(8)
    procs.clear()
