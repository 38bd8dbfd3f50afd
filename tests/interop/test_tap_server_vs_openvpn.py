"""Our layer-2 server (`dev tap` with `server` or `server-bridge`) against Debian's OpenVPN 2.6
clients, in namespaces: the profiles are the ones a Debian tap server takes, unchanged.

What a user checks: a client pings the server's TAP address; two clients with client-to-client
reach each other through us (their frames switched by MAC), learn-address hearing of their MACs;
with `server-bridge` a host on the
LAN bridged with the TAP device answers a client's ARP and ping, and learns the client's own MAC
(layer 2 end to end).
"""
from __future__ import annotations

import re
import subprocess

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab, until, wait_for_text

CLIENTS = ["client1", "client2"]
TAP_SERVER_IP = "198.19.0.1"
BRIDGE_IP, LAN_HOST = "198.19.1.1", "198.19.1.50"

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.openvpn]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=CLIENTS, tmp=tmp_path_factory.mktemp("taplab")) as lab:
        lab.cli2 = lab.add_client_ns(1)            # 198.18.2.2, reaching the server at 198.18.2.1
        yield lab


def tap_server(lab, line: str, extra: str = "") -> str:
    """The lab's server config made a layer-2 one: dev tap, `line` instead of `server`/topology."""
    text = server_config(lab.pki, extra=extra)
    text = text.replace("dev tun\n", "dev tap0\n").replace("topology subnet\n", "")
    return re.sub(r"server 198\.19\.0\.0 255\.255\.255\.0\n", line + "\n", text)


def tap_client(lab, client: str, server_ip: str) -> str:
    prof = client_profile(lab.pki, "udp", client=client, remotes=[(server_ip, 1194, "udp")],
                          extra="explicit-exit-notify 1\n")
    return prof.replace("dev tun\n", "dev tap\n")


def tap_ip(ns) -> str:
    m = re.search(r"inet (\S+)/", ns.run("ip -4 -o addr show dev tap0", check=False).stdout)
    assert m, "no address on the client's tap0"
    return m.group(1)


def mac_of(ns, dev: str = "tap0") -> str:
    m = re.search(r"link/ether (\S+)", ns.run(f"ip -o link show dev {dev}").stdout)
    assert m
    return m.group(1)


def test_server_and_client_to_client(lab, procs):
    calls = lab.tmp / "learn-calls.log"
    script = lab.write("learn.sh", f'#!/bin/sh\necho "$@" >> {calls}\nexit 0\n')
    script.chmod(0o755)
    srv = lab.ours(lab.srv, tap_server(lab, "server 198.19.0.0 255.255.255.0",
                                       f"client-to-client\nscript-security 2\nlearn-address {script}\n"
                                       f"status {lab.tmp / 'tap-status.log'} 1\nstatus-version 2\n"
                                       "lladdr 02:aa:bb:cc:dd:01\n"),
                   "tapsrv", pattern=r"listening on UDP")
    procs.append(srv)
    assert "TAP tap0 up (layer 2), address 198.19.0.1/24" in srv.log(), srv.log()
    assert mac_of(lab.srv) == "02:aa:bb:cc:dd:01"            # lladdr, as 2.6 sets it on a server's tap too
    c1 = lab.openvpn(lab.cli, tap_client(lab, "client1", "198.18.0.1"), "tapcli1")
    procs.append(c1)
    c2 = lab.openvpn(lab.cli2, tap_client(lab, "client2", "198.18.2.1"), "tapcli2")
    procs.append(c2)
    ip1, ip2 = tap_ip(lab.cli), tap_ip(lab.cli2)
    assert ip1 != ip2 and ip1.startswith("198.19.0.") and ip2.startswith("198.19.0.")
    # 2.6's push for a tap `server`: route-gateway and `ifconfig IP MASK`, no topology
    assert "route-gateway 198.19.0.1" in c1.log() and "topology" not in c1.log().split("PUSH_REPLY")[-1]
    assert lab.ping(lab.cli, TAP_SERVER_IP, 3) == 3, "client → server's TAP address"
    assert lab.ping(lab.srv, ip1, 2) == 2, "server → client over the TAP"
    assert lab.ping(lab.cli, ip2, 3) == 3, "client1 → client2 (client-to-client, switched by us)"
    # The frames went client to client: the server's own neighbour table never needed client2's
    # address for that (it learned only those it talked to itself).
    assert ip2 not in lab.srv.run("ip neigh show dev tap0").stdout
    # learn-address ran for each client's MAC as 2.6 runs it (add MAC@VID CN), and deletes it
    # when the client leaves.
    mac1 = mac_of(lab.cli)
    status = lab.tmp / "tap-status.log"
    assert until(lambda: status.exists() and f"ROUTING_TABLE,{mac1}@0,client1," in status.read_text(), 15), \
        status.read_text() if status.exists() else "no status file"
    text = calls.read_text()
    assert f"add {mac1}@0 client1" in text and f"add {mac_of(lab.cli2)}@0 client2" in text, text
    c1.stop(8)
    assert wait_for_text(calls, f"delete {mac1}@0", 15), calls.read_text()


