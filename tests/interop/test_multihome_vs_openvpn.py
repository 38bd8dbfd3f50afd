"""`multihome` against Debian's OpenVPN 2.6 client, for our server and for Debian's server with the
same config, in namespaces: the server namespace has two addresses on its veth (198.18.0.1, the
route's preferred source towards the client, and SECOND), and the client connects to SECOND.

Without multihome a server bound to the wildcard answers from the route's source, 198.18.0.1, and
OpenVPN's client rejects those packets ("Incoming packet rejected from ... expected peer address"):
the tunnel never comes up, with either server. With it, each answer leaves from the address the
client wrote to, and the tunnel carries a ping. IPv6 on a dual-stack socket (`proto udp6`): a
client over IPv6 to the second IPv6 address, then one over IPv4 to SECOND (a v4-mapped local
address, IPV6_PKTINFO). The preferred sources are checked first: without them this proves nothing.
"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import CLI_IP, SRV_IP, TUN_SERVER_IP, Lab

pytestmark = [pytest.mark.root, pytest.mark.netns]

SECOND = "198.18.0.5"
V6_FIRST, V6_SECOND, V6_CLI = "fd18:77::1", "fd18:77::5", "fd18:77::2"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        sdev = lab.srv.run(f"ip -o -4 addr show to {SRV_IP}/32").stdout.split()[1]
        cdev = lab.cli.run(f"ip -o -4 addr show to {CLI_IP}/32").stdout.split()[1]
        # IPv6: the address added last is the preferred source (checked in the test)
        lab.srv.run(f"ip addr add {SECOND}/24 dev {sdev} && ip -6 addr add {V6_SECOND}/64 dev {sdev} nodad"
                    f" && ip -6 addr add {V6_FIRST}/64 dev {sdev} nodad")
        lab.cli.run(f"ip -6 addr add {V6_CLI}/64 dev {cdev} nodad")
        yield lab


def _server(lab: Lab, kind: str, extra: str, name: str):
    conf = server_config(lab.pki, "udp", extra=extra)
    if kind == "ours":
        return lab.ours(lab.srv, conf, name, pattern=r"listening on UDP")
    return lab.openvpn(lab.srv, conf, name)


def _client(lab: Lab, remote: str, proto: str, name: str, wait: float):
    return lab.openvpn(lab.cli, client_profile(lab.pki, "udp", remotes=[(remote, 1194, proto)]), name, wait=wait)


@pytest.mark.parametrize("kind", ["ours", "openvpn"])
def test_a_client_of_the_second_address_needs_multihome(lab, procs, kind):
    assert f"src {SRV_IP}" in lab.srv.run(f"ip -4 route get {CLI_IP}").stdout, "the first address must be the source"
    srv = _server(lab, kind, "", f"mh-plain-{kind}")
    procs.append(srv)
    cli = _client(lab, SECOND, "udp", f"mh-plain-cli-{kind}", wait=0)
    procs.append(cli)
    assert cli.wait_for(rf"Incoming packet rejected from \[AF_INET\]{SRV_IP}:1194", 20), cli.log()[-3000:]
    assert not cli.wait_for("Initialization Sequence Completed", 2), "up without multihome: nothing shown"
    cli.stop()
    srv.stop()

    srv = _server(lab, kind, "multihome\n", f"mh-{kind}")
    procs.append(srv)
    cli = _client(lab, SECOND, "udp", f"mh-cli-{kind}", wait=20)
    procs.append(cli)
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP, within=15), srv.log()[-3000:] + cli.log()[-3000:]
    assert "Incoming packet rejected" not in cli.log()
    cli.stop()
    srv.stop()


@pytest.mark.parametrize("kind", ["ours", "openvpn"])
def test_multihome_on_a_dual_stack_socket(lab, procs, kind):
    assert f"src {V6_FIRST}" in lab.srv.run(f"ip -6 route get {V6_CLI}").stdout, "the first address must be the source"
    srv = _server(lab, kind, "proto udp6\nmultihome\n", f"mh6-{kind}")
    procs.append(srv)
    for remote, proto in ((V6_SECOND, "udp6"), (SECOND, "udp4")):
        cli = _client(lab, remote, proto, f"mh6-cli-{kind}-{proto}", wait=20)
        procs.append(cli)
        assert lab.wait_ping(lab.cli, TUN_SERVER_IP, within=15), srv.log()[-3000:] + cli.log()[-3000:]
        assert "Incoming packet rejected" not in cli.log()
        cli.stop()
    srv.stop()
