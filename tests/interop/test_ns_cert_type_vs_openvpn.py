"""`ns-cert-type server` in a client profile (old provider profiles still carry it), against Debian's
OpenVPN 2.6 server, our client beside OpenVPN's: a server with a server certificate is taken; one
that presents a client certificate (as another client of the same CA could, to play the server)
is refused by both. Before, ours refused the profile ("removed in OpenVPN 2.5": 2.6 still checks
it). In memory: tests/unit/test_ns_cert_type.py."""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import TUN_SERVER_IP, Lab

UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}
# OpenSSL's own chain check refuses it first, for either client: a TLS client verifies the server's
# chain for the "ssl_server" purpose, the test ns-cert-type repeats (tls.ns_cert_type_ok).
REFUSED = "unsuitable certificate purpose"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("nsct")) as lab:
        yield lab


@pytest.mark.parametrize("server_cert", ["server", "client"])
@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_ns_cert_type_server_takes_a_server_and_refuses_a_client_playing_one(lab, procs, kind, server_cert):
    conf = server_config(lab.pki, "udp")
    if server_cert == "client":
        cert, key = lab.pki.clients["client1"]         # a client certificate of the same CA
        conf = conf.replace(f"cert {lab.pki.server_cert}", f"cert {cert}").replace(f"key {lab.pki.server_key}",
                                                                                   f"key {key}")
        conf = conf.replace("remote-cert-tls client\n", "")
    procs.append(lab.openvpn(lab.srv, conf, f"ns-srv-{kind}-{server_cert}"))
    prof = client_profile(lab.pki, "udp").replace("remote-cert-tls server\n", "ns-cert-type server\n")
    start = lab.ours if kind == "ours" else lab.openvpn
    cli = start(lab.cli, prof, f"ns-{kind}-{server_cert}", wait=0)
    procs.append(cli)
    if server_cert == "server":
        assert cli.wait_for(UP[kind], 30), cli.log()[-3000:]
        assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2
    else:
        assert cli.wait_for(REFUSED, 30), cli.log()[-3000:]
        assert UP[kind] not in cli.log()
    cli.stop(8)