def test_server_bridge_lan_host_at_layer_2(lab, procs):
    t = lab.tag
    br, va, vb = f"br{t}", f"bl{t}a", f"bl{t}b"
    lan = lab._ns("bl")                                    # removed with the lab
    lab.srv.run(f"ip link add {br} type bridge && ip addr add {BRIDGE_IP}/24 dev {br} && ip link set {br} up")
    subprocess.run(["ip", "link", "add", va, "netns", lab.srv.name, "type", "veth", "peer", "name", vb,
                    "netns", lan.name], check=True)
    lab.srv.run(f"ip link set {va} master {br} up")
    lan.run(f"ip addr add {LAN_HOST}/24 dev {vb} && ip link set {vb} up")
    # OpenVPN's bridging recipe (bridge-start): a persistent TAP device made beforehand and put
    # in the bridge; the server opens it by name.
    lab.srv.run(f"ip tuntap add dev tap0 mode tap && ip link set tap0 master {br}")
    try:
        srv = lab.ours(lab.srv, tap_server(lab, "server-bridge 198.19.1.1 255.255.255.0 198.19.1.100 198.19.1.110"),
                       "brsrv", pattern=r"listening on UDP")
    except BaseException:
        lab.srv.run("ip link del tap0", check=False)
        raise
    procs.append(srv)
    assert "address none (a bridge port)" in srv.log(), srv.log()
    c1 = lab.openvpn(lab.cli, tap_client(lab, "client1", "198.18.0.1"), "brcli1")
    procs.append(c1)
    assert tap_ip(lab.cli) == "198.19.1.100"
    assert lab.ping(lab.cli, LAN_HOST, 3) == 3, "client → LAN host across the bridge"
    # The LAN host resolved the client's address by ARP to the client's own tap MAC: layer 2.
    neigh = lan.run(f"ip neigh show {tap_ip(lab.cli)}").stdout
    assert mac_of(lab.cli) in neigh, neigh
    assert lab.ping(lab.srv, "198.19.1.100", 2) == 2, "the bridge's host → client"
    srv.stop(8)
    lab.srv.run("ip link del tap0")


def test_a_client_with_the_servers_tap_mac_does_not_take_the_other_clients_traffic(lab, procs):
    """A client whose profile says `lladdr` with the server's TAP MAC (one line, no code): with
    client-to-client, 2.6 learns that MAC for it, and every other client's frames to the server
    (their gateway) go to it instead. Ours keeps the TAP's own MAC from every client: client1
    still reaches the server while client2 sends from that MAC."""
    srv = lab.ours(lab.srv, tap_server(lab, "server 198.19.0.0 255.255.255.0",
                                       "client-to-client\nlladdr 02:aa:bb:cc:dd:01\n"),
                   "stealsrv", pattern=r"listening on UDP")
    procs.append(srv)
    thief = tap_client(lab, "client2", "198.18.2.1") + "lladdr 02:aa:bb:cc:dd:01\n"
    c2 = lab.openvpn(lab.cli2, thief, "stealcli2")
    procs.append(c2)
    assert mac_of(lab.cli2) == "02:aa:bb:cc:dd:01"
    lab.ping(lab.cli2, TAP_SERVER_IP, 2)                 # its frames from the server's MAC (dropped by us)
    c1 = lab.openvpn(lab.cli, tap_client(lab, "client1", "198.18.0.1"), "stealcli1")
    procs.append(c1)
    lab.ping(lab.cli2, TAP_SERVER_IP, 1)
    assert lab.ping(lab.cli, TAP_SERVER_IP, 3) == 3, "client1 → server's TAP address, past client2"
