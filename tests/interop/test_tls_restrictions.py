"""tls-ciphersuites / tls-groups are enforced against Debian's OpenVPN 2.6 (OpenSSL 3.0), both
ways, in one lab: a restriction both ends share negotiates exactly that suite/group (seen in
OpenVPN's own "Control Channel:" log line and in ours); one the peer excludes never connects.

Few handshakes on purpose (the suite's time budget): each failing case waits only until the
TLS error is logged, then stops the processes."""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import SRV_IP, TUN_SERVER_IP, Lab

WAIT = 40          # generous: other helpers' VMs and tests share the 2 cores


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("tlslab")) as lab:
        yield lab


def test_our_client_with_chacha_suite_and_x25519(lab, procs):
    srv = lab.openvpn(lab.srv, server_config(lab.pki), "srv-chacha")
    procs.append(srv)
    cli = lab.ours(lab.cli, client_profile(lab.pki, extra="tls-ciphersuites TLS_CHACHA20_POLY1305_SHA256\n"
                                                         "tls-groups X25519\n"), "ours-chacha", wait=WAIT)
    procs.append(cli)
    assert cli.wait_for(r"(?i)TLSv1\.3 TLS_CHACHA20_POLY1305_SHA256, group X25519,", 5), cli.log()[-3000:]
    assert srv.wait_for(r"Control Channel: TLSv1\.3, cipher TLSv1\.3 TLS_CHACHA20_POLY1305_SHA256", 10), srv.log()[-2000:]
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2


def test_our_client_never_connects_with_a_group_the_server_excludes(lab, procs):
    srv = lab.openvpn(lab.srv, server_config(lab.pki, extra="tls-groups X25519\n"), "srv-x25519")
    procs.append(srv)
    # OpenVPN drops the client instance with its alert unsent (as for its own clients), so the
    # client gives up at hand-window: 5 s here instead of 60.
    cli = lab.ours(lab.cli, client_profile(lab.pki, extra="tls-groups secp384r1\nhand-window 5\n"), "ours-p384",
                   wait=0)
    procs.append(cli)
    assert srv.wait_for(r"no suitable key share", WAIT), srv.log()[-2000:]
    assert cli.wait_for(r"connection reset: TLS key negotiation failed", WAIT), cli.log()[-2000:]
    assert "tunnel up" not in cli.log() and cli.alive()


def test_openvpn_client_with_our_server_restricted_to_aes128_and_p384(lab, procs):
    ours = lab.ours(lab.srv, server_config(lab.pki, extra="tls-ciphersuites TLS_AES_128_GCM_SHA256\n"
                                                          "tls-groups secp384r1\n"),
                    "oursrv-aes128", pattern=r"listening on (UDP|TCP)", wait=WAIT)
    procs.append(ours)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki), "ovpn-cli-aes128", wait=WAIT)
    procs.append(cli)
    line = next((x for x in cli.log().splitlines() if "Control Channel:" in x), "")
    assert "TLSv1.3, cipher TLSv1.3 TLS_AES_128_GCM_SHA256" in line, cli.log()[-2000:]
    assert "secp384r1" in line, line            # OpenVPN prints the server's temp key: the group used
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2


def test_openvpn_client_with_an_excluded_suite_never_connects_to_our_server(lab, procs):
    ours = lab.ours(lab.srv, server_config(lab.pki, extra="tls-ciphersuites TLS_AES_128_GCM_SHA256\n"
                                                          "tls-version-min 1.3\n"),
                    "oursrv-tls13", pattern=r"listening on (UDP|TCP)", wait=WAIT)
    procs.append(ours)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, extra="tls-ciphersuites TLS_CHACHA20_POLY1305_SHA256\n"
                                                            "hand-window 5\n"), "ovpn-cli-chacha", wait=0)
    procs.append(cli)
    assert cli.wait_for(r"TLS Error|TLS key negotiation failed", WAIT), cli.log()[-2000:]
    assert "Initialization Sequence Completed" not in cli.log()
    assert ours.wait_for(r"no shared cipher", WAIT), ours.log()[-2000:]
