"""`multihome` against Debian's OpenVPN 2.6 client, for our server and for Debian's server with the
same config, in namespaces: the server namespace has two addresses on its veth (198.18.0.1, the
route's preferred source towards the client, and SECOND), and the client connects to SECOND.

Without multihome a server bound to the wildcard answers from the route's source, 198.18.0.1, and
OpenVPN's client rejects those packets ("Incoming packet rejected from ... expected peer address"):
the tunnel never comes up, with either server. With it, each answer leaves from the address the
client wrote to, and the tunnel carries a ping. IPv6 on a dual-stack socket (`proto udp6`): a
client over IPv6 to the second IPv6 address, then one over IPv4 to SECOND (a v4-mapped local
address, IPV6_PKTINFO). The preferred sources are checked first: without them this proves nothing.
Then an attacker beside the client sends datagrams with the client's address and port to the first
address while our server pings the client: no answer leaves from there.
"""
from __future__ import annotations

import re
import sys
import time

import pytest

from lab.configs import client_profile, server_config
from lab.netns import CLI_IP, SRV_IP, TUN_SERVER_IP, Lab, wait_local_addresses

pytestmark = [pytest.mark.root, pytest.mark.netns]

SECOND = "198.18.0.5"
V6_FIRST, V6_SECOND, V6_CLI = "fd18:77::1", "fd18:77::5", "fd18:77::2"
CLIENT_TUN = "198.19.0.2"          # the first (and only) client's pool address


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        sdev = lab.srv.run(f"ip -o -4 addr show to {SRV_IP}/32").stdout.split()[1]
        cdev = lab.cli.run(f"ip -o -4 addr show to {CLI_IP}/32").stdout.split()[1]
        # IPv6: the address added last is the preferred source (checked in the test)
        lab.srv.run(f"ip addr add {SECOND}/24 dev {sdev} && ip -6 addr add {V6_SECOND}/64 dev {sdev} nodad"
                    f" && ip -6 addr add {V6_FIRST}/64 dev {sdev} nodad")
        lab.cli.run(f"ip -6 addr add {V6_CLI}/64 dev {cdev} nodad")
        wait_local_addresses(lab.srv.name, (SECOND, V6_SECOND, V6_FIRST))
        wait_local_addresses(lab.cli.name, (V6_CLI,))
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


SPOOF = r"""
import sys, time
from scapy.all import IP, UDP, Raw, conf
conf.verb = 0
src, dst, sport, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
forged = [bytes([9 << 3, 0, 0, 0]) + bytes(60),      # data for peer-id 0, not authentic
          bytes([7 << 3]) + bytes(range(1, 9)) + bytes(5)]   # a hard reset: a new session from its address
pkts = [IP(src=src, dst=dst) / UDP(sport=sport, dport=1194) / Raw(p) for p in forged]
s = conf.L3socket()
end, n = time.monotonic() + seconds, 0
while time.monotonic() < end and n < 5000:
    s.send(pkts[n % 2])
    n += 1
    time.sleep(0.005)
print("spoofed", n, flush=True)
"""


def test_spoofed_packets_to_the_first_address_do_not_move_the_answers(lab, procs):
    """Datagrams with the client's address and port as their source, sent to the first address
    (forged data, hard resets), while the server pings the client through the tunnel: every
    answer must still leave from SECOND (the client rejects others, and the log would say so)."""
    srv = _server(lab, "ours", "multihome\n", "mh-spoof")
    procs.append(srv)
    cli = _client(lab, SECOND, "udp", "mh-spoof-cli", wait=20)
    procs.append(cli)
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP, within=15)
    m = re.search(r":(\d+)\s+\S+\s+users:\(\(\"openvpn\"", lab.cli.run("ss -unapH").stdout)
    assert m, lab.cli.run("ss -unapH").stdout
    spoofer = lab.start(lab.cli, [sys.executable, "-c", SPOOF, CLI_IP, SRV_IP, m.group(1), "4"], "mh-spoofer")
    procs.append(spoofer)
    time.sleep(0.5)
    got = lab.ping(lab.srv, CLIENT_TUN, count=12, interval=0.2)
    assert spoofer.wait_for(r"spoofed \d+", 10), spoofer.log()
    assert int(re.search(r"spoofed (\d+)", spoofer.log()).group(1)) > 100, spoofer.log()
    assert got == 12, f"{got} of 12 pings answered while spoofed"
    assert "Incoming packet rejected" not in cli.log()
    cli.stop()
    srv.stop()
