"""A client whose data-ciphers share nothing with the server's, beside Debian's OpenVPN 2.6:
Debian's client (announcing IV_CIPHERS=CHACHA20-POLY1305) to Debian's server and to ours, the
same server config (data-ciphers AES-256-GCM, data-ciphers-fallback AES-256-GCM). Both servers
refuse it with 2.6's AUTH_FAILED reason, shown in the client's log, and say why in theirs;
neither gives it the fallback (compat47: ours did)."""
from __future__ import annotations

import re

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab

REASON = "AUTH_FAILED,Data channel cipher negotiation failed (no shared cipher)"
SERVER_SAYS = "No common cipher between server and client"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("nocipher")) as lab:
        yield lab


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_a_client_with_no_cipher_in_common_is_refused_as_by_openvpn(lab, procs, kind):
    conf = server_config(lab.pki, "udp", cipher="AES-256-GCM", extra="data-ciphers-fallback AES-256-GCM\n")
    srv = (lab.openvpn(lab.srv, conf, f"c47nc-srv-{kind}") if kind == "openvpn"
           else lab.ours(lab.srv, conf, f"c47nc-srv-{kind}", pattern=r"listening on UDP"))
    procs.append(srv)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", cipher="CHACHA20-POLY1305"), f"c47nc-cli-{kind}",
                      wait=0)
    procs.append(cli)
    assert cli.wait_for(re.escape(REASON), 30), (cli.log()[-2000:], srv.log()[-2000:])
    assert srv.wait_for(re.escape(SERVER_SAYS), 10), srv.log()[-2000:]
    assert "Initialization Sequence Completed" not in cli.log()


@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_a_ccd_data_ciphers_gives_the_client_its_cipher_as_openvpn(lab, procs, kind):
    """compat48: the server's data-ciphers AES-256-GCM, the client's ccd file
    `data-ciphers CHACHA20-POLY1305`, Debian's client offering CHACHA20-POLY1305 alone: 2.6 reads
    the file before it chooses (multi.c multi_client_connect_late_setup), so the client is up on
    CHACHA20-POLY1305. Ours chose from the server's list before the file was read and refused it."""
    ccd = lab.tmp / f"ccd-c48-{kind}"
    ccd.mkdir()
    (ccd / "client1").write_text("data-ciphers CHACHA20-POLY1305\n")
    conf = server_config(lab.pki, "udp", cipher="AES-256-GCM", extra=f"client-config-dir {ccd}\n")
    srv = (lab.openvpn(lab.srv, conf, f"c48cc-srv-{kind}") if kind == "openvpn"
           else lab.ours(lab.srv, conf, f"c48cc-srv-{kind}", pattern=r"listening on UDP"))
    procs.append(srv)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", cipher="CHACHA20-POLY1305"), f"c48cc-cli-{kind}",
                      wait=0)
    procs.append(cli)
    assert cli.wait_for("Initialization Sequence Completed", 30), (cli.log()[-2000:], srv.log()[-2000:])
    assert "Data Channel: cipher 'CHACHA20-POLY1305'" in cli.log(), cli.log()[-2000:]
